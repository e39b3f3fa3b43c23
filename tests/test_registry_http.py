"""The registry served over HTTP on loopback: the API's answers and refusals, 50 concurrent clients, a SIGKILL
in the middle of an add, and the web pages driven in real headless Chromium (Playwright)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from noseprint.registry.archive import pack
from PIL import Image

from tests.conftest import _free_port, run_cli

pytestmark = pytest.mark.proof
TOKEN = "test-token-0123456789"
CHROMIUM = "/usr/bin/chromium"


@contextmanager
def serving(home: Path, db: str, pause_marker: Path | None = None):
    """A `registry serve` process on loopback; with `pause_marker`, the crash test's server (tests/fault_server.py)."""
    port = _free_port()
    environment = {"NOSEPRINT_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)}
    if pause_marker is None:
        command = ["-m", "noseprint.cli", "registry", "serve", "--db", db, "--port", str(port), "--token", TOKEN]
    else:
        command = [str(Path(__file__).with_name("fault_server.py")), db, str(port), TOKEN, str(pause_marker)]
        environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    process = subprocess.Popen(
        [sys.executable, *command],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/api/registry", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise AssertionError(process.stderr.read())
            time.sleep(0.2)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        stderr = process.stderr.read() if process.stderr else ""
        assert "Traceback" not in stderr, stderr


def add(url: str, bundle_bytes: bytes, token: str | None = TOKEN, label: str = "") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/api/entries", params={"label": label}, content=bundle_bytes, headers=headers, timeout=600)


def _evil_archive(bundle: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("manifest.json", "../../escaped.json"):
            data = (bundle / "manifest.json").read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_api_answers_and_refusals(signed, tmp_path):
    db = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    b = {name: pack(path) for name, path in signed["bundles"].items()}
    forged_dir = tmp_path / "forged"
    import shutil

    shutil.copytree(signed["bundles"]["base1"], forged_dir)
    envelope = json.loads((forged_dir / "attestation.dsse.json").read_text())
    envelope["signatures"][0]["sig"] = envelope["signatures"][0]["sig"][::-1]
    (forged_dir / "attestation.dsse.json").write_text(json.dumps(envelope))
    with serving(signed["home"], db) as (url, _):
        assert add(url, b["base0"], token=None).status_code == 401
        assert add(url, b["base0"], token="wrong").status_code == 401
        created = add(url, b["base0"], label="base0")
        assert created.status_code == 201, created.text
        entry = created.json()
        assert entry["id"] == 1 and entry["checkpoint"]["size"] == 1
        replay = add(url, b["base0"])
        assert replay.status_code == 409 and "already registered as entry 1" in replay.json()["detail"]
        forged = add(url, pack(forged_dir))
        assert forged.status_code == 422 and "signature" in forged.json()["detail"]
        assert add(url, b"not an archive at all").status_code == 400
        traversal = add(url, _evil_archive(signed["bundles"]["base1"]))
        assert traversal.status_code == 400 and "outside the bundle" in traversal.json()["detail"]
        assert not (tmp_path.parent / "escaped.json").exists()
        assert add(url, b"").status_code == 400
        big = add(url, b"\0" * (33 << 20))
        assert big.status_code == 413
        bad_json = httpx.post(f"{url}/api/search", content=b"{not json", headers={"content-type": "application/json"})
        assert bad_json.status_code == 400
        wrong_type = httpx.post(f"{url}/api/search", json={"z": "abc"})
        assert wrong_type.status_code == 400
        assert httpx.get(f"{url}/api/entries", params={"limit": "many"}).status_code == 422
        assert httpx.get(f"{url}/api/entries/99").status_code == 404

        listing = httpx.get(f"{url}/api/entries").json()
        assert listing["total"] == 1  # none of the refused uploads left anything
        one = httpx.get(f"{url}/api/entries/1").json()
        assert one["commitment"] == entry["commitment"] and len(one["z"]) == 128
        png = httpx.get(f"{url}/api/entries/1/image.png")
        assert Image.open(io.BytesIO(png.content)).size == (128, 128)
        search = httpx.post(f"{url}/api/search", content=b["derived"], params={"top": 1}).json()
        assert search["matches"][0]["id"] == 1 and search["matches"][0]["verdict"] == "same base model"
        by_z = httpx.post(f"{url}/api/search", json={"z": one["z"]}).json()
        assert by_z["matches"][0]["z_cosine"] == pytest.approx(1.0, abs=1e-5)
        schema = httpx.get(f"{url}/openapi.json").json()
        assert "/api/entries" in schema["paths"] and "/api/log/consistency" in schema["paths"]
        audit = run_cli("registry", "check", "--url", url, "--entry", "1", "--json", home=signed["home"])
        assert audit.returncode == 0, audit.stderr
        assert json.loads(audit.stdout)["entries_checked"] == [1]


def test_fifty_concurrent_clients(signed, db_url):
    """50 clients add and search at once; each distinct bundle is accepted once, is in the log once, and every
    checkpoint the registry signed extends the one before (SQLite and PostgreSQL)."""
    import noseprint.registry.merkle as merkle
    import noseprint.registry.tree_head as cp

    db = db_url
    names = list(signed["bundles"])
    archives = {name: pack(path) for name, path in signed["bundles"].items()}
    with serving(signed["home"], db) as (url, _):

        def client(i: int) -> tuple[str, int, dict]:
            name = names[i % len(names)]
            response = add(url, archives[name], label=name)
            found = httpx.post(f"{url}/api/search", content=archives[name], timeout=600)
            assert found.status_code == 200
            return name, response.status_code, response.json()

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(client, range(50)))
        accepted = [(name, body) for name, status, body in results if status == 201]
        assert sorted(name for name, _ in accepted) == sorted(names)
        assert all(status in (201, 409) for _, status, _ in results)
        listing = httpx.get(f"{url}/api/entries").json()
        assert listing["total"] == len(names)
        assert sorted(e["log_index"] for e in listing["entries"]) == list(range(len(names)))
        audit = run_cli(
            "registry", "check", "--url", url, *[f"--entry={body['id']}" for _, body in accepted], home=signed["home"]
        )
        assert audit.returncode == 0, audit.stderr
        heads = [cp.from_dict(httpx.get(f"{url}/api/checkpoints/{n}").json()["checkpoint"]) for n in (1, 2, 3)]
        for old, new in zip(heads, heads[1:], strict=False):
            proof = httpx.get(f"{url}/api/log/consistency", params={"old": old.size, "new": new.size}).json()
            merkle.verify_consistency(
                old.size, new.size, old.root, new.root, [bytes.fromhex(h) for h in proof["proof"]]
            )
    full = run_cli("registry", "check", "--db", db, "--full", home=signed["home"])
    assert full.returncode == 0, full.stderr


def test_sigkill_in_the_middle_of_an_add(signed, tmp_path):
    db = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    with serving(signed["home"], db) as (url, _):
        assert add(url, pack(signed["bundles"]["base0"]), label="base0").status_code == 201
    assert run_cli("registry", "check", "--db", db, home=signed["home"]).returncode == 0  # the client keeps size 1
    marker = tmp_path / "paused"
    with serving(signed["home"], db, pause_marker=marker) as (url, process):
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(add, url, pack(signed["bundles"]["base1"]))
            for _ in range(600):
                if marker.exists():
                    break
                time.sleep(0.2)
            assert marker.exists(), "the add never reached its commit"
            os.kill(process.pid, signal.SIGKILL)
            with pytest.raises(httpx.HTTPError):
                pending.result()
    with serving(signed["home"], db) as (url, _):
        listing = httpx.get(f"{url}/api/entries").json()
        assert listing["total"] == 1 and listing["entries"][0]["label"] == "base0"  # nothing partial, nothing lost
        assert httpx.get(f"{url}/api/checkpoint").json()["checkpoint"]["size"] == 1
        full = run_cli("registry", "check", "--db", db, "--full", home=signed["home"])
        assert full.returncode == 0, full.stderr
        assert add(url, pack(signed["bundles"]["base1"])).status_code == 201
        after = run_cli("registry", "check", "--db", db, "--json", home=signed["home"])
        assert json.loads(after.stdout)["previous_size"] == 1


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_pages_in_headless_chromium(signed, tmp_path):
    from playwright.sync_api import sync_playwright

    db = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    upload = tmp_path / "derived.tar.gz"
    upload.write_bytes(pack(signed["bundles"]["derived"]))
    with serving(signed["home"], db) as (url, _):
        for name in ("base0", "base1"):
            assert add(url, pack(signed["bundles"][name]), label=name).status_code == 201
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                      "--disable-sync", "--no-first-run", "--disable-quic"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(url + "/")
            page.wait_for_load_state("networkidle")
            widths = page.eval_on_selector_all("#gallery img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
            assert widths == [128, 128]
            shot = tmp_path / "gallery.png"
            page.screenshot(path=str(shot))
            pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
            colours = len(np.unique(pixels // 8, axis=0))
            assert colours > 200, f"the gallery screenshot has only {colours} colours: pictures did not render"

            page.click("#gallery a >> nth=1")
            page.wait_for_load_state("networkidle")
            assert "log position" in page.content() and page.locator("#fingerprint").evaluate("i => i.naturalWidth")

            page.goto(url + "/search")
            page.set_input_files("#bundle", str(upload))
            page.click("#submit")
            page.wait_for_selector("#matches")
            first = page.locator("#matches .card").first.inner_text()
            assert "base0" in first and "same base model" in first
            assert page.locator("#query").evaluate("i => i.naturalWidth") == 128
            page.screenshot(path=str(tmp_path / "search.png"))
            browser.close()
