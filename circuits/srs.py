"""The local SRS store: the structured reference strings this machine trusts.

An SRS made by `ezkl.gen_srs` lets whoever made it forge proofs, so noseprint
never takes one from a bundle. The store holds one SRS per circuit size
(logrows), each with a label saying where it came from:

- `dev`: generated here by `noseprint srs init`; fine for trying noseprint out,
  worthless against a prover who has the file (every verify warns);
- `imported`: copied in by `noseprint srs import FILE`, e.g. a ceremony file
  obtained out of band.

An SRS of 2^K points serves every circuit of logrows <= K (EZKL downsizes it when it loads it), so one
`srs init` or `srs import` of the largest size a user needs is all they do: `choose` is the one place an SRS is
picked for a circuit, the exact size if the store has it, else the smallest larger one. A bundle records the
SHA-256 of the file it was proven with; the verifier must hold that same file.
"""

from __future__ import annotations

import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import noseprint.core.paths as paths
from noseprint.core.errors import UsageError
from noseprint.core.fileio import parse_json_strict, sha256_file, write_json_atomic

DEV_WARNING = (
    "development SRS generated locally by `noseprint srs init`: whoever holds its secret can forge "
    "proofs; import a ceremony SRS (`noseprint srs import`) before trusting a verdict"
)


ORIGINS = ("dev", "imported")
"""Where a stored SRS came from (`_record`'s `origin`); a file named with --srs is "file"."""


@dataclass(frozen=True)
class Srs:
    path: Path
    logrows: int
    sha256: str
    origin: str  # "dev" | "imported" | "file"

    @property
    def is_dev(self) -> bool:
        return self.origin == "dev"


def _entry_paths(logrows: int, store: Path | None = None) -> tuple[Path, Path]:
    folder = store or paths.srs_store()
    return folder / f"k{logrows}.srs", folder / f"k{logrows}.json"


def load(logrows: int, store: Path | None = None) -> Srs | None:
    srs_path, meta_path = _entry_paths(logrows, store)
    if not srs_path.is_file() or not meta_path.is_file():
        return None
    try:
        meta = parse_json_strict(meta_path.read_bytes(), allow_floats=True)
        digest, origin = meta["sha256"], meta["origin"]
        if meta["logrows"] != logrows or origin not in ORIGINS or not isinstance(digest, str) or len(digest) != 64:
            raise ValueError("its fields are not a store entry's")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"the SRS store entry {meta_path} is unreadable ({exc}); import the SRS again") from None
    return Srs(srs_path, logrows, digest, origin)


def file_logrows(path: Path) -> int:
    """K of an SRS file: halo2 writes it first, as a little-endian u32."""
    try:
        with Path(path).open("rb") as handle:
            header = handle.read(4)
    except OSError as exc:
        raise UsageError(f"cannot read the SRS file {path}: {exc}") from None
    if len(header) != 4:
        raise UsageError(f"{path} is not an SRS file")
    return int(struct.unpack("<I", header)[0])


def find(logrows: int, store: Path | None = None) -> Srs | None:
    """The stored SRS that serves `logrows`: that size, else the smallest larger one (None if there is none)."""
    exact = load(logrows, store)
    if exact is not None:
        return exact
    larger = sorted((s for s in listing(store) if s.logrows > logrows), key=lambda s: s.logrows)
    return Srs(larger[0].path, logrows, larger[0].sha256, larger[0].origin) if larger else None


def choose(logrows: int, srs_file: Path | None = None, make_dev: bool = False, store: Path | None = None) -> Srs:
    """The SRS a circuit of `logrows` is proven or verified with: the file the user named (`--srs`), else the
    store's (`find`), else a new development one if asked (`--init-dev-srs`); UsageError saying how to get
    one otherwise."""
    if srs_file is not None:
        return from_file(srs_file, logrows)
    found = find(logrows, store)
    if found is not None:
        return found
    if make_dev:
        return init_dev(logrows, store=store)
    raise UsageError(
        f"no SRS for logrows {logrows} or more in {store or paths.srs_store()}; run `noseprint srs init --logrows "
        f"{logrows}` (development, insecure) or `noseprint srs import FILE --logrows K` with K >= {logrows}"
    )


def _record(srs_path: Path, meta_path: Path, logrows: int, origin: str, note: str) -> Srs:
    digest = sha256_file(srs_path)
    write_json_atomic(
        meta_path, {"logrows": logrows, "sha256": digest, "origin": origin, "note": note, "created": time.time()}
    )
    return Srs(srs_path, logrows, digest, origin)


def init_dev(logrows: int, force: bool = False, store: Path | None = None) -> Srs:
    """Generate an insecure development SRS (kept if one exists, unless `force`)."""
    import ezkl

    existing = load(logrows, store)
    if existing is not None and not force:
        return existing
    srs_path, meta_path = _entry_paths(logrows, store)
    srs_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = srs_path.with_suffix(".tmp")
    ezkl.gen_srs(str(tmp), logrows)
    tmp.replace(srs_path)
    return _record(srs_path, meta_path, logrows, "dev", DEV_WARNING)


def import_file(source: Path, logrows: int, force: bool = False, store: Path | None = None) -> Srs:
    if not Path(source).is_file():
        raise UsageError(f"SRS file not found: {source}")
    if file_logrows(source) != logrows:
        raise UsageError(f"{source} is an SRS of logrows {file_logrows(source)}, not {logrows}")
    srs_path, meta_path = _entry_paths(logrows, store)
    if srs_path.exists() and not force:
        raise UsageError(f"an SRS for logrows {logrows} is already in the store (use --force to replace it)")
    srs_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = srs_path.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(srs_path)
    return _record(srs_path, meta_path, logrows, "imported", f"imported from {source}")


def from_file(path: Path, logrows: int) -> Srs:
    """An SRS named on the command line (`--srs FILE`): trusted because the user named it; it must be large
    enough for `logrows`."""
    if not Path(path).is_file():
        raise UsageError(f"SRS file not found: {path}")
    size = file_logrows(path)
    if size < logrows:
        raise UsageError(f"{path} is an SRS of logrows {size}; this circuit needs {logrows} or more")
    return Srs(Path(path), logrows, sha256_file(path), "file")


def listing(store: Path | None = None) -> list[Srs]:
    folder = store or paths.srs_store()
    found = []
    for meta in sorted(folder.glob("k*.json")) if folder.is_dir() else []:
        entry = load(int(meta.stem[1:]), folder)
        if entry:
            found.append(entry)
    return found
