"""Issue 33, item 3: what a stranger's upload may make the registry allocate before any limit applies.

A pax extended header declaring 1 GiB of zeros compresses to about 1 MB; `tarfile` read it whole before
`unpack`'s member and size limits applied (1,050 MiB peak, 22-27 s). The archive is now read header by header
through a gzip reader that inflates only what each read asks for, and the header is refused from its declared
size. A real `noseprint registry serve` answers the bomb with a 4xx, stays small and keeps answering."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path

import httpx
import noseprint.registry.archive as archive
import noseprint.registry.pages as pages
import psutil
import pytest
from fastapi import HTTPException

from tests.conftest import FIXTURE_BUNDLE, _free_port

GIB = 1 << 30
MIB = 1 << 20
MAX_SERVER_RSS = 300 * MIB


def pax_bomb(declared: int = GIB) -> bytes:
    """A gzip'd tar whose first member is a pax extended header of `declared` zero bytes: a valid archive that
    any gunzip inflates to `declared` bytes. Built from one compressed MiB repeated (each ends in a full flush,
    so the compressor's state is the same at each start), with the gzip trailer computed for the whole."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, declared
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = bytes(MIB)
    repeated = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert repeated == deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    count = declared // MIB
    body = start + repeated * count + deflate.flush()
    crc = zlib.crc32(header)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    size = len(header) + count * MIB
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + struct.pack("<II", crc, size & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = pax_bomb()
    assert 0.9 * MIB < len(data) < 1.2 * MIB
    return data


def test_the_bomb_is_a_valid_archive_of_a_gib():
    """The test's bomb is what it says: gunzip inflates it to the header, then 1 GiB (checked at 4 MiB)."""
    small = pax_bomb(4 * MIB)
    inflated = zlib.decompress(small, 16 + zlib.MAX_WBITS)
    assert len(inflated) == 512 + 4 * MIB and inflated[156:157] == tarfile.XHDTYPE


def test_a_pax_header_bomb_is_refused_from_its_header(bomb, tmp_path):
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(archive.ArchiveError, match="extended header of 1,073,741,824 bytes"):
            archive.unpack(bomb, tmp_path / "out")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2, elapsed
    assert peak < 8 * MIB, peak
    assert not any((tmp_path / "out").iterdir())


def _gnu_tar(source: Path, target: Path, *options: str) -> bytes:
    subprocess.run(["tar", *options, "-czf", str(target), "-C", str(source), "."], check=True)
    return target.read_bytes()


@pytest.mark.parametrize("options", [(), ("--format=posix",), ("--format=gnu",)], ids=["default", "posix", "gnu"])
def test_archives_made_by_tar_unpack_as_tarfile_reads_them(tmp_path, options):
    """GNU tar's own archives of a bundle (its root `./`, long names, posix headers) unpack to the same files."""
    source = tmp_path / "bundle"
    deep = source / ("d" * 90) / ("e" * 90)
    deep.mkdir(parents=True)
    (source / "manifest.json").write_bytes((FIXTURE_BUNDLE / "manifest.json").read_bytes())
    (deep / ("f" * 120 + ".json")).write_bytes(os.urandom(70_000))
    data = _gnu_tar(source, tmp_path / "b.tar.gz", *options)
    root = archive.unpack(data, tmp_path / "out")
    expected = tmp_path / "expected"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(expected, filter="data")
    files = sorted(p.relative_to(expected) for p in expected.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) and len(files) == 2
    assert all((root / f).read_bytes() == (expected / f).read_bytes() for f in files)


@pytest.mark.parametrize(
    ("kind", "words"),
    [(tarfile.GNUTYPE_SPARSE, "link or special"), (tarfile.GNUTYPE_LONGLINK, "link or special")],
)
def test_other_tar_extensions_are_refused(tmp_path, kind, words):
    info = tarfile.TarInfo("manifest.json")
    info.type = kind
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info)
    with pytest.raises(archive.ArchiveError, match=words):
        archive.unpack(buffer.getvalue(), tmp_path)


def test_public_searches_are_few_at_a_time():
    """Two at once, one waiting; a second waiter is refused at once, and the waiter after its wait."""
    slots = pages.SearchSlots(2, waiting=1, wait_seconds=0.2)

    async def scenario() -> list[int]:
        statuses = []

        async def search(hold: float) -> None:
            try:
                async with slots.held():
                    await asyncio.sleep(hold)
                statuses.append(200)
            except HTTPException as exc:
                statuses.append(exc.status_code)

        await asyncio.gather(search(0.5), search(0.5), search(0), search(0))
        async with slots.held():  # every slot released again
            statuses.append(200)
        return statuses

    assert sorted(asyncio.run(scenario())) == [200, 200, 200, 503, 503]


def test_a_search_parses_no_json_that_could_cost_far_more_than_its_size(tmp_path):
    """A manifest of empty objects (16 MiB of them took 411 MiB to parse) and an oversized z body are refused."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_bytes(b"[" + b"{}," * 600_000 + b"{}]")
    with pytest.raises(HTTPException) as refused:
        pages.query_of_upload(archive.pack(bundle), "application/gzip")
    assert refused.value.status_code == 413 and "JSON values" in str(refused.value.detail)
    with pytest.raises(HTTPException) as refused:
        pages.query_of_upload(b'{"z": [' + b"{}," * 400_000 + b"1]}", "application/json")
    assert refused.value.status_code == 413


def _serve(tmp_path: Path) -> tuple[str, subprocess.Popen]:
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    environment = {"NOSEPRINT_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)}
    db = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    command = [sys.executable, "-m", "noseprint.cli", "registry", "serve", "--db", db, "--port", str(port)]
    process = subprocess.Popen([*command, "--token", "t" * 24], env=environment, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/api/registry", timeout=2).status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise AssertionError(process.stderr.read() if process.stderr else "the server exited")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the server did not start")


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (Linux's VmHWM), else its current one."""
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(psutil.Process(pid).memory_info().rss)


def test_a_served_registry_answers_the_bomb_and_keeps_answering(bomb, tmp_path):
    url, process = _serve(tmp_path)
    try:
        before = psutil.Process(process.pid).memory_info().rss
        started = time.perf_counter()
        api = httpx.post(url + "/api/search", content=bomb, headers={"content-type": "application/gzip"}, timeout=60)
        page = httpx.post(url + "/search", files={"bundle": ("bomb.tar.gz", bomb, "application/gzip")}, timeout=60)
        elapsed = time.perf_counter() - started
        assert api.status_code == 400 and "extended header" in api.json()["detail"], api.text
        assert page.status_code == 400 and "extended header" in page.text, page.text
        assert elapsed < 10, elapsed
        assert httpx.get(url + "/api/registry", timeout=5).status_code == 200
        ok = httpx.post(url + "/api/search", json={"z": [0.5] * 32}, timeout=10)
        assert ok.status_code == 200 and ok.json() == {"matches": []}, ok.text
        rss, peak = psutil.Process(process.pid).memory_info().rss, _peak_rss(process.pid)
        print(
            f"server RSS {before / MIB:.0f} MiB before, {rss / MIB:.0f} after, peak {peak / MIB:.0f}; {elapsed:.2f} s"
        )
        assert rss < MAX_SERVER_RSS and peak < MAX_SERVER_RSS, (before, rss, peak)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        stderr = process.stderr.read() if process.stderr else ""
    assert "Traceback" not in stderr, stderr
