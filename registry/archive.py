"""Bundles as single files: a gzip'd tar of the bundle folder, packed reproducibly, unpacked defensively.

A registry receives bundles from strangers, so unpacking refuses anything that
is not a plain file or folder under the archive root (absolute paths, `..`,
links, devices), and stops at size and count limits before writing a byte
past them.

Unpacking reads the tar headers itself, never through `tarfile`: `tarfile` reads a pax extended header whole
before any limit on members applies (a 1 MB upload declaring 1 GiB of zeros took a server to 1 GiB), and
Python 3.11.7's parses it with a regular expression that backtracks (CVE-2024-6232). Here the gzip stream is
inflated only as far as each read asks (`_Gunzip`), a member is refused from its header alone (its type, its
declared size against what is left of the limits), and the only extended headers read are pax and GNU
long-name headers of at most MAX_EXTENDED_HEADER bytes (what GNU tar and macOS tar write for long names and
file attributes), parsed in linear time; their `path` and `size` are honoured, nothing else.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from noseprint.core.errors import UsageError

MAX_ARCHIVE_BYTES = 32 << 20
MAX_UNPACKED_BYTES = 64 << 20
MAX_MEMBERS = 64
MAX_EXTENDED_HEADER = 8 << 10
"""The most a pax or GNU long-name header may hold: a path and a few file attributes take well under 1 KiB."""
MAX_EXTENDED_RUN = 3
"""Extended headers in a row before a member: a global pax header, a pax header and a GNU long name at most."""
MAX_GZIP_MEMBERS = 64
BLOCK = 512
READ_CHUNK = 1 << 20
INPUT_CHUNK = 64 << 10
GZIP_MAGIC = b"\x1f\x8b"
POSIX_MAGIC = b"ustar\x00"
REGULAR, DIRECTORY = (b"0", b"\x00"), b"5"
PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME = b"x", b"g", b"L"


class ArchiveError(UsageError):
    """The upload is not an acceptable bundle archive; the message says why."""


def pack(bundle: Path) -> bytes:
    """tar.gz of the folder's files, sorted, with zeroed times and owners, so equal bundles give equal bytes.
    Plain ustar: no pax headers (a name that needs one is refused here, not by the registry that unpacks it)."""
    bundle = Path(bundle)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6, format=tarfile.USTAR_FORMAT) as tar:
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


class _Gunzip:
    """The gunzipped stream of `data`: each read inflates at most what it asks for, whatever the data declares,
    and all reads together at most `limit` bytes. Concatenated gzip members are one stream, as gzip reads them."""

    def __init__(self, data: bytes, limit: int):
        self._input = memoryview(data)
        self._offset = 0
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._members = 1
        self._pending = b""
        self._limit = limit
        self.produced = 0

    def _next_input(self) -> bytes:
        tail = self._decompressor.unconsumed_tail
        if tail:
            return tail
        chunk = bytes(self._input[self._offset : self._offset + INPUT_CHUNK])
        self._offset += len(chunk)
        return chunk

    def _next_member(self) -> bool:
        """After a gzip member's end: start the next one, if the rest is one (else the stream ends)."""
        rest = self._decompressor.unused_data + bytes(self._input[self._offset : self._offset + 2])
        if not rest.startswith(GZIP_MAGIC):
            return False
        self._members += 1
        if self._members > MAX_GZIP_MEMBERS:
            raise ArchiveError(f"the archive is more than {MAX_GZIP_MEMBERS} gzip streams")
        leftover = self._decompressor.unused_data
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = leftover
        return True

    def _inflate(self, size: int) -> bytes:
        while True:
            if self._decompressor.eof and not self._next_member():
                return b""
            chunk = self._pending or self._next_input()
            self._pending = b""
            if not chunk:
                if not self._decompressor.eof:
                    raise ArchiveError("the archive is damaged (its gzip stream ends early)")
                return b""
            out = self._decompressor.decompress(chunk, size)
            if out:
                return out

    def read(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            piece = self._inflate(size - len(out))
            if not piece:
                break
            out += piece
        self.produced += len(out)
        if self.produced > self._limit:
            raise ArchiveError(f"the archive unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
        return bytes(out)


class _Plain:
    """An uncompressed tar, read the same way."""

    def __init__(self, data: bytes):
        self._data, self._offset = data, 0

    def read(self, size: int) -> bytes:
        chunk = self._data[self._offset : self._offset + size]
        self._offset += len(chunk)
        return chunk


def _field(header: bytes, start: int, length: int) -> bytes:
    return header[start : start + length].split(b"\x00", 1)[0]


def _octal(header: bytes, start: int, length: int, what: str) -> int:
    """A numeric field: octal digits, NUL- or space-terminated. Base-256 (GNU's encoding of sizes of 8 GiB
    and more) is refused: nothing in a bundle is near that."""
    raw = header[start : start + length]
    if raw[:1] in (b"\x80", b"\xff"):
        raise ArchiveError(f"the archive declares a {what} too large to be a bundle's")
    digits = raw.split(b"\x00", 1)[0].strip(b" ")
    if not digits:
        return 0
    if not all(48 <= c <= 55 for c in digits):
        raise ValueError(f"a {what} field is not octal")
    return int(digits, 8)


def _checksum_ok(header: bytes) -> bool:
    stored = _octal(header, 148, 8, "checksum")
    blanked = header[:148] + b" " * 8 + header[156:]
    unsigned = sum(blanked)
    signed = unsigned - 256 * sum(1 for byte in blanked if byte > 127)
    return stored in (unsigned, signed)


def _pax_records(data: bytes) -> dict[str, str]:
    """A pax extended header's `LENGTH KEY=VALUE\\n` records, read left to right once (linear time)."""
    records, offset = {}, 0
    while offset < len(data) and data[offset:].strip(b"\x00"):
        space = data.find(b" ", offset, offset + 20)
        if space < 0 or not data[offset:space].isdigit():
            raise ValueError("a pax record has no length")
        length = int(data[offset:space])
        record = data[offset : offset + length]
        if length <= space - offset + 1 or len(record) != length or not record.endswith(b"\n"):
            raise ValueError("a pax record's length is wrong")
        key, equals, value = record[space - offset + 1 : -1].partition(b"=")
        if not equals:
            raise ValueError("a pax record has no '='")
        records[key.decode("utf-8")] = value.decode("utf-8")
        offset += length
    return records


@dataclass
class _Header:
    kind: bytes
    name: str
    size: int


class _Reader:
    """Members of a tar stream, one header at a time, with the extended headers applied."""

    def __init__(self, stream: _Gunzip | _Plain):
        self._stream = stream

    def _block(self) -> bytes | None:
        """The next header block; None at the end (a zero block, or the stream's end)."""
        header = self._stream.read(BLOCK)
        if not header or header == bytes(len(header)):
            return None
        if len(header) < BLOCK:
            raise ArchiveError("the archive is damaged (it ends inside a header)")
        if not _checksum_ok(header):
            raise ArchiveError("the archive is damaged (a header's checksum is wrong)")
        return header

    def _raw_header(self, header: bytes) -> _Header:
        name = _field(header, 0, 100)
        if header[257:263] == POSIX_MAGIC and _field(header, 345, 155):
            name = _field(header, 345, 155) + b"/" + name
        kind = header[156:157]
        return _Header(kind, name.decode("utf-8"), _octal(header, 124, 12, "size"))

    def data(self, size: int, sink: Callable[[bytes], object]) -> None:
        """A member's `size` bytes, READ_CHUNK at a time, then its padding to the next block."""
        left = size
        while left:
            chunk = self._stream.read(min(left, READ_CHUNK))
            if not chunk:
                raise ArchiveError("the archive is damaged (it ends inside a file)")
            sink(chunk)
            left -= len(chunk)
        self._stream.read(-size % BLOCK)

    def _extended(self, raw: _Header) -> bytes:
        if raw.size > MAX_EXTENDED_HEADER:
            raise ArchiveError(
                f"the archive holds an extended header of {raw.size:,} bytes (at most {MAX_EXTENDED_HEADER:,} "
                "allowed): refused before reading it"
            )
        data = self._stream.read(raw.size)
        if len(data) < raw.size:
            raise ArchiveError("the archive is damaged (it ends inside a header)")
        self._stream.read(-raw.size % BLOCK)
        return data

    def next(self) -> _Header | None:
        """The next member, its name and size as its extended headers set them; None at the archive's end."""
        overrides: dict[str, str] = {}
        for _ in range(MAX_EXTENDED_RUN + 1):
            header = self._block()
            if header is None:
                return None
            raw = self._raw_header(header)
            if raw.kind == PAX_GLOBAL:
                if {"path", "size"} & set(_pax_records(self._extended(raw))):
                    raise ArchiveError("the archive's global pax header sets a path or size")
            elif raw.kind == PAX_LOCAL:
                overrides |= {k: v for k, v in _pax_records(self._extended(raw)).items() if k in ("path", "size")}
            elif raw.kind == GNU_LONGNAME:
                overrides.setdefault("path", self._extended(raw).split(b"\x00", 1)[0].decode("utf-8"))
            else:
                name = overrides.get("path", raw.name)
                size = int(overrides["size"]) if "size" in overrides else raw.size
                if size < 0:
                    raise ArchiveError("the archive declares a negative size")
                return _Header(raw.kind, name, size)
        raise ArchiveError(f"the archive holds more than {MAX_EXTENDED_RUN} extended headers in a row")


def _open(data: bytes) -> _Reader:
    if data[:2] == GZIP_MAGIC:
        return _Reader(_Gunzip(data, MAX_UNPACKED_BYTES + (MAX_MEMBERS + 1) * 8 * (BLOCK + MAX_EXTENDED_HEADER)))
    if len(data) >= BLOCK and data[257:262] == b"ustar":
        return _Reader(_Plain(data))
    raise ArchiveError("the upload is not a tar archive (send the bundle folder as a .tar.gz)")


def _is_root(name: str) -> bool:
    return name.strip("/") in ("", ".")


def _extract(reader: _Reader, target: Path) -> None:
    total, count = 0, 0
    while (member := reader.next()) is not None:
        count += 1
        if count > MAX_MEMBERS:
            raise ArchiveError(f"the archive holds more than {MAX_MEMBERS} entries")
        if member.kind == DIRECTORY or (member.kind in REGULAR and member.name.endswith("/")):
            if member.size:
                raise ArchiveError(f"the archive holds a folder with data: {member.name!r}")
            if not _is_root(member.name):
                _safe_name(member.name)
            continue
        relative = _safe_name(member.name)
        if member.kind not in REGULAR:
            raise ArchiveError(f"the archive holds a link or special file: {member.name!r}")
        total += member.size
        if total > MAX_UNPACKED_BYTES:
            raise ArchiveError(f"the archive unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
        destination = target.joinpath(*relative.parts)
        if destination.exists():
            raise ArchiveError(f"the archive holds {member.name!r} twice")
        destination.parent.mkdir(parents=True, exist_ok=True)
        with destination.open("xb") as sink:
            reader.data(member.size, sink.write)


def unpack(data: bytes, target: Path) -> Path:
    """Unpack an uploaded archive into the empty folder `target`; returns the bundle root inside it."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ArchiveError(f"the archive is larger than {MAX_ARCHIVE_BYTES >> 20} MiB")
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    try:
        _extract(_open(data), target)
    except (zlib.error, EOFError, OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise ArchiveError(f"the archive is damaged ({str(exc)[:200]})") from None
    if (target / "manifest.json").is_file():
        return target
    folders = [p for p in target.iterdir() if p.is_dir()]
    if len(folders) == 1 and (folders[0] / "manifest.json").is_file():
        return folders[0]
    raise ArchiveError("the archive holds no manifest.json (at its root or in one top folder)")
