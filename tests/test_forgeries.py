"""Bundles forged the ways an audit of `verify` found (issue 17), each refused with a reason and exit 1.

Every case starts from a committed bundle (`tests/data/bundle-v4`: 18 chunk proofs and an encode proof,
signed by the key it binds), strips its
signature (an attacker re-signs or leaves it unsigned), edits it, re-hashes what it edited, and runs the
real `noseprint verify` in a subprocess: a refusal must be INVALID, never a crash (exit 3) or a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import linked_copy, run_cli

DATA = Path(__file__).with_name("data")
BUNDLE = DATA / "bundle-v4"
SRS, LOGROWS = DATA / "dev-k12.srs", "12"

pytestmark = pytest.mark.proof  # verifies real proofs (the keys derived once, by the session's fixture_auditor)


@pytest.fixture(scope="module")
def auditor(fixture_auditor, tmp_path_factory) -> Path:
    """An auditor that verified the fixture once (its keys derived): every forgery below reaches the check it
    is aimed at without paying EZKL setup again."""
    return linked_copy(fixture_auditor, tmp_path_factory.mktemp("forgeries") / "auditor")


def forge(target: Path, edit: Callable[[Path, dict], None]) -> Path:
    """A copy of the fixture, unsigned, edited; the manifest's file hashes follow the edit."""
    shutil.copytree(BUNDLE, target)
    for name in ("attestation.dsse.json", "signer.pub"):
        (target / name).unlink()
    manifest = json.loads((target / "manifest.json").read_text())
    edit(target, manifest)
    for name in list(manifest["files"]):
        path = target / name
        if path.is_file() and not path.is_symlink():
            manifest["files"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
    if "raw_manifest" not in manifest:
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return target


def refused(bundle: Path, home: Path) -> dict:
    result = run_cli("verify", str(bundle), "--json", home=home)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert not report["valid"]
    return report


def digest_of(tensors: list) -> str:
    return hashlib.sha256(json.dumps(tensors, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def set_tensors(manifest: dict, tensors: list) -> None:
    manifest["commitment"]["tensors"] = tensors
    manifest["commitment"]["digest"] = digest_of(tensors)


PREFIXES = {
    "all but the last": lambda ts: ts[:-1],
    "the first alone": lambda ts: ts[:1],
    "two merged into one entry": lambda ts: [{**ts[0], "points": ts[0]["points"] + ts[1]["points"]}] + ts[2:],
}


@pytest.mark.parametrize("name", list(PREFIXES))
def test_commitment_lists_must_be_exact(name, auditor, tmp_path):
    def edit(_: Path, manifest: dict) -> None:
        set_tensors(manifest, PREFIXES[name](manifest["commitment"]["tensors"]))

    report = refused(forge(tmp_path / "b", edit), auditor)
    assert report["failed_check"] == "commitment", report


def test_the_unforged_copy_still_verifies(auditor, tmp_path):
    """The forging itself (copy, strip the signature, re-hash) leaves a valid bundle: the edits are what fail."""
    result = run_cli("verify", str(forge(tmp_path / "b", lambda *_: None)), "--json", home=auditor)
    assert result.returncode == 0, result.stdout


def write_manifest_text(text: str) -> Callable[[Path, dict], None]:
    def edit(target: Path, manifest: dict) -> None:
        manifest["raw_manifest"] = True
        (target / "manifest.json").write_text(text)

    return edit


def manifest_with(path: tuple, value_json: str) -> str:
    """The fixture's manifest text with the value at `path` replaced by raw JSON text."""
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    node = manifest
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = "@@VALUE@@"
    return json.dumps(manifest).replace('"@@VALUE@@"', value_json)


CRASHERS = {
    "a float where an integer belongs": manifest_with(("circuit", "layout", "layers", 0, "head_dim"), "8.0"),
    "a 5,000-digit integer": manifest_with(("z", "dim"), "9" * 5000),
    "deeply nested JSON": manifest_with(("model", "model_type"), "[" * 50_000 + "]" * 50_000),
    "NaN": manifest_with(("circuit", "partial_scale"), "NaN"),
}


@pytest.mark.parametrize("name", list(CRASHERS))
def test_manifests_that_crashed_the_verifier(name, auditor, tmp_path):
    report = refused(forge(tmp_path / "b", write_manifest_text(CRASHERS[name])), auditor)
    assert report["failed_check"] == "manifest", report


@pytest.mark.parametrize("member", ["tokens.json", "z.json", "proofs/encode.json", "proofs/chunks/layer0.vo.1.json"])
@pytest.mark.parametrize("content", ["[" * 50_000, '{"tokens": [{"id": 1.5}], "z": [1.5], "z_raw": [0]}', "9" * 5000])
def test_member_files_that_crashed_the_verifier(member, content, auditor, tmp_path):
    def edit(target: Path, _: dict) -> None:
        (target / member).write_text(content)

    report = refused(forge(tmp_path / "b", edit), auditor)
    assert report["failed_check"] in {"tokens", "public output", "proof"}, report


def test_symlinks_out_of_the_bundle_are_refused(auditor, tmp_path):
    """A link with the right hash would let a bundle test the contents of the verifier's own files."""
    secret = tmp_path / "verifier-secret.txt"
    secret.write_text("the verifier's own file")

    def edit(target: Path, manifest: dict) -> None:
        os.symlink(secret, target / "leak")
        manifest["files"]["leak"] = hashlib.sha256(secret.read_bytes()).hexdigest()

    report = refused(forge(tmp_path / "b", edit), auditor)
    assert report["failed_check"] == "files" and "symbolic link" in report["reason"], report


def test_a_linked_manifest_is_refused(auditor, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(BUNDLE, target)
    real = tmp_path / "elsewhere.json"
    (target / "manifest.json").rename(real)
    os.symlink(real, target / "manifest.json")
    report = refused(target, auditor)
    assert report["failed_check"] == "manifest" and "symbolic link" in report["reason"], report


@pytest.mark.parametrize("name", list(PREFIXES) + ["none"])
def test_commitments_match_is_exact_not_prefix(name, auditor, monkeypatch):
    """The function the link checks rest on: EZKL's swap writes over the first commitments only, so a short
    list would change nothing and pass; the verifier counts first, and this shows why it must."""
    from noseprint.circuits.proving import commitments_match

    monkeypatch.setenv("NOSEPRINT_HOME", str(auditor))
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    tensors = {t["name"]: t for t in manifest["commitment"]["tensors"]}
    entry = manifest["proofs"]["chunks"][0]  # layer0.qk.0: embedding, norm, q and k blocks, then its blinding
    own = [tensors[name] for name in ("embedding", "layer0.attn_norm", "layer0.q.0", "layer0.k.0")]
    inputs = [t["points"] for t in own] + [entry["blinding_points"]]
    proof = BUNDLE / entry["file"]
    assert commitments_match(proof, inputs, [entry["output_points"]])
    forged = [] if name == "none" else PREFIXES[name](own)
    swapped = commitments_match(proof, [t["points"] for t in forged] + [entry["blinding_points"]], [])
    # Merged lists spell the same points in the same order: the swap alone cannot tell, the counts can.
    assert swapped is (name == "two merged into one entry")
    other = manifest["proofs"]["chunks"][1]["output_points"]
    assert not commitments_match(proof, inputs, [other]), "another chunk's output is not this chunk's link"


def test_points_per_input_follows_ezkl(auditor, monkeypatch):
    """`usable_commit_rows` finds EZKL's column height by asking EZKL; the fixture's k12 keys have 2^12 - 6."""
    import noseprint.circuits.srs as srs_store
    from noseprint.circuits.keys import Keys
    from noseprint.circuits.proving import points_per_input, usable_commit_rows

    monkeypatch.setenv("NOSEPRINT_HOME", str(auditor))
    folder = next((auditor / "keys").iterdir())
    keys = Keys(folder / "vk.key", None, folder / "settings.json", "", False)
    usable = usable_commit_rows(keys, srs_store.choose(int(LOGROWS)))
    assert usable == (1 << int(LOGROWS)) - 6
    assert [points_per_input(n, usable) for n in (1, usable - 1, usable, 2 * usable)] == [1, 1, 2, 3]


def chunk_entries(manifest: dict) -> list[dict]:
    return manifest["proofs"]["chunks"]


def replace_chunk_proof(target: Path, manifest: dict) -> None:
    """Chunk 0's proof file holds chunk 1's proof (same shape, same key: it verifies on its own)."""
    first, second = chunk_entries(manifest)[:2]
    (target / first["file"]).write_bytes((target / second["file"]).read_bytes())


def swap_chunk_files(target: Path, manifest: dict) -> None:
    first, second = (target / e["file"] for e in chunk_entries(manifest)[:2])
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)


def swap_chunk_entries(_: Path, manifest: dict) -> None:
    chunks = chunk_entries(manifest)
    chunks[0], chunks[1] = chunks[1], chunks[0]


def swap_chunk_links(_: Path, manifest: dict) -> None:
    """Both chunks' entries and their links swapped, so the encode proof's inputs look re-ordered too."""
    chunks = chunk_entries(manifest)
    chunks[0]["output_points"], chunks[1]["output_points"] = chunks[1]["output_points"], chunks[0]["output_points"]


def drop_chunk(target: Path, manifest: dict) -> None:
    dropped = chunk_entries(manifest).pop(4)
    (target / dropped["file"]).unlink()
    del manifest["files"][dropped["file"]]


def change_link(_: Path, manifest: dict) -> None:
    """A link commitment replaced by another valid point (the next chunk's output)."""
    chunks = chunk_entries(manifest)
    chunks[2]["output_points"] = list(chunks[3]["output_points"])


def flip_chunk_proof(target: Path, manifest: dict) -> None:
    path = target / chunk_entries(manifest)[5]["file"]
    proof = json.loads(path.read_text())
    proof["proof"][-40] ^= 0x01
    proof["hex_proof"] = None
    path.write_text(json.dumps(proof))


CHUNK_FORGERIES = {
    "a chunk proof replaced by another chunk's": (
        replace_chunk_proof,
        "commitment",
        "layer0.qk.0's proof is not about",
    ),
    "two chunk proofs swapped": (swap_chunk_files, "commitment", "layer0.qk.0's proof is not about"),
    "two chunks swapped in the manifest": (swap_chunk_entries, "commitment", "is listed as layer0.qk.1"),
    "two links swapped": (swap_chunk_links, "commitment", "layer0.qk.0's proof is not about"),
    "a chunk dropped": (drop_chunk, "commitment", "17 chunk proofs; the chunk plan has 18"),
    "a link commitment changed": (change_link, "commitment", "layer0.qk.2's proof is not about"),
    "a chunk proof damaged": (flip_chunk_proof, "proof", "layer0.vo.2's proof does not verify"),
}


@pytest.mark.parametrize("name", list(CHUNK_FORGERIES))
def test_chunk_forgeries_are_refused_with_the_chunk_named(name, auditor, tmp_path):
    edit, check, words = CHUNK_FORGERIES[name]
    report = refused(forge(tmp_path / "b", edit), auditor)
    assert report["failed_check"] == check and words in report["reason"], report


def test_the_encode_proof_must_take_the_listed_links(auditor, tmp_path):
    """Links changed consistently in a chunk entry would still have to be the encode proof's inputs: the
    owner commitment point moved into a chunk's place is refused by the encode proof's check."""

    def edit(_: Path, manifest: dict) -> None:
        manifest["proofs"]["encode"]["owner_points"] = list(chunk_entries(manifest)[0]["output_points"])

    report = refused(forge(tmp_path / "b", edit), auditor)
    assert report["failed_check"] == "commitment" and "encode proof" in report["reason"], report


def edit_json(member: str, change: Callable[[dict], None]) -> Callable[[Path, dict], None]:
    def edit(target: Path, manifest: dict) -> None:
        data = manifest if member == "manifest.json" else json.loads((target / member).read_text())
        change(data)
        if member != "manifest.json":
            (target / member).write_text(json.dumps(data))

    return edit


UNPROVEN_EDITS = {
    "settings with range checks on": (
        edit_json(
            "circuit/encode/settings.json", lambda s: s["run_args"].update(ignore_range_check_inputs_outputs=False)
        ),
        "keys",
    ),
    "settings at logrows 20": (
        edit_json("circuit/chunk1/settings.json", lambda s: s["run_args"].update(logrows=20)),
        "keys",
    ),
    "a chunking other than the proofs'": (
        edit_json("manifest.json", lambda m: m["circuit"]["chunking"].update(ffn_rows=48)),
        "circuit",
    ),
    "another commitment scheme": (
        edit_json("manifest.json", lambda m: m["commitment"].update(scheme="noseprint-kzg-unblinded/v0")),
        "commitment",
    ),
    "layers that are not the last": (
        edit_json("manifest.json", lambda m: m["model"].update(fingerprinted_layers=[118, 119])),
        "manifest",
    ),
}


@pytest.mark.parametrize("name", list(UNPROVEN_EDITS))
def test_unproven_fields_that_verified_valid(name, auditor, tmp_path):
    edit, check = UNPROVEN_EDITS[name]
    report = refused(forge(tmp_path / "b", edit), auditor)
    assert report["failed_check"] == check, report


def test_claims_are_reported_apart_from_facts(auditor, tmp_path):
    """An owner may write any model type: it verifies, but as the owner's claim, never as a fact."""
    bundle = forge(tmp_path / "b", edit_json("manifest.json", lambda m: m["model"].update(model_type="gpt-4")))
    result = run_cli("verify", str(bundle), "--json", home=auditor)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["valid"], report
    assert report["claims"]["model_type"] == "gpt-4" and "model_type" not in report["facts"]
    assert "token_strings" in report["claims"] and "token_strings" not in report["facts"]
    text = run_cli("verify", str(bundle), home=auditor).stdout
    assert "the owner claims (not proven)" in text and "gpt-4" in text.split("the owner claims")[1]


def test_check_opening_binds_the_bundles_token_ids(auditor, tmp_path):
    """The opening's token ids must be the bundle's: otherwise the bundle could name tokens it never committed."""
    from tests.conftest import chunky_llama, save_tiny

    model = save_tiny(chunky_llama(seed=0), tmp_path / "model")  # the fixture's model, rebuilt from its seed
    opening = DATA / "bundle-v4.opening.json"
    same = run_cli("check-opening", str(BUNDLE), str(model), "--opening", str(opening), home=auditor)
    assert same.returncode == 0 and "MATCH" in same.stdout, same.stdout + same.stderr

    def swap_ids(tokens: dict) -> None:
        tokens["tokens"][0]["id"], tokens["tokens"][1]["id"] = tokens["tokens"][1]["id"], tokens["tokens"][0]["id"]

    bundle = forge(tmp_path / "b", edit_json("tokens.json", swap_ids))
    other = run_cli("check-opening", str(bundle), str(model), "--opening", str(opening), home=auditor)
    assert other.returncode == 1 and "tokens.json" in other.stdout, other.stdout + other.stderr


def test_a_stolen_bundle_re_signed_by_another_key_is_refused(auditor, tmp_path):
    """Copy a published bundle, drop its signature, sign it with your own key: the proof still binds the
    real owner's key, so verify (and so the registry) refuses it, and the real owner's bundle still registers."""
    from noseprint.signing.attestation import sign_bundle
    from noseprint.signing.keys import generate, load_private

    thief, _, thief_id = generate(tmp_path / "thief.key")
    stolen = forge(tmp_path / "stolen", lambda *_: None)
    refused_by_cli = run_cli("sign", str(stolen), "--key", str(thief), home=auditor)
    assert refused_by_cli.returncode == 2 and "only that key can sign it" in refused_by_cli.stderr
    sign_bundle(stolen, load_private(thief))  # around the CLI, as an attacker would
    report = refused(stolen, auditor)
    assert report["failed_check"] == "signature" and "binds owner key" in report["reason"], report

    def claim_it(_: Path, manifest: dict) -> None:
        manifest["owner"]["keyid"] = thief_id

    renamed = forge(tmp_path / "renamed", claim_it)
    sign_bundle(renamed, load_private(thief))
    report = refused(renamed, auditor)
    assert report["failed_check"] == "public output" and "another owner key" in report["reason"], report

    db = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    attempt = run_cli("registry", "add", str(stolen), "--db", db, "--srs", str(SRS), home=auditor)
    assert attempt.returncode == 1, attempt.stdout + attempt.stderr
    real = run_cli("registry", "add", str(BUNDLE), "--db", db, "--srs", str(SRS), home=auditor)
    assert real.returncode == 0, real.stdout + real.stderr


def test_other_term_shifts_are_refused(proven, tmp_path, monkeypatch):
    """The same weights (same commitment) proven with shifts of the owner's choosing give another valid-looking
    z; the proof's own term peaks show the shifts are not the minimal ones, and verify refuses. Proven in a
    copy of the session owner's home (the chunk keys cached: only the ground encode circuit is new)."""
    from dataclasses import replace

    import noseprint.encoder.release as release
    import noseprint.prover.prove as prove_step
    from noseprint.circuits.chunked import build_chunked
    from noseprint.circuits.keys import ensure_keys
    from noseprint.core.layout import with_term_shifts
    from noseprint.prover.pipeline import ProveOptions, prove_model
    from noseprint.verifier.checks import verify_bundle

    def grind(plan, partials, progress):
        layout = with_term_shifts(plan.layout, [shift + 1 for shift in plan.layout.term_shifts])
        circuits = build_chunked(layout, plan.chunking, release.ENCODER, release.RELEASED_ENCODER_DIGEST)
        ground = replace(plan, layout=layout, circuits=circuits)
        return ground, ensure_keys(circuits.encode, plan.srs, need_pk=True)

    monkeypatch.setattr(prove_step, "settle_shifts", grind)
    monkeypatch.setenv("NOSEPRINT_HOME", str(linked_copy(proven["owner"], tmp_path / "owner")))
    srs = proven["owner"] / "srs" / f"k{proven['logrows']}.srs"
    out = tmp_path / "ground"
    prove_model(ProveOptions(proven["models"][0], out, token_count=8, srs_file=srs))
    report = verify_bundle(out, srs_file=srs)
    assert not report.valid and report.failed_check == "public output", report.to_dict()
    assert "is not the minimal one" in str(report.reason)
