"""`noseprint query` (issue 20, the auditor's side): a real tiny model answers a challenge from its folder, over
an OpenAI-compatible HTTP server on loopback (tests/serving_server.py) and from a transcript, and the three agree;
servers that are down or answer garbage, and transcripts of other prompts, are refused with a reason."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest
from noseprint.core.answers import Answers, AnswersError, answers_errors
from noseprint.core.challenge import Challenge
from noseprint.core.errors import UsageError
from noseprint.models.serving import api_base, query, query_http, query_local, query_transcript
from typer.testing import CliRunner

from tests.conftest import save_tiny, tiny_llama
from tests.serving_server import serving

VOCAB = 303


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny(tiny_llama(seed=3, layers=2), tmp_path_factory.mktemp("served") / "model", with_tokenizer=False)


@pytest.fixture(scope="module")
def challenge() -> Challenge:
    return Challenge.derive("ab" * 32, bytes(range(32)), "auditor", VOCAB, count=2, length=6)


@pytest.fixture(scope="module")
def local(model_dir, challenge) -> Answers:
    return query(str(model_dir), challenge, top_k=4)


def test_local_answers_are_the_models_argmax(model_dir, challenge, local):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        expected = [model(torch.tensor([p])).logits[0].argmax(-1).tolist() for p in challenge.prompts]
    assert local.greedy == expected and local.challenge_digest == challenge.digest()
    assert local.top is not None and all(len(pos) == 4 for prompt in local.top for pos in prompt)
    assert all(
        pos[0][0] == g
        for prompt, row in zip(local.top, local.greedy, strict=True)
        for pos, g in zip(prompt, row, strict=True)
    )
    assert answers_errors(local, challenge) == []
    assert query_local(model_dir, challenge, top_k=0).top is None


def test_http_answers_equal_the_local_ones(model_dir, challenge, local):
    with serving(model_dir) as url:
        served = query(url, challenge, top_k=4)
        named = query_http(url + "/v1/", challenge, model="served-model", top_k=0)
    assert served.greedy == local.greedy and named.greedy == local.greedy and named.top is None
    assert served.top is not None and local.top is not None
    for theirs, ours in zip(served.top, local.top, strict=True):
        for a, b in zip(theirs, ours, strict=True):
            assert [t for t, _ in a] == [t for t, _ in b]
            assert all(math.isclose(x, y, abs_tol=1e-6) for (_, x), (_, y) in zip(a, b, strict=True))
    assert served.source.endswith("model served-model")


def write_transcript(path: Path, answers: Answers, prompts: list[list[int]], top: bool = True) -> Path:
    lines = []
    for i, prompt in enumerate(prompts):
        record: dict = {"prompt": prompt, "greedy": answers.greedy[i]}
        if top and answers.top is not None:
            record["top_logprobs"] = [[[t, v] for t, v in pos] for pos in answers.top[i]]
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_transcript_round_trip_and_refusals(challenge, local, tmp_path):
    transcript = write_transcript(tmp_path / "t.jsonl", local, challenge.prompts)
    read = query(str(transcript), challenge)
    assert (read.greedy, read.top) == (local.greedy, local.top) and read.source.startswith("transcript:")
    assert (
        query_transcript(write_transcript(tmp_path / "g.jsonl", local, challenge.prompts, False), challenge).top is None
    )
    other = [list(reversed(p)) for p in challenge.prompts]
    with pytest.raises(UsageError, match="not the challenge's prompt 0"):
        query(str(write_transcript(tmp_path / "other.jsonl", local, other)), challenge)
    with pytest.raises(UsageError, match="answers 1 prompts; the challenge has 2"):
        query(str(write_transcript(tmp_path / "short.jsonl", local, challenge.prompts[:1])), challenge)
    (tmp_path / "bad.jsonl").write_text('{"prompt": [1]\n')
    with pytest.raises(UsageError, match="line 1 is not JSON"):
        query(str(tmp_path / "bad.jsonl"), challenge)
    lying = json.loads(transcript.read_text().splitlines()[0])
    lying["greedy"][0] = (lying["greedy"][0] + 1) % VOCAB  # a greedy token its own top-k contradicts
    (tmp_path / "lying.jsonl").write_text(json.dumps(lying) + "\n" + transcript.read_text().splitlines()[1] + "\n")
    with pytest.raises(UsageError, match="not the most likely"):
        query(str(tmp_path / "lying.jsonl"), challenge)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("error", "answered HTTP 500: .*caught fire"),
        ("garbage", "did not answer JSON"),
        ("no-logprobs", "not usable: no logprobs"),
        ("bos", "not usable: top_logprobs is not a list of 7"),
    ],
)
def test_misbehaving_servers_are_refused_with_a_reason(model_dir, challenge, mode, message):
    with serving(model_dir, mode) as url, pytest.raises(UsageError, match=message):
        query(url, challenge)


def test_cli_query_folder_url_and_failures(model_dir, challenge, local, tmp_path):
    from noseprint.cli import app

    runner = CliRunner()
    path = challenge.write(tmp_path / "c.json")
    out = tmp_path / "answers.json"
    result = runner.invoke(app, ["query", str(model_dir), "--challenge", str(path), "--out", str(out), "--top-k", "4"])
    assert result.exit_code == 0, result.output
    assert Answers.read(out).greedy == local.greedy
    result = runner.invoke(app, ["query", str(model_dir), "--challenge", str(path), "--out", str(out)])
    assert result.exit_code == 2 and "already exists" in result.output
    with serving(model_dir) as url:
        args = ["query", url, "--challenge", str(path), "--out", str(out), "--force", "--top-k", "4", "--json"]
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["positions"] == 12 and Answers.read(out).greedy == local.greedy
    down = f"http://127.0.0.1:{closed_port()}"
    result = runner.invoke(app, ["query", down, "--challenge", str(path), "--out", str(tmp_path / "a2.json")])
    assert result.exit_code == 2 and "cannot reach the served model" in result.output and result.exception is not None
    assert "Traceback" not in result.output and not (tmp_path / "a2.json").exists()
    edited = json.loads(path.read_text())
    edited["prompts"][0][0] = (edited["prompts"][0][0] + 1) % VOCAB
    (tmp_path / "picked.json").write_text(json.dumps(edited))
    result = runner.invoke(
        app, ["query", str(model_dir), "--challenge", str(tmp_path / "picked.json"), "--out", str(tmp_path / "a3.json")]
    )
    assert result.exit_code == 2 and "not the ones derived from the seed" in result.output


def test_a_model_over_another_vocabulary_is_refused(tmp_path, challenge):
    other = save_tiny(tiny_llama(seed=4, layers=1, vocab=300), tmp_path / "other", with_tokenizer=False)
    with pytest.raises(UsageError, match="predicts over 300 tokens"):
        query(str(other), challenge)
    with pytest.raises(UsageError, match="not a model folder"):
        query(str(tmp_path / "nothing"), challenge)
    with pytest.raises(UsageError, match="not an http"):
        api_base("http://")


def test_answers_format_round_trip_and_strict_reader(challenge, local, tmp_path):
    path = local.write(tmp_path / "a.json")
    assert Answers.read(path) == local
    data = json.loads(path.read_text())
    assert data["format"] == "noseprint-answers" and data["version"] == 1

    def refused(change, match: str) -> None:
        edited = json.loads(path.read_text())
        change(edited)
        with pytest.raises(AnswersError, match=match):
            Answers.from_json(json.dumps(edited))

    refused(lambda d: d.update(format="noseprint-challenge"), "not answers")
    refused(lambda d: d.update(extra=1), "extra")
    refused(lambda d: d["greedy"][0].__setitem__(0, -1), "greedy")
    refused(lambda d: d["top"][0][0].reverse(), "ordered|most likely")
    refused(lambda d: d["top"][0][0][0].__setitem__(1, 0.5), "log-probability")
    refused(lambda d: d["top"][1].pop(), "one entry per position")
    with pytest.raises(AnswersError, match="not valid JSON"):
        Answers.from_json(path.read_text().replace(str(data["top"][0][0][0][1]), "NaN", 1))
    other = Challenge.derive("cd" * 32, bytes(range(32)), "auditor", VOCAB, count=2, length=6)
    assert "not this one" in answers_errors(local, other)[0]  # answers for another challenge
    longer = Challenge.derive("ab" * 32, bytes(range(32)), "auditor", VOCAB, count=2, length=7)
    shifted = Answers(longer.digest(), "x", local.greedy, local.top)
    assert "6 positions answered, the challenge has 7" in answers_errors(shifted, longer)[0]
