"""The registry's web pages: a gallery, an entry page, a search page (Jinja2 templates in `templates/`).

Pictures are served from the API (`/api/entries/ID/image.png`); an uploaded
query's own picture is shown inline as a data URL, since it is not stored.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from core.errors import NoseprintError
from registry import archive
from registry.inference import list_inference_checks
from registry.service import NotFound, Registry, get_entry, inclusion, list_entries, search_z

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
PAGE_SIZE = 48


def query_of_upload(data: bytes, content_type: str) -> tuple[np.ndarray, bytes | None, str]:
    """(z, picture or None, label) of an upload: JSON {"z": [...]} or a bundle/fingerprint tar.gz."""
    from encoder.zvector import as_floats
    from lineage.compare import load

    if content_type.startswith("application/json"):
        try:
            z = np.asarray(json.loads(data)["z"], dtype=np.float32).reshape(-1)
        except (ValueError, KeyError, TypeError) as exc:
            raise HTTPException(400, f'the JSON body must be {{"z": [numbers]}} ({exc})') from None
        if not np.all(np.isfinite(z)) or not z.size:
            raise HTTPException(400, "z must be a non-empty list of finite numbers")
        return z, None, "z"
    with tempfile.TemporaryDirectory(prefix="noseprint-query-") as tmp:
        try:
            root = archive.unpack(data, Path(tmp) / "upload")
            fingerprint = load(root, Path(tmp))
            picture = Path(fingerprint.image).read_bytes()
        except archive.ArchiveError as exc:
            raise HTTPException(400, str(exc)) from None
        except (NoseprintError, OSError, ValueError, KeyError, TypeError) as exc:
            raise HTTPException(400, f"the upload is not a readable bundle ({exc})") from None
        return np.asarray(as_floats(fingerprint.z), dtype=np.float32), picture, root.name


def z_of_upload(data: bytes, content_type: str) -> np.ndarray:
    return query_of_upload(data, content_type)[0]


def mount(app: FastAPI, registry: Registry, add_blocking: Callable[[bytes, str], dict]) -> None:
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
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > archive.MAX_ARCHIVE_BYTES:
            return TEMPLATES.TemplateResponse(
                request, "search.html", {"matches": None, "error": "the file is too large"}, status_code=413
            )
        form = await request.form()
        upload = form.get("bundle")
        if upload is None or isinstance(upload, str):
            return TEMPLATES.TemplateResponse(
                request, "search.html", {"matches": None, "error": "choose a bundle .tar.gz"}, status_code=400
            )
        data = await upload.read(archive.MAX_ARCHIVE_BYTES + 1)
        try:
            z, picture, _ = query_of_upload(data, "application/gzip")
        except HTTPException as exc:
            return TEMPLATES.TemplateResponse(
                request, "search.html", {"matches": None, "error": exc.detail}, status_code=exc.status_code
            )
        matches = search_z(registry, z, 8)
        return TEMPLATES.TemplateResponse(
            request,
            "search.html",
            {
                "matches": matches,
                "query_name": upload.filename,
                "query_image": base64.b64encode(picture).decode() if picture else None,
            },
        )
