"""`noseprint registry …`: argument parsing and printing for the registry room (`registry/`)."""

from __future__ import annotations

import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from noseprint.console import JsonOption, emit_json, err, out
from noseprint.core.errors import UsageError

REGISTRY_EXTRA = ("sqlalchemy", "psycopg", "fastapi", "uvicorn", "httpx")

registry_app = typer.Typer(no_args_is_help=True, help="Register verified fingerprints, search them, audit the log.")

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL (default: $NOSEPRINT_REGISTRY, else a SQLite file in the data folder)."),
]


@registry_app.callback()
def need_registry_extra() -> None:
    """The web and database stack is the optional `registry` extra: say so instead of failing on an import."""
    missing = [module for module in REGISTRY_EXTRA if find_spec(module) is None]
    if missing:
        raise UsageError(
            f"the registry needs the optional extra ({', '.join(missing)} not installed): "
            "pip install 'noseprint[registry]'"
        )


def _emit(value: dict[str, Any], as_json: bool) -> bool:
    if as_json:
        emit_json(value)
    return as_json


def _matches_table(matches: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "label", "z-cosine", "verdict", "signer"):
        table.add_column(column)
    for m in matches:
        table.add_row(str(m["id"]), m["label"], f"{m['z_cosine']:.4f}", m["verdict"], m["signer_keyid"][:16] + "…")
    return table


@registry_app.command("add")
def add(
    bundle: Annotated[Path, typer.Argument(help="Signed bundle folder (prove --sign).")],
    db: DbOption = None,
    key: Annotated[
        Path | None, typer.Option(help="The registry's signing key (default: $NOSEPRINT_REGISTRY_KEY or data folder).")
    ] = None,
    srs: Annotated[Path | None, typer.Option(help="SRS file to trust instead of the local store.")] = None,
    label: Annotated[str, typer.Option(help="A name to show (default: the folder's name).")] = "",
    top: Annotated[int, typer.Option(min=0, max=100, help="How many relatives to show.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Verify BUNDLE and append it to the registry and its log; shows its nearest registered relatives."""
    from noseprint.registry.service import add_bundle, open_registry

    registry = open_registry(db, key, writable=True)
    with err.status("verifying the bundle…"):
        result = add_bundle(registry, bundle, srs_file=srs, label=label, top=top)
    if _emit(result, as_json):
        return
    out.print(f"[green]added[/] entry {result['id']} at log position {result['log_index']}")
    out.print(f"checkpoint: size {result['checkpoint']['size']} root {result['checkpoint']['root']}")
    if result["nearest"]:
        out.print(_matches_table(result["nearest"], "nearest registered fingerprints"))
        flagged = [m for m in result["nearest"] if m["verdict"] == "same base model"]
        if flagged:
            out.print(f"[bold yellow]flagged:[/] same base model as entry {flagged[0]['id']} ({flagged[0]['label']})")


@registry_app.command("search")
def search(
    source: Annotated[Path, typer.Argument(help="Bundle or fingerprint folder.")],
    db: DbOption = None,
    top: Annotated[int, typer.Option(min=1, max=1000, help="How many to list.")] = 5,
    image: Annotated[Path | None, typer.Option(help="PNG of the query beside its matches.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite --image.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The registered fingerprints nearest to SOURCE by z-cosine, with zoo-calibrated verdicts."""
    from noseprint.lineage.gallery import grid, picture_of
    from noseprint.registry.service import get_entry, open_registry, search_z, z_of_source

    if image is not None and image.exists() and not force:
        raise UsageError(f"{image} already exists (use --force to replace it)")
    registry = open_registry(db)
    matches = search_z(registry, z_of_source(source), top)
    result = {"query": str(source), "matches": matches}
    if image is not None:
        with tempfile.TemporaryDirectory() as tmp:
            pictures = [("query: " + Path(source).name, picture_of(source)[1])]
            for m in matches:
                path = Path(tmp) / f"{m['id']}.png"
                path.write_bytes(get_entry(registry, m["id"]).image_png)
                pictures.append((f"#{m['id']} {m['z_cosine']:.2f} {m['verdict']}", path))
            grid(pictures, image, size=192)
        result["image"] = str(image)
    if _emit(result, as_json):
        return
    out.print(_matches_table(matches, f"nearest to {source}"))
    if image is not None:
        out.print(f"side by side: {image}")


@registry_app.command("show")
def show(
    entry_id: Annotated[int, typer.Argument(help="Entry id.")],
    db: DbOption = None,
    image: Annotated[Path | None, typer.Option(help="Write the entry's picture to this PNG.")] = None,
    bundle: Annotated[Path | None, typer.Option(help="Unpack the entry's bundle into this folder.")] = None,
    as_json: JsonOption = False,
) -> None:
    """One entry: commitment, signer, log position, inclusion proof, nearest neighbours."""
    import numpy as np

    import noseprint.registry.archive as archive
    from noseprint.core.fileio import write_bytes_atomic
    from noseprint.registry.challenge_checks import list_inference_checks
    from noseprint.registry.service import entry_summary, get_entry, inclusion, list_evidence, open_registry, search_z

    registry = open_registry(db)
    entry = get_entry(registry, entry_id)
    result = entry_summary(entry) | {
        "inclusion": inclusion(registry, entry_id),
        "nearest": search_z(registry, np.frombuffer(entry.z, dtype="<f4"), 5, exclude=entry_id),
        "evidence": list_evidence(registry, entry_id),
        "inference_checks": list_inference_checks(registry, entry_id),
    }
    if image is not None:
        if image.exists():
            raise UsageError(f"{image} already exists")
        write_bytes_atomic(image, entry.image_png)
        result["image"] = str(image)
    if bundle is not None:
        if bundle.exists():
            raise UsageError(f"{bundle} already exists")
        bundle.mkdir(parents=True)
        archive.unpack(entry.bundle_archive, bundle)
        result["bundle"] = str(bundle)
    if _emit(result, as_json):
        return
    for name in ("id", "label", "commitment", "signer_keyid", "image_sha256", "added_at", "log_index"):
        out.print(f"{name}: {result[name]}", highlight=False)
    out.print(f"model_type: {result['model_type']} (the owner's claim, not proven)", highlight=False)
    proof = result["inclusion"]
    out.print(f"inclusion: position {proof['log_index']} of {proof['tree_size']}, {len(proof['proof'])} hashes")
    if result["nearest"]:
        out.print(_matches_table(result["nearest"], "nearest registered fingerprints"))
    for e in result["evidence"]:
        out.print(f"evidence {e['evidence_id']}: {e['kind']}, log10 p {e['log10_p']}, {e['scored']} scored tokens")
    for c in result["inference_checks"]:
        out.print(_inference_line(c), highlight=False)


def _inference_line(c: dict[str, Any]) -> str:
    """One passed challenge-inference check, with where its seed came from (an auditor's seed is only as
    unpredictable as that auditor says) and where its answers came from (a transcript is its maker's word)."""
    seed = f"registry checkpoint {c['checkpoint_size']}" if c["checkpoint_size"] else "auditor's seed"
    deviation = c.get("logprob_deviation")
    logprobs = "greedy tokens only" if deviation is None else f"log-prob deviation {deviation:.3f}"
    source = escape(str(c.get("answers_source") or "an unrecorded source"))  # the answers file's text, not markup
    answers = f"answers from {source} ({c.get('answers_origin')})"
    return (
        f"inference check {c['check_id']}: passed, agreement {c['agreement']:.3f} (threshold {c['threshold']:.3f}) "
        f"over {c['positions']} positions, {logprobs}, {seed}, {answers}, challenge {c['challenge_digest'][:16]}…, "
        f"{c['checked_at']}"
    )


def _verify_inference(bundle: Path, proofs: Path, answers: Any, require_logprobs: bool) -> Any:
    """`verifier.challenge.verify_inference`, imported only when a check is recorded (it loads the proof stack)."""
    from noseprint.verifier.challenge import verify_inference

    return verify_inference(bundle, proofs, answers, require_logprobs=require_logprobs)


@registry_app.command("inference")
def inference_command(
    entry_id: Annotated[int, typer.Argument(help="The registered model's entry id.")],
    proofs: Annotated[Path, typer.Argument(help="The owner's inference proofs (prove-inference --out P_DIR).")],
    answers: Annotated[Path, typer.Option(help="The served model's answers (noseprint query).")],
    challenge: Annotated[
        Path | None, typer.Option(help="The challenge answered (default: P_DIR/challenge.json).")
    ] = None,
    require_logprobs: Annotated[
        bool, typer.Option(help="Refuse answers without top-k log-probabilities (as verify-inference).")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify P_DIR's inference proofs against the entry's bundle and the answers; record the check if it passed."""
    import noseprint.registry.archive as archive
    from noseprint.core.answers import Answers
    from noseprint.core.challenge import Challenge
    from noseprint.registry.challenge_checks import record_inference_check
    from noseprint.registry.service import get_entry, open_registry

    challenge_file = challenge or proofs / "challenge.json"
    if not challenge_file.is_file():
        raise UsageError(f"no challenge at {challenge_file} (give --challenge)")
    loaded = Challenge.read(challenge_file)
    served = Answers.read(answers)
    registry = open_registry(db)
    with tempfile.TemporaryDirectory(prefix="noseprint-entry-") as tmp:
        bundle = archive.unpack(get_entry(registry, entry_id).bundle_archive, Path(tmp))
        with err.status("verifying the inference proofs…"):
            report = _verify_inference(bundle, proofs, served, require_logprobs)
    result = record_inference_check(registry, entry_id, loaded, report.to_dict())
    if _emit(result, as_json):
        return
    out.print(f"[green]recorded[/] on entry {entry_id}: " + _inference_line(result), highlight=False)


@registry_app.command("evidence")
def evidence(
    entry_id: Annotated[int, typer.Argument(help="The registered model's entry id.")],
    report: Annotated[Path, typer.Argument(help="Signed report (watermark detect or radioactive --report).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Attach a signed watermark or radioactivity report to entry ENTRY_ID; it must be signed by the entry's owner."""
    from noseprint.registry.service import add_evidence, open_registry

    try:
        data = report.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the report {report}: {exc}") from None
    result = add_evidence(open_registry(db), entry_id, data)
    if _emit(result, as_json):
        return
    out.print(f"[green]attached[/] evidence {result['evidence_id']} ({result['kind']}) to entry {entry_id}")
    out.print(f"log10 p = {result['log10_p']} over {result['scored']} scored tokens", highlight=False)


@registry_app.command("list")
def list_command(
    db: DbOption = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Registered entries, newest first."""
    from noseprint.registry.service import list_entries, open_registry

    total, entries = list_entries(open_registry(db), offset, limit)
    if _emit({"total": total, "entries": entries}, as_json):
        return
    table = Table(title=f"{total} registered fingerprint(s)")
    for column in ("id", "log", "label", "model", "signer", "added"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            str(e["id"]), str(e["log_index"]), e["label"], e["model_type"], e["signer_keyid"][:16] + "…", e["added_at"]
        )
    out.print(table)


@registry_app.command("check")
def check_command(
    db: DbOption = None,
    url: Annotated[str | None, typer.Option(help="A served registry (registry serve) instead of --db.")] = None,
    registry_pub: Annotated[Path | None, typer.Option(help="Registry public key (else pinned on first use).")] = None,
    entry: Annotated[list[int] | None, typer.Option(help="Also prove this entry's inclusion (repeatable).")] = None,
    full: Annotated[bool, typer.Option(help="Re-hash every entry and recompute the tree (needs --db).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Audit the log: signed checkpoint, consistency with the one you kept, inclusion of named entries."""
    from noseprint.registry.audit import HttpSource, LocalSource, check
    from noseprint.signing.keys import load_public

    source = HttpSource(url) if url else LocalSource(db)
    pinned = load_public(registry_pub) if registry_pub else None
    report = check(source, pinned, entry or [], full)
    if _emit(report.to_dict(), as_json):
        return
    out.print(f"[bold green]CONSISTENT[/]: {report.source}, {report.size} entries, root {report.root}")
    pinned_now = " (pinned now, on first use)" if report.key_pinned_now else ""
    out.print(f"registry key {report.registry_keyid}{pinned_now}")
    if report.previous_size is not None:
        out.print(f"extends the checkpoint you kept (size {report.previous_size})")
    for entry_id in report.entries_checked:
        out.print(f"entry {entry_id}: included")
    if report.full:
        out.print("every entry re-hashed; the tree's root matches")


@registry_app.command("serve")
def serve_command(
    db: DbOption = None,
    key: Annotated[Path | None, typer.Option(help="The registry's signing key (see registry add).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8750,
    token: Annotated[
        str | None, typer.Option(help="API token for adding (default: $NOSEPRINT_REGISTRY_TOKEN, else a random one).")
    ] = None,
    srs: Annotated[Path | None, typer.Option(help="SRS file to trust instead of the local store.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Serve the JSON API (/api/…, schema at /openapi.json), the gallery, entry and search pages."""
    from noseprint.registry.server import TOKEN_ENV_VAR, resolve_token, serve
    from noseprint.registry.service import open_registry

    registry = open_registry(db, key, writable=True)
    token, generated = resolve_token(token)
    url = f"http://{host}:{port}/"
    started = {"url": url, "api_schema": url + "openapi.json", "registry_keyid": registry.keyid}
    if generated:
        started["token"] = token
    if not _emit(started, as_json):
        out.print(f"noseprint registry on {url}  (API schema: /openapi.json)")
        out.print(f"registry key {registry.keyid}")
        if generated:
            out.print(f"API token for adding (set {TOKEN_ENV_VAR} to choose one): {token}")
    sys.stdout.flush()
    serve(registry, host, port, token, srs)
