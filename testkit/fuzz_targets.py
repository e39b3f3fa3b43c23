"""Fuzz targets for everything noseprint parses from strangers, shared by tests/test_fuzz.py (a bounded slice,
in CI) and bench/fuzz.py (many more inputs, with the count reported).

Two groups: what a registry parses from an upload (archives, DSSE envelopes, checkpoints), and the local
`verify` path (the manifest, tokens.json, z.json, proof.json, the circuit layout, and the whole verifier on
a real bundle with one member file replaced the way an attacker would: re-hashed, unsigned).

A target returns normally for any input: an input may be refused, but only with one of noseprint's own
refusals (a clear message, INVALID from `verify`), never with another exception.
"""

from __future__ import annotations

import copy
import io
import json
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import noseprint.registry.archive as archive
import noseprint.registry.tree_head as cp
import noseprint.signing.dsse as dsse
from hypothesis import strategies as st
from noseprint.core.errors import NoseprintError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def _paths(record: object) -> list[tuple]:
    """Every key of every object, and the first three items of every list, as paths from the top."""
    paths: list[tuple] = []

    def walk(node, prefix: tuple) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append((*prefix, key))
                walk(value, (*prefix, key))
        elif isinstance(node, list):
            for i, value in enumerate(node[:3]):
                paths.append((*prefix, i))
                walk(value, (*prefix, i))

    walk(record, ())
    return paths


def mutations(manifest: dict, values: st.SearchStrategy = JSON) -> st.SearchStrategy[dict]:
    """A real manifest with one value somewhere replaced by arbitrary JSON, or one key dropped."""
    paths = _paths(manifest)

    def apply(path: tuple, value, drop: bool) -> dict:
        result = copy.deepcopy(manifest)
        node = result
        for part in path[:-1]:
            node = node[part]
        if drop and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return result

    return st.builds(apply, st.sampled_from(paths), values, st.booleans())


def verify_manifest(bundle: Path, manifest: object) -> None:
    """Run the verifier on a copy of `bundle` whose manifest is replaced."""
    import shutil

    from noseprint.verifier.checks import verify_bundle

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "b"
        if bundle.is_dir():
            shutil.copytree(bundle, target)
        else:
            target.mkdir()
        (target / "manifest.json").write_text(json.dumps(manifest, allow_nan=True))
        try:
            report = verify_bundle(target)
        except NoseprintError:
            return
        assert report.valid is False or manifest == json.loads((bundle / "manifest.json").read_text())


def unpack_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            archive.unpack(data, Path(tmp))
        except archive.ArchiveError:
            return


def tar_of(members: list[tuple[str, bytes, bytes]]) -> bytes:
    """A tar.gz with arbitrary names, types and contents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name or "x")
            info.type = kind or tarfile.REGTYPE
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            info.linkname = "target" if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buffer.getvalue()


TAR_MEMBERS = st.lists(
    st.tuples(
        st.sampled_from(["manifest.json", "a/b", "../x", "/abs", "a/../../y", "dir/", "", "ok.json", "a\\b"])
        | st.text(max_size=12),
        st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE]),
        st.binary(max_size=64),
    ),
    max_size=6,
)


def parse_envelope(data: bytes) -> None:
    try:
        dsse.parse(dsse.loads(data))
    except dsse.EnvelopeError:
        return


def parse_checkpoint(value: object) -> None:
    try:
        cp.from_dict(value)
    except cp.CheckpointError:
        return


# the local `verify` path ----------------------------------------------------------------------------------

DATA = Path(__file__).parent.parent / "tests" / "data"
BUNDLE = DATA / "bundle-v4"
"""A real proven, signed bundle (chunky llama, 18 chunk proofs, logrows 12), committed with the tests."""
SRS = DATA / "dev-k12.srs"
MEMBERS = ("manifest.json", "tokens.json", "z.json", "proofs/encode.json", "proofs/chunks/layer1.ffn.2.json")
"""The member files `verify` parses as JSON from the bundle (settings.json it only compares with its own)."""

HOSTILE_TEXT = [
    "9" * 5000,
    "-" + "9" * 5000,
    "9" * 4300,
    str(2**64),
    str(2**256),
    "-1",
    "0",
    "1e400",
    "-1e400",
    "1e-400",
    "8.0",
    "0.5",
    "-0.0",
    "1E2",
    "NaN",
    "Infinity",
    "-Infinity",
    "[" * 50_000,
    "[" * 50_000 + "]" * 50_000,
    '{"a":' * 5_000 + "0" + "}" * 5_000,
    "[" + "0," * 100_000 + "0]",
    '"' + "x" * 100_000 + '"',
    '"\\ud800"',
    '"\\u0000"',
    "null",
    "true",
    "[]",
    "{}",
    '""',
    '{"": 1, "": 2}',
]
"""JSON text strangers send: integers past Python's digit limit, floats where integers belong, NaN and
infinities, nesting past the recursion limit, huge lists and strings, lone surrogates."""

HOSTILE = st.sampled_from(HOSTILE_TEXT)
VALUE_TEXT = HOSTILE | JSON.map(json.dumps)
"""The text of one JSON value: hostile, or arbitrary JSON (NaN and infinities written as Python writes them)."""

_SENTINEL = "@@noseprint-fuzz@@"


def text_mutations(record: object) -> st.SearchStrategy[bytes]:
    """A real JSON file with one value replaced by the text of another (hostile or arbitrary), or one key dropped."""
    original = json.dumps(record)
    paths = _paths(record)

    def apply(path: tuple, fragment: str, drop: bool) -> bytes:
        result = json.loads(original)
        node = result
        for part in path[:-1]:
            node = node[part]
        if drop and isinstance(node, dict):
            del node[path[-1]]
            return json.dumps(result).encode()
        node[path[-1]] = _SENTINEL
        return json.dumps(result).replace(json.dumps(_SENTINEL), fragment, 1).encode("utf-8", "surrogatepass")

    return st.builds(apply, st.sampled_from(paths), VALUE_TEXT, st.booleans())


def file_bytes(record: object) -> st.SearchStrategy[bytes]:
    """What a stranger could put in a bundle's JSON file: raw bytes, hostile or arbitrary JSON, or the real
    file with one value replaced (twice as likely: it gets past the first checks)."""
    mutated = text_mutations(record)
    return st.one_of(
        st.binary(max_size=256),
        HOSTILE.map(str.encode),
        JSON.map(lambda v: json.dumps(v).encode()),
        mutated,
        mutated,
    )


def real(name: str, bundle: Path = BUNDLE) -> object:
    return json.loads((bundle / name).read_text())


def current_manifest(bundle: Path = BUNDLE) -> dict:
    """The bundle's manifest with the version this reader writes, so that mutations reach the schema rather
    than stop at the version."""
    from noseprint.core.bundle import VERSION

    manifest = real("manifest.json", bundle)
    assert isinstance(manifest, dict)
    return {**manifest, "version": VERSION}


def manifest_from_json(data: bytes) -> None:
    """The bundle reader: a manifest or BundleError."""
    from noseprint.core.bundle import BundleError, Manifest

    try:
        Manifest.from_json(data)
    except BundleError:
        return


def z_from_bytes(data: bytes) -> None:
    from noseprint.core.bundle import parse_z

    try:
        parse_z(data)
    except ValueError:
        return


def tokens_from_bytes(data: bytes) -> None:
    from noseprint.core.tokens import TokenList

    try:
        TokenList.from_json(data)
    except ValueError:
        return


def proof_from_bytes(data: bytes) -> None:
    from noseprint.core.bundle import parse_proof

    try:
        parse_proof(data)
    except ValueError:
        return


_HOSTILE_VALUES = [
    lambda: 10**5000, lambda: -(10**5000), lambda: 2**64, lambda: 0, lambda: -1, lambda: 8.0, lambda: 0.5,
    lambda: 1e300, lambda: float("nan"), lambda: float("inf"), lambda: float("-inf"), lambda: True, lambda: None,
    lambda: "9" * 5000, lambda: "", lambda: [], lambda: {}, lambda: [0] * 100_000, lambda: [{}] * 10_000,
    lambda: [[[[[[[[[[0]]]]]]]]]], lambda: {"hidden": 1},
]  # fmt: skip


def hostile_value(index: int) -> object:
    return _HOSTILE_VALUES[index]()


HOSTILE_VALUES = st.integers(0, len(_HOSTILE_VALUES) - 1).map(hostile_value)
"""Python values in place of a layout's fields: huge and non-integer numbers, wrong types, huge lists (made
on demand: hypothesis writes its strategies' reprs, and a 5,000-digit integer has none)."""

LAYOUT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | HOSTILE_VALUES,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


def layout_inputs(layout: dict) -> st.SearchStrategy[object]:
    """A real layout with one field replaced (by a hostile value half the time) or dropped, or any value."""
    return mutations(layout, HOSTILE_VALUES | LAYOUT_VALUES) | LAYOUT_VALUES


def layout_from_dict(value: object) -> None:
    """The layout reader as the manifest reader calls it: KeyError, TypeError and ValueError are its refusals
    (`Manifest.from_dict` turns them into BundleError); anything else is a crash."""
    from noseprint.core.layout import CircuitLayout

    try:
        CircuitLayout.from_dict(value)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return


PROVEN_FACTS = (
    "z",
    "model_commitment",
    "circuit",
    "srs",
    "image_sha256",
    "encoder_digest",
    "generator_digest",
    "owner_keyid",
    "owner_keyid_unsigned",
)
"""What a valid report establishes; a forged member may leave a bundle valid (token strings, the proof's
`timestamp` are the owner's words) but never with other facts."""


def forge_member(bundle: Path, target: Path, member: str | None, data: bytes) -> Path:
    """A copy of `bundle`, unsigned, with `member` replaced by `data` and its hash in the manifest updated
    (what an attacker does: the files check then passes and the verifier parses `data`)."""
    import hashlib
    import shutil

    shutil.copytree(bundle, target)
    for name in ("attestation.dsse.json", "signer.pub"):
        (target / name).unlink(missing_ok=True)
    if member is not None:
        (target / member).write_bytes(data)
        if member != "manifest.json":
            manifest = json.loads((target / "manifest.json").read_text())
            manifest["files"][member] = hashlib.sha256(data).hexdigest()
            (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target


_reference: dict[Path, dict] = {}


def reference_facts(bundle: Path = BUNDLE, srs: Path = SRS) -> dict:
    """The facts the unforged (only unsigned) copy verifies with; the first call derives the verifier's key
    in NOSEPRINT_HOME (about 20 s)."""
    from noseprint.verifier.checks import verify_bundle

    if bundle not in _reference:
        with tempfile.TemporaryDirectory() as tmp:
            report = verify_bundle(forge_member(bundle, Path(tmp) / "b", None, b""), srs_file=srs)
        assert report.valid, (
            f"{bundle}, unsigned, does not verify ({report.failed_check}: {report.reason}); the end-to-end "
            "target needs a bundle this verifier accepts, or every input stops at that check"
        )
        _reference[bundle] = {key: report.facts.get(key) for key in PROVEN_FACTS}
    return _reference[bundle]


OUTCOMES: Counter[str] = Counter()
"""(member, the check that refused it) for every input `verify_member` ran: how deep the fuzzing reached."""


def verify_member(member: str, data: bytes, bundle: Path = BUNDLE, srs: Path = SRS) -> None:
    """The real verifier on `bundle` with one member replaced and re-hashed: a Report (INVALID, or valid with
    the very facts of the real bundle) or a NoseprintError, never another exception."""
    from noseprint.verifier.checks import verify_bundle
    from noseprint.verifier.report import Report

    with tempfile.TemporaryDirectory() as tmp:
        target = forge_member(bundle, Path(tmp) / "b", member, data)
        try:
            report = verify_bundle(target, srs_file=srs)
        except NoseprintError as exc:
            OUTCOMES[f"{member}: {type(exc).__name__}"] += 1
            return
    assert isinstance(report, Report)
    OUTCOMES[f"{member}: {report.failed_check or 'valid'}"] += 1
    if report.valid:
        proven = {key: report.facts.get(key) for key in PROVEN_FACTS}
        assert proven == reference_facts(bundle, srs), f"a forged {member} verified, proving something else"


def forged_members(bundle: Path = BUNDLE) -> st.SearchStrategy[tuple[str, bytes]]:
    """(member, bytes): one of the bundle's JSON files and what replaces it."""
    return st.one_of(*(st.tuples(st.just(name), file_bytes(real(name, bundle))) for name in MEMBERS))
