"""Bundles as single files: a gzip'd tar of the bundle folder, packed reproducibly, unpacked defensively.

A registry receives bundles from strangers, so unpacking refuses anything that
is not a plain file or folder under the archive root (absolute paths, `..`,
links, devices), and stops at size and count limits before writing a byte
past them.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

from core.errors import UsageError

MAX_ARCHIVE_BYTES = 32 << 20
MAX_UNPACKED_BYTES = 64 << 20
MAX_MEMBERS = 64


class ArchiveError(UsageError):
    """The upload is not an acceptable bundle archive; the message says why."""


def pack(bundle: Path) -> bytes:
    """tar.gz of the folder's files, sorted, with zeroed times and owners, so equal bundles give equal bytes."""
    bundle = Path(bundle)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()):
            name = path.relative_to(bundle).as_posix()
            if name.startswith(".") or "/." in name:
                continue  # staging leftovers, editor files
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(part in ("..", "") for part in path.parts) or "\\" in name:
        raise ArchiveError(f"the archive holds a path outside the bundle: {name!r}")
    return path


def unpack(data: bytes, target: Path) -> Path:
    """Unpack an uploaded archive into the empty folder `target`; returns the bundle root inside it."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ArchiveError(f"the archive is larger than {MAX_ARCHIVE_BYTES >> 20} MiB")
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, EOFError, OSError):
        raise ArchiveError("the upload is not a tar archive (send the bundle folder as a .tar.gz)") from None
    total, count = 0, 0
    target = Path(target)
    with tar:
        try:
            for member in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"the archive holds more than {MAX_MEMBERS} entries")
                relative = _safe_name(member.name)
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ArchiveError(f"the archive holds a link or special file: {member.name!r}")
                total += member.size
                if total > MAX_UNPACKED_BYTES:
                    raise ArchiveError(f"the archive unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
                destination = target.joinpath(*relative.parts)
                if destination.exists():
                    raise ArchiveError(f"the archive holds {member.name!r} twice")
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                destination.write_bytes(source.read(member.size + 1)[: member.size])
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ArchiveError(f"the archive is damaged ({exc})") from None
    if (target / "manifest.json").is_file():
        return target
    folders = [p for p in target.iterdir() if p.is_dir()]
    if len(folders) == 1 and (folders[0] / "manifest.json").is_file():
        return folders[0]
    raise ArchiveError("the archive holds no manifest.json (at its root or in one top folder)")
