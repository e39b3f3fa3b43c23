"""The same weights give one fingerprint (issue 33, item 1): a thief who re-proves a stolen model at its tokens
reversed, or at other ids under the standard strings, read "unrelated" to it (z-cosine -0.12) and registered.
Now the tokens follow one rule (`core/tokens.py`): `prove` refuses a token file that is not the rule's
selection from the model's own tokenizer; without a tokenizer the thief's real, valid proof is not comparable,
so `compare`, `registry add` and `check-opening` refuse it; `verify` refuses a bundle whose order breaks the
rule's evidence."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from noseprint.core.tokens import select
from noseprint.models.tokens import load_tokenizer

from tests.conftest import TOKENS, linked_copy, run_cli

pytestmark = pytest.mark.proof
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _write(path: Path, tokens: list[dict]) -> Path:
    path.write_text(json.dumps(tokens))
    return path


def _rehash(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def thief(proven, tmp_path_factory) -> dict:
    """The victim's model 0 without its tokenizer, re-proven (real proofs, the owner's keys cached) at its rule
    tokens reversed, as bare ids, and signed by the thief's own key."""
    root = tmp_path_factory.mktemp("thief")
    home = linked_copy(proven["owner"], root / "home")
    run_cli("keygen", "--out", str(root / "thief.key"), home=home, check=True)
    model = proven["models"][0]
    rule = select(load_tokenizer(model), int(TOKENS))
    bare = root / "stolen"
    shutil.copytree(model, bare)
    for name in TOKENIZER_FILES:
        (bare / name).unlink(missing_ok=True)
    reversed_ids = _write(root / "reversed.json", [{"id": i} for i in rule.ids[::-1]])
    bundle = root / "bundle"
    run_cli("prove", str(bare), "--out", str(bundle), "--n-tokens", TOKENS, "--tokens", str(reversed_ids),
            "--sign", str(root / "thief.key"), home=home, check=True)  # fmt: skip
    return {"root": root, "home": home, "rule": rule, "bundle": bundle, "model": model, "bare": bare}


def test_prove_and_fingerprint_refuse_tokens_that_are_not_the_rules(proven, thief, tmp_path):
    """Reversed, or other ids under the standard strings: refused before any proof, naming the rule."""
    rule, model = thief["rule"], thief["model"]
    strings = [t.string for t in rule]
    others = [i for i in range(300) if i not in rule.ids][: len(strings)]
    variants = {
        "reversed": [{"id": t.id, "string": t.string} for t in reversed(rule.tokens)],
        "other ids": [{"id": i, "string": s} for i, s in zip(others, strings, strict=True)],
    }
    for name, tokens in variants.items():
        file = _write(tmp_path / f"{name}.json", tokens)
        for command in (["prove", str(model), "--out", str(tmp_path / "b")], ["fingerprint", str(model), "--out",
                        str(tmp_path / "f")]):  # fmt: skip
            result = run_cli(*command, "--n-tokens", TOKENS, "--tokens", str(file), home=thief["home"])
            assert result.returncode == 2 and "token rule" in result.stderr, (name, result.stderr)
    # without a tokenizer a file may name strings only in the rule's order
    file = _write(tmp_path / "reversed-strings.json", variants["reversed"])
    result = run_cli("prove", str(thief["bare"]), "--out", str(tmp_path / "b"), "--n-tokens", TOKENS, "--tokens",
                     str(file), home=thief["home"])  # fmt: skip
    assert result.returncode == 2 and "rule" in result.stderr, result.stderr


def test_a_proof_at_the_owners_own_tokens_verifies_but_is_compared_with_nothing(proven, thief, tmp_path):
    auditor = linked_copy(proven["auditor"], tmp_path / "auditor")
    report = json.loads(run_cli("verify", str(thief["bundle"]), "--json", home=auditor).stdout)
    assert report["valid"] and report["facts"]["token_rule"] is None, report
    assert any("not comparable" in w for w in report["warnings"])
    victim = proven["bundles"][0]
    for other in (victim, thief["model"]):
        result = run_cli("compare", str(thief["bundle"]), str(other), "--json", home=auditor)
        assert result.returncode == 2 and "not comparable" in result.stderr, result.stdout + result.stderr
    srs = proven["owner"] / "srs" / f"k{proven['logrows']}.srs"
    db = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    added = run_cli("registry", "add", str(thief["bundle"]), "--db", db, "--srs", str(srs), home=auditor)
    assert added.returncode == 1 and "token rule" in added.stdout + added.stderr, added.stdout + added.stderr
    opening = thief["bundle"].with_name("bundle.opening.json")
    opened = run_cli("check-opening", str(thief["bundle"]), str(thief["model"]), "--opening", str(opening),
                     home=auditor)  # fmt: skip
    assert opened.returncode == 1 and "tokens.json" in opened.stdout, opened.stdout + opened.stderr
    # the same weights at their own bare folder do open the commitment: the proof is real, only its tokens lie
    opened = run_cli("check-opening", str(thief["bundle"]), str(thief["bare"]), "--opening", str(opening),
                     home=auditor)  # fmt: skip
    assert opened.returncode == 0, opened.stdout + opened.stderr


def test_verify_recomputes_the_selection_and_order_from_the_bundles_evidence(proven, tmp_path):
    """The victim's own bundle, its token list edited (unsigned, re-hashed): reversed, or ids swapped for others
    with the evidence edited to match only the ids, is refused at `tokens`; the untouched list passes that check."""
    auditor = linked_copy(proven["auditor"], tmp_path / "auditor")
    victim = proven["bundles"][0]
    record = json.loads((victim / "tokens.json").read_text())
    assert record["rule"] == "noseprint-tokens/v1" and len(record["encodings"]) >= int(TOKENS)

    def edited(name: str, change) -> Path:
        target = tmp_path / name
        shutil.copytree(victim, target)
        for signed in ("attestation.dsse.json", "signer.pub"):
            (target / signed).unlink(missing_ok=True)
        data = json.loads((target / "tokens.json").read_text())
        change(data)
        (target / "tokens.json").write_text(json.dumps(data))
        _rehash(target)
        return target

    def reverse(data: dict) -> None:
        data["tokens"].reverse()

    def drop_evidence(data: dict) -> None:
        data["tokens"].reverse()
        del data["rule"], data["words_sha256"], data["encodings"]

    for name, change in (("reversed", reverse), ("reversed-legacy", drop_evidence)):
        result = run_cli("verify", str(edited(name, change)), "--json", home=auditor)
        report = json.loads(result.stdout)
        assert result.returncode == 1 and report["failed_check"] == "tokens", report
