"""Challenges (issue 20, the auditor's side): the derivation pinned and recomputed independently, the format's
strict reader, the registry seed (signed checkpoint, inclusion proof, the entry is this bundle) and every forgery
of it, and passed inference checks recorded on an entry and shown. No proofs: the report is built here."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from noseprint.core.bundle import Manifest
from noseprint.core.challenge import (
    DEFAULT_LENGTH,
    DEFAULT_PROMPTS,
    DOMAIN,
    Challenge,
    ChallengeError,
    bundle_digest,
    challenge_errors,
    derive_prompts,
)
from noseprint.core.fileio import canonical_json
from noseprint.verifier.challenge_statistics import MAX_LOGPROB_DEVIATION
from typer.testing import CliRunner

from tests.conftest import FIXTURE_BUNDLE

VOCAB = 303
"""The vocabulary of the committed fixture bundle's whole-model commitment (`Manifest.inference_vocab`)."""
DIGEST = bundle_digest((FIXTURE_BUNDLE / "manifest.json").read_bytes())
SEED = bytes(range(16))


def independent_prompts(digest: str, seed: bytes, vocab: int, count: int, length: int) -> list[list[int]]:
    """The documented derivation written again from its description, one 4-byte draw at a time."""
    stream = hashlib.shake_256(b"noseprint-challenge/v1" + b"\x00" + bytes.fromhex(digest) + seed).digest(1 << 16)
    limit = (2**32 // vocab) * vocab
    draws = (int.from_bytes(stream[i : i + 4], "big") for i in range(0, len(stream), 4))
    tokens = [d % vocab for d in draws if d < limit][: count * length]
    return [tokens[i * length : (i + 1) * length] for i in range(count)]


def test_derivation_is_pinned_and_matches_an_independent_computation():
    # pinned: a change to the derivation must be a deliberate new version, never a silent drift
    assert derive_prompts("00" * 32, SEED, 303, 2, 8) == [
        [286, 197, 96, 263, 123, 232, 76, 12],
        [123, 82, 51, 259, 116, 17, 162, 199],
    ]
    assert DOMAIN == b"noseprint-challenge/v1" and (DEFAULT_PROMPTS, DEFAULT_LENGTH) == (2, 8)
    for vocab in (2, 303, 32000, 2**31 + 1):  # 2^31 + 1 rejects almost half the draws
        for count, length in ((1, 1), (2, 8), (3, 50)):
            prompts = derive_prompts(DIGEST, SEED, vocab, count, length)
            assert prompts == independent_prompts(DIGEST, SEED, vocab, count, length)
            assert all(0 <= t < vocab for p in prompts for t in p)
    assert derive_prompts(DIGEST, SEED, VOCAB, 3, 8)[:2] == derive_prompts(DIGEST, SEED, VOCAB, 2, 8)
    assert derive_prompts(DIGEST, SEED[:-1] + b"\x00", VOCAB, 2, 8) != derive_prompts(DIGEST, SEED, VOCAB, 2, 8)
    assert derive_prompts("00" * 32, SEED, VOCAB, 2, 8) != derive_prompts(DIGEST, SEED, VOCAB, 2, 8)


def test_every_token_is_equally_likely():
    """Rejection sampling, not `d mod vocab`: with vocab 3 * 2^30 a plain modulus would give id 0..2^30-1 twice
    the weight of the rest; the counts of the low and high thirds must agree."""
    vocab = 3 * 2**30
    tokens = [t for p in derive_prompts(DIGEST, SEED, vocab, 64, 256) for t in p]
    low = sum(t < 2**30 for t in tokens) / len(tokens)
    assert abs(low - 1 / 3) < 0.02


def test_challenge_round_trip_digest_and_strict_reader(tmp_path):
    made = Challenge.derive(DIGEST, SEED, "auditor", VOCAB)
    path = made.write(tmp_path / "c.json")
    again = Challenge.read(path)
    assert again == made and again.positions == DEFAULT_PROMPTS * DEFAULT_LENGTH
    assert made.digest() == hashlib.sha256(canonical_json(made.to_dict())).hexdigest()
    data = json.loads(path.read_text())
    assert data["format"] == "noseprint-challenge" and data["version"] == 1 and data["checkpoint"] is None

    def refused(change, match: str) -> None:
        edited = json.loads(path.read_text())
        change(edited)
        with pytest.raises(ChallengeError, match=match):
            Challenge.from_json(json.dumps(edited))

    refused(lambda d: d.update(format="noseprint-bundle"), "not a challenge")
    refused(lambda d: d.update(version=2), "version")
    refused(lambda d: d.update(extra=1), "extra")
    refused(lambda d: d.update(seed="AB" * 16), "seed")
    refused(lambda d: d.update(seed="ab"), "seed")
    refused(lambda d: d.update(seed_source="owner"), "seed_source")
    refused(lambda d: d.update(checkpoint={"root": "00" * 32}), "no checkpoint")
    refused(lambda d: d.update(seed_source="registry-checkpoint"), "checkpoint record")
    refused(lambda d: d["prompts"][0].append(1), "prompt 0")
    refused(lambda d: d["prompts"][1].__setitem__(0, VOCAB), "outside")
    refused(lambda d: d.update(vocab=1), "vocab")
    with pytest.raises(ChallengeError, match="integer"):
        Challenge.from_json(path.read_text().replace('"vocab": 303', '"vocab": 303.0'))
    with pytest.raises(ChallengeError, match="not valid JSON"):
        Challenge.from_json(b"{")


def test_challenge_errors_say_what_does_not_match():
    made = Challenge.derive(DIGEST, SEED, "auditor", VOCAB)
    assert challenge_errors(made, DIGEST, VOCAB) == []
    assert "not this one" in challenge_errors(made, "11" * 32, VOCAB)[0]
    assert "vocabulary of 303, the bundle's has 304" in challenge_errors(made, DIGEST, 304)[0]
    easy = Challenge(made.bundle_digest, made.seed, "auditor", None, VOCAB, made.length, [[0] * 8, made.prompts[1]])
    assert challenge_errors(easy, DIGEST, VOCAB) == ["prompt(s) 0 are not the ones derived from the seed"]
    other_seed = Challenge(DIGEST, "ff" * 16, "auditor", None, VOCAB, made.length, made.prompts)
    assert "0, 1" in challenge_errors(other_seed, DIGEST, VOCAB)[0]


# the CLI and the registry seed ------------------------------------------------------------------------------


def test_the_fixture_bundle_commits_to_the_whole_model():
    """The challenges below are drawn for the committed fixture bundle as it is: its whole-model commitment
    states the vocabulary they draw from."""
    assert Manifest.read(FIXTURE_BUNDLE).inference_vocab == VOCAB


def cli(*args: str) -> tuple[int, object]:
    from noseprint.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.output


def test_challenge_command_with_an_auditor_seed(tmp_path):
    out = tmp_path / "c.json"
    code, made = cli("challenge", str(FIXTURE_BUNDLE), "--seed", SEED.hex().upper(), "--out", str(out), "--json")
    assert code == 0, made
    challenge = Challenge.read(out)
    assert made["digest"] == challenge.digest() and challenge.seed_source == "auditor"
    assert challenge.prompts == derive_prompts(DIGEST, SEED, VOCAB, 2, 8)
    code, again = cli("challenge", str(FIXTURE_BUNDLE), "--seed", SEED.hex(), "--out", str(out))
    assert code == 2 and "already exists" in again
    code, message = cli("challenge", str(FIXTURE_BUNDLE), "--out", str(tmp_path / "x.json"))
    assert code == 2 and "give exactly one seed" in message
    code, message = cli("challenge", str(FIXTURE_BUNDLE), "--seed", "abcd", "--out", str(tmp_path / "x.json"))
    assert code == 2 and "2 bytes" in message
    code, message = cli("challenge", str(FIXTURE_BUNDLE), "--seed", "zz" * 16, "--out", str(tmp_path / "x.json"))
    assert code == 2 and "not hex" in message


def test_a_bundle_without_a_whole_model_commitment_is_refused(tmp_path):
    """A bundle without a whole-model commitment (`prove --redact` leaves it out: it states the model's shape)
    draws no challenge: the fixture bundle with that section taken out of its manifest."""
    redacted = tmp_path / "redacted"
    shutil.copytree(FIXTURE_BUNDLE, redacted)
    manifest = json.loads((redacted / "manifest.json").read_text())
    del manifest["inference"]
    (redacted / "manifest.json").write_text(json.dumps(manifest))
    assert Manifest.read(redacted).inference_vocab is None
    code, message = cli("challenge", str(redacted), "--seed", SEED.hex(), "--out", str(tmp_path / "c.json"))
    assert code == 2 and "no whole-model commitment" in message and not (tmp_path / "c.json").exists()


def registered(db: str, key: Path, manifests: list[bytes], archives: list[Path] | None = None):
    """A registry holding one entry per manifest, storing `archives` (default: the fixture bundle) as their
    bundles (proving and `registry add` are tested elsewhere)."""
    from noseprint.registry.archive import pack
    from noseprint.registry.service import Verified, append, open_registry

    registry = open_registry(db, key, writable=True)
    for i, manifest in enumerate(manifests):
        commitment = hashlib.sha256(manifest).hexdigest()
        verified = Verified(
            {"commitment": {"digest": commitment}, "model": {"model_type": "llama"}}, manifest, b"{}", "ee" * 32,
            np.random.default_rng(i).standard_normal(128).astype("<f4"), b"png",
            pack(archives[i] if archives else FIXTURE_BUNDLE),
        )  # fmt: skip
        append(registry, verified, f"entry-{i}")
    return registry


@pytest.fixture
def registry_world(tmp_path):
    pytest.importorskip("sqlalchemy")
    db = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    manifests = [(FIXTURE_BUNDLE / "manifest.json").read_bytes(), b'{"another": "bundle"}', b'{"third": 3}']
    registry = registered(db, tmp_path / "registry-key", manifests)
    pub = tmp_path / "registry.pub"
    from noseprint.signing.keys import public_pem

    pub.write_bytes(public_pem(registry.public))
    return {"db": db, "registry": registry, "pub": pub, "root": tmp_path}


def test_registry_seeded_challenge_and_its_forgeries(registry_world, tmp_path):
    from noseprint.registry.challenge_seed import challenge_seed_errors, seed_record_errors
    from noseprint.signing.keys import generate, load_public

    db, pub = registry_world["db"], registry_world["pub"]
    out = tmp_path / "c.json"
    code, made = cli(
        "challenge", str(FIXTURE_BUNDLE), "--registry", db, "--entry", "1", "--registry-key", str(pub),
        "--prompts", "3", "--length", "5", "--out", str(out), "--json",
    )  # fmt: skip
    assert code == 0, made
    challenge = Challenge.read(out)
    record = challenge.checkpoint
    assert challenge.seed_source == "registry-checkpoint" and record is not None
    assert record["size"] == 1 and record["entry_id"] == 1 and challenge.seed == record["root"]  # entry 1's first
    assert (len(challenge.prompts), challenge.length) == (3, 5)
    public = load_public(pub)
    assert challenge_errors(challenge, DIGEST, VOCAB) == [] and challenge_seed_errors(challenge, public) == []
    with pytest.raises(ChallengeError, match="not the checkpoint's root"):  # prompts from a seed of the owner's
        Challenge.from_dict(challenge.to_dict() | {"seed": "ff" * 32})

    signature = bytearray(base64.b64decode(record["signature"]))
    signature[0] ^= 1
    forged_signature = dict(record, signature=base64.b64encode(bytes(signature)).decode())
    assert "not signed by registry key" in seed_record_errors(forged_signature, DIGEST, public)[0]
    _, other_pub, _ = generate(tmp_path / "other-key")
    assert "not signed by registry key" in seed_record_errors(record, DIGEST, load_public(other_pub))[0]

    from noseprint.registry.service import inclusion

    other = inclusion(registry_world["registry"], 2, 2)  # a true inclusion proof, for entry 2 in its first tree
    swapped = other["checkpoint"] | {
        "entry_id": 2, "leaf": other["leaf"], "log_index": other["log_index"], "inclusion_proof": other["proof"],
    }  # fmt: skip
    assert "logs manifest" in seed_record_errors(swapped, DIGEST, public)[0]  # in the log, but not this bundle
    mixed = dict(record, inclusion_proof=other["proof"])  # entry 1's leaf with entry 2's path
    assert "not in the checkpoint's tree" in seed_record_errors(mixed, DIGEST, public)[0]

    from fastapi.testclient import TestClient
    from noseprint.registry.audit import HttpSource
    from noseprint.registry.challenge_seed import fetch_seed_record
    from noseprint.registry.server import create_app

    served = HttpSource("http://testserver")  # the served registry's API, in process
    served.client = TestClient(create_app(registry_world["registry"], "token-0123456789"))
    assert fetch_seed_record(served, 1, DIGEST, public) == record

    code, message = cli(
        "challenge", str(FIXTURE_BUNDLE), "--registry", db, "--entry", "2", "--registry-key", str(pub),
        "--out", str(tmp_path / "c2.json"),
    )  # fmt: skip
    assert code == 2 and "not this bundle's" in message and not (tmp_path / "c2.json").exists()
    code, message = cli(
        "challenge", str(FIXTURE_BUNDLE), "--registry", db, "--entry", "1", "--registry-key", str(other_pub),
        "--out", str(tmp_path / "c3.json"),
    )  # fmt: skip
    assert code == 1 and "not signed by registry key" in message
    code, message = cli("challenge", str(FIXTURE_BUNDLE), "--registry", db, "--out", str(tmp_path / "c4.json"))
    assert code == 2 and "--entry" in message
    code, message = cli(
        "challenge", str(FIXTURE_BUNDLE), "--registry", db, "--entry", "1", "--out", str(tmp_path / "c5.json")
    )
    assert code == 2 and "no registry key pinned" in message
    code, _ = cli("registry", "check", "--db", db, "--registry-pub", str(pub), "--json")  # pins the key
    assert code == 0
    code, made = cli(
        "challenge", str(FIXTURE_BUNDLE), "--registry", db, "--entry", "1", "--out", str(tmp_path / "c5.json")
    )
    assert code == 0, made


def test_only_the_first_checkpoint_that_includes_the_entry_seeds_a_challenge(registry_world):
    """Issue 33 (5): every add signs a new root whose tree includes entry 1; were each a fair seed, its owner could
    add entries until one gave prompts that suit. Only the entry's first checkpoint (size log_index + 1) is
    fetched, the same one however many entries follow, and a later one is refused though it is truly signed
    and truly includes the entry."""
    from noseprint.registry.audit import LocalSource
    from noseprint.registry.challenge_seed import fetch_seed_record, log_errors, seed_record_errors
    from noseprint.registry.service import inclusion
    from noseprint.signing.keys import load_public

    db, public = registry_world["db"], load_public(registry_world["pub"])
    first = fetch_seed_record(LocalSource(db), 1, DIGEST, public)
    assert (first["size"], first["log_index"], first["inclusion_proof"]) == (1, 0, [])
    registered(db, registry_world["root"] / "registry-key", [b'{"fourth": 4}'])  # the owner adds another entry
    assert fetch_seed_record(LocalSource(db), 1, DIGEST, public) == first  # the seed does not move
    later = inclusion(registry_world["registry"], 1, 4)
    record = later["checkpoint"] | {
        "entry_id": 1, "log_index": later["log_index"], "leaf": later["leaf"], "inclusion_proof": later["proof"],
    }  # fmt: skip
    assert log_errors(record, public) == []  # a genuine checkpoint with the entry in it...
    assert "only the first checkpoint" in seed_record_errors(record, DIGEST, public)[0]  # ...but not the first
    with pytest.raises(ChallengeError, match="only the first checkpoint"):
        Challenge.derive(DIGEST, bytes.fromhex(record["root"]), "registry-checkpoint", VOCAB, checkpoint=record)


def passed_report(challenge: Challenge, **changes) -> dict:
    report = {
        "valid": True, "agreement": 0.9375, "threshold": 0.75, "positions": challenge.positions,
        "challenge_digest": challenge.digest(), "proofs_digest": "cd" * 32, "failed_check": None, "reason": None,
        "answers_source": "https://api.example model served-1",
    }  # fmt: skip
    return report | changes


def test_registry_records_passed_checks_only_and_shows_them(tmp_path, db_url):
    from noseprint.registry.challenge_checks import list_inference_checks, record_inference_check
    from noseprint.registry.challenge_seed import fetch_seed_record
    from noseprint.registry.service import Rejected

    registry = registered(db_url, tmp_path / "registry-key", [(FIXTURE_BUNDLE / "manifest.json").read_bytes(), b"{}"])
    from noseprint.registry.audit import LocalSource

    record = fetch_seed_record(LocalSource(db_url), 1, DIGEST, registry.public)
    seeded = Challenge.derive(DIGEST, bytes.fromhex(record["root"]), "registry-checkpoint", VOCAB, checkpoint=record)
    compared = {"logprob_deviation": 0.031, "checks_passed": ["logprobs"]}
    stored = record_inference_check(registry, 1, seeded, passed_report(seeded, **compared))
    assert stored["checkpoint_size"] == 1 and stored["agreement"] == 0.9375 and stored["seed_source"] != "auditor"
    assert stored["logprob_deviation"] == 0.031
    own = Challenge.derive(DIGEST, SEED, "auditor", VOCAB)
    over_limit = {"logprob_deviation": 1.5 * MAX_LOGPROB_DEVIATION, "max_logprob_deviation": 1.0}
    refusals = [
        (1, own, passed_report(own, valid=False, failed_check="agreement", reason="0.5 < 0.75"), "did not pass"),
        (1, own, passed_report(seeded), "another challenge"),
        (1, own, passed_report(own, positions=3), "positions"),
        # a deviation over the verifier's limit (whatever limit the report states), not a number, or one the
        # report's own checks did not pass
        (1, own, passed_report(own, **compared | over_limit), "within the verifier's limit"),
        (1, own, passed_report(own, **compared | {"logprob_deviation": float("nan")}), "within the verifier's limit"),
        (1, own, passed_report(own, logprob_deviation=0.01), "did not pass the log-probability check"),
        (2, seeded, passed_report(seeded), "not this one"),  # entry 2 is another bundle
        (1, seeded, passed_report(seeded), "already"),
    ]
    for entry_id, challenge, report, match in refusals:
        with pytest.raises(Rejected, match=match):
            record_inference_check(registry, entry_id, challenge, report)
    record_inference_check(registry, 1, own, passed_report(own))
    checks = list_inference_checks(registry, 1)
    assert [c["seed_source"] for c in checks] == ["registry-checkpoint", "auditor"]
    assert [c["logprob_deviation"] for c in checks] == [0.031, None]
    assert list_inference_checks(registry, 2) == []
    code, shown = cli("registry", "show", "1", "--db", db_url, "--json")
    assert code == 0 and shown["inference_checks"] == checks
    code, text = cli("registry", "show", "1", "--db", db_url)
    text = " ".join(str(text).split())  # rich wraps at the runner's 80 columns
    assert (
        "inference check 1: passed, agreement 0.938 (threshold 0.750) over 16 positions, log-prob deviation 0.031, "
        "registry checkpoint 1" in text
    )
    assert "over 16 positions, greedy tokens only, auditor's seed" in text
    from fastapi.testclient import TestClient
    from noseprint.registry.server import create_app

    client = TestClient(create_app(registry, "token-0123456789"))
    page = client.get("/entries/1")
    assert page.status_code == 200 and "registry checkpoint 1" in page.text and "0.938 (0.750)" in page.text
    assert "<td>0.031</td>" in page.text and "not checked (greedy tokens only)" in page.text
    assert client.get("/api/entries/1").json()["inference_checks"] == checks


def test_registry_keeps_and_shows_where_the_answers_came_from(tmp_path, db_url):
    """Issue 33 (7): a check records the answers' source beside the seed's, so an owner's own transcript is not
    shown like an operator's query of a served API; a report that does not say where they came from is refused.
    The source is the answers file's text: shown escaped, never as markup."""
    from fastapi.testclient import TestClient
    from noseprint.registry.challenge_checks import list_inference_checks, record_inference_check
    from noseprint.registry.server import create_app
    from noseprint.registry.service import Rejected

    registry = registered(db_url, tmp_path / "registry-key", [(FIXTURE_BUNDLE / "manifest.json").read_bytes()])
    queried = Challenge.derive(DIGEST, SEED, "auditor", VOCAB)
    transcribed = Challenge.derive(DIGEST, SEED[::-1], "auditor", VOCAB)
    with pytest.raises(Rejected, match="where the answers came from"):
        record_inference_check(registry, 1, queried, passed_report(queried, answers_source=None))
    record_inference_check(registry, 1, queried, passed_report(queried))
    own = passed_report(transcribed, answers_source="transcript:[bold]mine.jsonl")
    record_inference_check(registry, 1, transcribed, own)
    checks = list_inference_checks(registry, 1)
    assert [(c["seed_source"], c["answers_source"]) for c in checks] == [
        ("auditor", "https://api.example model served-1"),
        ("auditor", "transcript:[bold]mine.jsonl"),
    ]
    assert "served API" in checks[0]["answers_origin"] and "maker's word" in checks[1]["answers_origin"]
    code, text = cli("registry", "show", "1", "--db", db_url)
    text = " ".join(str(text).split())
    assert code == 0 and "auditor's seed, answers from https://api.example model served-1 (a served API" in text
    assert "answers from transcript:[bold]mine.jsonl (a transcript: its maker's word, not a query)" in text
    page = TestClient(create_app(registry, "token-0123456789")).get("/entries/1")
    assert "transcript:[bold]mine.jsonl (a transcript: its maker&#39;s word, not a query)" in page.text


def test_registry_inference_command_records_what_the_verifier_passes(registry_world, monkeypatch, tmp_path):
    """The command's wiring, with the proof side's verifier stood in for (real proofs: the proof side's tests)."""
    from noseprint.core.answers import Answers

    db = registry_world["db"]
    challenge = Challenge.derive(DIGEST, SEED, "auditor", VOCAB)
    proofs = tmp_path / "proofs"
    proofs.mkdir()
    challenge.write(proofs / "challenge.json")
    answers = Answers(challenge.digest(), "test", [[0] * 8, [1] * 8]).write(tmp_path / "answers.json")
    outcome = {"valid": False}

    class Report:
        def __init__(self, valid: bool):
            self.valid = valid

        def to_dict(self) -> dict:
            return passed_report(challenge, valid=self.valid)

    def verify_inference(bundle_dir: Path, proofs_dir: Path, served: Answers, require_logprobs: bool) -> Report:
        assert (bundle_dir / "manifest.json").read_bytes() == (FIXTURE_BUNDLE / "manifest.json").read_bytes()
        assert proofs_dir == proofs and served.challenge_digest == challenge.digest()
        assert require_logprobs is outcome.get("require", False)
        return Report(outcome["valid"])

    fake = types.ModuleType("noseprint.verifier.challenge")
    fake.verify_inference = verify_inference  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "noseprint.verifier.challenge", fake)
    args = ("registry", "inference", "1", str(proofs), "--answers", str(answers), "--db", db, "--json")
    code, message = cli(*args)
    assert code == 1 and "did not pass" in message
    outcome["require"] = True
    code, message = cli(*args, "--require-logprobs")  # passed through: the stand-in asserts it
    assert code == 1 and "did not pass" in message
    outcome.update(valid=True, require=False)
    code, recorded = cli(*args)
    assert code == 0 and recorded["entry_id"] == 1 and recorded["seed_source"] == "auditor", recorded


def test_a_registry_made_before_a_column_was_added_opens_and_gains_it(db_url):
    """`inference_checks.logprob_deviation` and `answers_source` came after the first registries: opening one
    adds them (None in old rows) instead of failing the first query that reads them."""
    from noseprint.registry.store import open_engine
    from sqlalchemy import create_engine, inspect

    def columns() -> set[str]:
        bare = create_engine(db_url)  # no create_all, no upgrade: what the database holds
        try:
            return {column["name"] for column in inspect(bare).get_columns("inference_checks")}
        finally:
            bare.dispose()

    engine = open_engine(db_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE inference_checks DROP COLUMN logprob_deviation")
        connection.exec_driver_sql("ALTER TABLE inference_checks DROP COLUMN answers_source")
    engine.dispose()
    assert not {"logprob_deviation", "answers_source"} & columns()
    open_engine(db_url).dispose()
    assert {"logprob_deviation", "answers_source"} <= columns()
