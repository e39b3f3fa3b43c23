"""Fuzz targets for everything the registry parses from strangers, shared by tests/test_fuzz.py (a few hundred
inputs each, in CI) and bench/fuzz_registry.py (many more, with the count reported).

A target returns normally for any input: an input may be refused, but only with one of noseprint's own
errors (a clear message), never with another exception.
"""

from __future__ import annotations

import copy
import io
import json
import tarfile
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from core.errors import NoseprintError
from registry import archive
from registry import checkpoint as cp
from signing import dsse

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def mutations(manifest: dict) -> st.SearchStrategy[dict]:
    """A real manifest with one value somewhere replaced by arbitrary JSON, or one key dropped."""
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

    walk(manifest, ())

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

    return st.builds(apply, st.sampled_from(paths), JSON, st.booleans())


def verify_manifest(bundle: Path, manifest: object) -> None:
    """Run the verifier on a copy of `bundle` whose manifest is replaced."""
    import shutil

    from verifier.checks import verify_bundle

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
