"""Hashing, atomic writes (nothing noseprint writes is ever left half-written), and defensive reading of
strangers' files (bundles): no links followed, bounded sizes, JSON that can only fail with a reason."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from noseprint.core.errors import UsageError


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so multi-GB keys do not load into memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """The one JSON encoding noseprint hashes: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any, mode: int | None = None) -> None:
    write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path, what: str) -> Any:
    """Read JSON or raise a UsageError that names the file and what it should have been."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{what} is not readable JSON ({path}): {exc}") from None


@contextmanager
def staged_directory(target: Path, force: bool) -> Iterator[Path]:
    """Build a folder next to `target` and move it into place only when complete.

    An existing `target` is refused unless `force`; with `force` it is replaced
    only after the new folder is fully written, so a failure loses nothing.
    """
    target = Path(target)
    if target.exists() and not force:
        raise UsageError(f"output folder already exists: {target} (use --force to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        yield stage
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
            os.replace(stage, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


MAX_JSON_BYTES = 64 << 20
"""No file in a bundle is near this (the largest, a proof, is about 0.1-1 MB); more is an attack on memory."""


def _no_floats(text: str) -> Any:
    raise ValueError(f"non-integer number {text[:20]}")


def parse_json_strict(data: bytes, allow_floats: bool = False) -> Any:
    """JSON from a stranger: every failure is a ValueError with a reason, never another exception.

    Refused: invalid UTF-8 or JSON, nesting deeper than the parser's recursion limit, integers over
    Python's digit limit, NaN and infinities, and (unless `allow_floats`) any non-integer number: a
    `head_dim` of `8.0` passes a JSON schema's "integer" and then breaks `torch.zeros`.
    """
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"{len(data):,} bytes, more than the {MAX_JSON_BYTES:,} a bundle file may have")
    try:
        return json.loads(
            data,
            parse_float=None if allow_floats else _no_floats,
            parse_constant=lambda name: _no_floats(name),
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and the digit limit are ValueErrors
        raise ValueError(str(exc)[:200]) from None


def read_inside(root: Path, relative: str, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """A file's bytes, only if it is a regular file inside `root` reached through no symbolic link.

    A bundle is a stranger's folder: a link in it could make the verifier read (and, through the hash
    check, test guesses about) its own files, such as /etc/hostname."""
    root = Path(root)
    path = root / relative
    current = root
    for part in Path(relative).parts:
        current = current / part
        if current.is_symlink():
            raise ValueError(f"{relative} is a symbolic link")
    resolved, base = path.resolve(), root.resolve()
    if base not in resolved.parents:
        raise ValueError(f"{relative} lies outside the bundle")
    if not path.is_file():
        raise ValueError(f"{relative} is missing or not a regular file")
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{relative} is larger than {max_bytes:,} bytes")
    return path.read_bytes()


def links_inside(root: Path) -> list[str]:
    """Every symbolic link under `root` (relative paths), without following any."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            if (Path(folder) / name).is_symlink():
                found.append(str((Path(folder) / name).relative_to(root)))
    return sorted(found)
