"""The registry's web pages: a gallery, an entry page, a search page (Jinja2 templates in `templates/`).

Pictures are served from the API (`/api/entries/ID/image.png`); an uploaded
query's own picture is shown inline as a data URL, since it is not stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import noseprint.registry.archive as archive
import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from noseprint.core.errors import NoseprintError
from noseprint.registry.challenge_checks import list_inference_checks
from noseprint.registry.service import NotFound, Registry, get_entry, inclusion, list_entries, search_z
from starlette.concurrency import run_in_threadpool

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
PAGE_SIZE = 48

SEARCH_SLOTS = 2
"""Public searches (`/api/search`, `/search`) read and unpacked at once."""
SEARCH_WAITING = 64
SEARCH_WAIT_SECONDS = 30
"""Searches that wait for a slot, their bodies unread (the server reads no more of a body than its flow control
allows), and for how long; more, or longer, are answered 503."""
MAX_SEARCH_JSON = 1 << 20
"""A `{"z": [...]}` body: z has at most 4,096 dimensions (the manifest schema), about 100 kB of JSON."""
MAX_SEARCH_MANIFEST = 8 << 20
MAX_SEARCH_JSON_VALUES = 500_000
"""What a search parses of a stranger's manifest: Python's JSON objects cost up to ~140 times their text
(`[{},{},...]`: 16 MiB took 411 MiB), so the values are counted before parsing (about 100 bytes each at worst).
A 7B model's manifest is a few MB of mostly 64-digit points; a larger one is searched by its z as JSON."""
MAX_SEARCH_Z = 1 << 20
MAX_SEARCH_PICTURE = 8 << 20


class SearchSlots:
    """At most `slots` public searches at a time, at most `waiting` more waiting for one (each for at most
    `wait_seconds`); the rest are refused with 503 and Retry-After, so that strangers' uploads cannot pile up in
    memory. Shared by the API and the search page; used on the server's event loop."""

    def __init__(
        self, slots: int = SEARCH_SLOTS, waiting: int = SEARCH_WAITING, wait_seconds: float = SEARCH_WAIT_SECONDS
    ):
        self._semaphore = asyncio.Semaphore(slots)
        self._waiting, self._max_waiting, self._wait_seconds = 0, waiting, wait_seconds

    @staticmethod
    def _busy() -> HTTPException:
        return HTTPException(503, "the registry is busy with other searches: try again", headers={"Retry-After": "5"})

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        if self._semaphore.locked() and self._waiting >= self._max_waiting:
            raise self._busy()
        self._waiting += 1
        try:
            await asyncio.wait_for(self._semaphore.acquire(), self._wait_seconds)
        except TimeoutError:
            raise self._busy() from None
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()


def _json_values_bounded(data: bytes, what: str) -> None:
    """Refuse JSON whose parse could cost far more memory than its size (counted without parsing)."""
    values = data.count(b",") + data.count(b"[") + data.count(b"{")
    if values > MAX_SEARCH_JSON_VALUES:
        raise HTTPException(
            413, f"{what} holds more than {MAX_SEARCH_JSON_VALUES:,} JSON values: search by z instead "
            '(a JSON body {"z": [numbers]})',
        )  # fmt: skip


def _z_of_json(data: bytes) -> np.ndarray:
    if len(data) > MAX_SEARCH_JSON:
        raise HTTPException(413, f"a JSON search body is at most {MAX_SEARCH_JSON >> 20} MiB (z has few dimensions)")
    try:
        z = np.asarray(json.loads(data)["z"], dtype=np.float32).reshape(-1)
    except (ValueError, KeyError, TypeError) as exc:
        raise HTTPException(400, f'the JSON body must be {{"z": [numbers]}} ({exc})') from None
    if not np.all(np.isfinite(z)) or not z.size:
        raise HTTPException(400, "z must be a non-empty list of finite numbers")
    return z


def _bundle_query(root: Path) -> tuple[np.ndarray, bytes]:
    """z and picture of an unpacked bundle, read within the search's limits (its z is read, not verified)."""
    from noseprint.core.bundle import MANIFEST, Bundle, parse_z
    from noseprint.core.fileio import read_inside
    from noseprint.encoder.zvector import as_floats

    manifest = read_inside(root, MANIFEST, MAX_SEARCH_MANIFEST)
    _json_values_bounded(manifest, MANIFEST)
    bundle = Bundle.open(root)
    z = parse_z(read_inside(root, bundle.manifest.z_file, MAX_SEARCH_Z))[1]
    picture = read_inside(root, bundle.manifest.image_file, MAX_SEARCH_PICTURE)
    return np.asarray(as_floats(z), dtype=np.float32), picture


def query_of_upload(data: bytes, content_type: str) -> tuple[np.ndarray, bytes | None, str]:
    """(z, picture or None, label) of an upload: JSON {"z": [...]} or a bundle tar.gz."""
    if content_type.startswith("application/json"):
        return _z_of_json(data), None, "z"
    with tempfile.TemporaryDirectory(prefix="noseprint-query-") as tmp:
        try:
            root = archive.unpack(data, Path(tmp) / "upload")
            z, picture = _bundle_query(root)
        except archive.ArchiveError as exc:
            raise HTTPException(400, str(exc)) from None
        except (NoseprintError, OSError, ValueError, KeyError, TypeError) as exc:
            raise HTTPException(400, f"the upload is not a readable bundle ({str(exc)[:300]})") from None
        return z, picture, root.name


async def read_limited(request: Request, limit: int = archive.MAX_ARCHIVE_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` (a declared length is checked first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the upload is larger than the {limit >> 20} MiB limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the upload is larger than the {limit >> 20} MiB limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def search_upload_of(request: Request) -> tuple[np.ndarray, bytes | None, str]:
    """`query_of_upload` of an API search's body (a JSON z or a bundle tar.gz), off the event loop."""
    content_type = request.headers.get("content-type", "")
    limit = MAX_SEARCH_JSON if content_type.startswith("application/json") else archive.MAX_ARCHIVE_BYTES
    data = await read_limited(request, limit)
    return await run_in_threadpool(query_of_upload, data, content_type)


async def _form_upload(request: Request) -> tuple[bytes, str]:
    """The search form's bundle file and its name. The body is read within the archive limit first (a chunked
    body declares no length), then parsed as the form from memory."""
    body = await read_limited(request)

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=4)
    upload = form.get("bundle")
    if upload is None or isinstance(upload, str):
        raise HTTPException(400, "choose a bundle .tar.gz")
    return await upload.read(archive.MAX_ARCHIVE_BYTES + 1), upload.filename or "upload"


def mount(
    app: FastAPI, registry: Registry, add_blocking: Callable[[bytes, str], dict], slots: SearchSlots | None = None
) -> None:
    slots = slots or SearchSlots()

    @app.get("/", response_class=HTMLResponse)
    def gallery(request: Request, page: int = 0) -> HTMLResponse:
        page = max(page, 0)
        total, entries = list_entries(registry, page * PAGE_SIZE, PAGE_SIZE)
        return TEMPLATES.TemplateResponse(
            request,
            "gallery.html",
            {"entries": entries, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE))},
        )

    @app.get("/entries/{entry_id}", response_class=HTMLResponse)
    def entry_page(request: Request, entry_id: int) -> HTMLResponse:
        try:
            entry = get_entry(registry, entry_id)
        except NotFound as exc:
            return TEMPLATES.TemplateResponse(request, "error.html", {"message": str(exc)}, status_code=404)
        nearest = search_z(registry, np.frombuffer(entry.z, dtype="<f4"), 6, exclude=entry_id)
        return TEMPLATES.TemplateResponse(
            request,
            "entry.html",
            {
                "entry": entry,
                "proof": inclusion(registry, entry_id),
                "nearest": nearest,
                "checks": list_inference_checks(registry, entry_id),
            },
        )

    @app.get("/search", response_class=HTMLResponse)
    def search_form(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "search.html", {"matches": None})

    @app.post("/search", response_class=HTMLResponse)
    async def search_upload(request: Request) -> HTMLResponse:
        try:
            async with slots.held():
                data, filename = await _form_upload(request)
                z, picture, _ = await run_in_threadpool(query_of_upload, data, "application/gzip")
        except HTTPException as exc:
            return TEMPLATES.TemplateResponse(
                request,
                "search.html",
                {"matches": None, "error": exc.detail},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        matches = search_z(registry, z, 8)
        return TEMPLATES.TemplateResponse(
            request,
            "search.html",
            {
                "matches": matches,
                "query_name": filename,
                "query_image": base64.b64encode(picture).decode() if picture else None,
            },
        )
