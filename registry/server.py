"""`noseprint registry serve`: the registry over HTTP (FastAPI), a JSON API and web pages.

Reading is public; adding needs the API token (`Authorization: Bearer TOKEN`).
Every refusal is a 4xx with `{"detail": reason}` and stores nothing. Bundles
travel as a gzip'd tar of the bundle folder (`tar czf b.tar.gz -C BUNDLE .`),
read with a size limit before anything is unpacked.

Verification runs one bundle at a time per process (EZKL's verifier and the key
cache are not shared between threads); the database writes are safe across
threads and processes by themselves (`registry/store.py`).
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

import noseprint.registry.archive as archive
import noseprint.registry.pages as pages
import noseprint.signing.keys as keyfiles
import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from noseprint.core.errors import NoseprintError
from noseprint.registry.challenge_checks import list_inference_checks
from noseprint.registry.pages import SearchSlots, read_limited, search_upload_of
from noseprint.registry.service import (
    Duplicate,
    NotFound,
    Registry,
    Rejected,
    add_archive,
    checkpoint_at,
    consistency,
    entry_summary,
    get_entry,
    inclusion,
    latest_checkpoint,
    list_entries,
    search_z,
)
from noseprint.registry.store import Entry
from starlette.concurrency import run_in_threadpool

TOKEN_ENV_VAR = "NOSEPRINT_REGISTRY_TOKEN"
MAX_UPLOAD = archive.MAX_ARCHIVE_BYTES


def _serialised_adder(registry: Registry, srs_file: Path | None) -> Callable[[bytes, str], dict]:
    """`add_archive` behind one lock: EZKL's verifier and the key cache are not shared between threads."""
    verify_lock = threading.Lock()

    def add_blocking(data: bytes, label: str) -> dict:
        with verify_lock:
            return add_archive(registry, data, srs_file=srs_file, label=label)

    return add_blocking


def _entry_or_404(registry: Registry, entry_id: int) -> Entry:
    """The entry, or the 404 an HTTP client expects for an id the registry does not hold."""
    try:
        return get_entry(registry, entry_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


async def _noseprint_error(_request: Request, exc: NoseprintError) -> JSONResponse:
    """Any noseprint refusal as `{"detail": reason}`: a rejection's own status, 404 for missing, else 400."""
    status = exc.status if isinstance(exc, Rejected) else 404 if isinstance(exc, NotFound) else 400
    return JSONResponse({"detail": str(exc)}, status_code=status)


def _require_token(request: Request, token: str) -> None:
    """Refuse (401) an add without the API token; compared in constant time so timing leaks nothing."""
    supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not supplied or not hmac.compare_digest(supplied.encode(), token.encode()):
        raise HTTPException(401, "adding needs the registry's API token (Authorization: Bearer …)")


def _log_routes(app: FastAPI, registry: Registry) -> None:
    """The registry's identity and its signed log: checkpoints and consistency proofs."""

    @app.get("/api/registry")
    def registry_info() -> dict:
        head = latest_checkpoint(registry)
        return {
            "origin": registry.origin,
            "public_key": keyfiles.public_pem(registry.public).decode(),
            "keyid": registry.keyid,
            "size": head.size if head else 0,
        }

    @app.get("/api/checkpoint")
    def checkpoint() -> dict:
        head = latest_checkpoint(registry)
        return {"checkpoint": head.to_dict() if head else None}

    @app.get("/api/checkpoints/{size}")
    def checkpoint_of_size(size: int) -> dict:
        return {"checkpoint": checkpoint_at(registry, size).to_dict()}

    @app.get("/api/log/consistency")
    def log_consistency(old: int = Query(ge=1), new: int = Query(ge=1)) -> dict:
        return consistency(registry, old, new)


def _entry_collection_routes(
    app: FastAPI, registry: Registry, token: str, add_blocking: Callable[[bytes, str], dict]
) -> None:
    """Listing entries (public) and adding one (token only; verified before anything is stored)."""

    @app.get("/api/entries")
    def entries(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)) -> dict:
        total, rows = list_entries(registry, offset, limit)
        return {"total": total, "entries": rows}

    @app.post("/api/entries", status_code=201)
    async def add(request: Request, label: str = Query("", max_length=200)) -> dict:
        _require_token(request, token)
        data = await read_limited(request)
        if not data:
            raise HTTPException(400, "the upload is empty: send the bundle as a tar.gz body")
        try:
            return await run_in_threadpool(add_blocking, data, label)
        except Duplicate as exc:
            raise HTTPException(409, exc.reason) from None
        except Rejected as exc:
            raise HTTPException(422, f"rejected ({exc.check}): {exc.reason}") from None
        except archive.ArchiveError as exc:
            raise HTTPException(400, str(exc)) from None


def _entry_routes(app: FastAPI, registry: Registry) -> None:
    """One entry: its summary, inclusion proof, image and bundle, each 404 for an unknown id."""

    @app.get("/api/entries/{entry_id}")
    def entry(entry_id: int) -> dict:
        e = _entry_or_404(registry, entry_id)
        return entry_summary(e) | {
            "leaf": e.leaf,
            "z": np.frombuffer(e.z, dtype="<f4").tolist(),
            "manifest_sha256": e.manifest_sha256,
            "envelope": e.envelope_json,
            "inference_checks": list_inference_checks(registry, entry_id),
        }

    @app.get("/api/entries/{entry_id}/inclusion")
    def entry_inclusion(entry_id: int, size: int | None = Query(None, ge=1)) -> dict:
        _entry_or_404(registry, entry_id)
        return inclusion(registry, entry_id, size)

    @app.get("/api/entries/{entry_id}/image.png")
    def entry_image(entry_id: int) -> Response:
        return Response(_entry_or_404(registry, entry_id).image_png, media_type="image/png")

    @app.get("/api/entries/{entry_id}/bundle.tar.gz")
    def entry_bundle(entry_id: int) -> Response:
        return Response(
            _entry_or_404(registry, entry_id).bundle_archive,
            media_type="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="noseprint-{entry_id}.tar.gz"'},
        )


def _search_routes(app: FastAPI, registry: Registry, slots: SearchSlots) -> None:
    """Lineage search by z; public, and nothing is verified or stored. A few at a time (`SearchSlots`): the
    others wait, their bodies unread, or are answered 503."""

    @app.post("/api/search")
    async def search(request: Request, top: int = Query(5, ge=1, le=100)) -> dict:
        """Body: a bundle tar.gz (its z is read, not verified: `add` verifies) or JSON {"z": [floats]}."""
        async with slots.held():
            z, _, _ = await search_upload_of(request)
        return {"matches": search_z(registry, z, top)}


def create_app(registry: Registry, token: str, srs_file: Path | None = None) -> FastAPI:
    """The registry app: JSON API routes first (in this order), then the web pages."""
    app = FastAPI(
        title="noseprint registry",
        version="1",
        description="Verified LLM fingerprints, a signed append-only log (RFC 6962), lineage search.",
    )
    add_blocking = _serialised_adder(registry, srs_file)
    slots = SearchSlots()
    app.exception_handler(NoseprintError)(_noseprint_error)
    _log_routes(app, registry)
    _entry_collection_routes(app, registry, token, add_blocking)
    _entry_routes(app, registry)
    _search_routes(app, registry, slots)
    pages.mount(app, registry, add_blocking, slots)
    return app


TOKEN_BYTES = 24


def resolve_token(token: str | None) -> tuple[str, bool]:
    """The API token: given, else $NOSEPRINT_REGISTRY_TOKEN, else a fresh random one (True: generated)."""
    chosen = token or os.environ.get(TOKEN_ENV_VAR)
    if chosen:
        return chosen, False
    return secrets.token_urlsafe(TOKEN_BYTES), True


def serve(registry: Registry, host: str, port: int, token: str, srs_file: Path | None) -> None:
    import uvicorn

    uvicorn.run(create_app(registry, token, srs_file), host=host, port=port, log_level="warning")
