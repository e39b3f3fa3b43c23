"""`noseprint srs`: the SRS store this machine trusts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from noseprint.console import JsonOption, emit_json, err, out

srs_app = typer.Typer(no_args_is_help=True, help="The SRS store this machine trusts.")


def _srs_summary(entry: Any) -> dict[str, Any]:
    return {"logrows": entry.logrows, "path": str(entry.path), "sha256": entry.sha256, "origin": entry.origin}


@srs_app.command("init")
def srs_init(
    logrows: Annotated[int, typer.Option(min=10, max=24, help="Circuit size the SRS serves.")] = 17,
    force: Annotated[bool, typer.Option(help="Replace an existing SRS of this size.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Generate an INSECURE development SRS into the local store."""
    import noseprint.circuits.srs as store

    entry = store.init_dev(logrows, force=force)
    err.print(f"[yellow]warning:[/] {store.DEV_WARNING}")
    if as_json:
        return emit_json(_srs_summary(entry))
    out.print(f"SRS logrows {entry.logrows}: {entry.path} sha256 {entry.sha256}")


@srs_app.command("import")
def srs_import(
    file: Annotated[Path, typer.Argument(help="SRS file obtained from a ceremony.")],
    logrows: Annotated[int, typer.Option(min=10, max=26, help="Circuit size it serves.")],
    force: Annotated[bool, typer.Option(help="Replace an existing SRS of this size.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Copy an SRS file into the local store (trusted from now on)."""
    import noseprint.circuits.srs as store

    entry = store.import_file(file, logrows, force=force)
    if as_json:
        return emit_json(_srs_summary(entry))
    out.print(f"SRS logrows {entry.logrows}: {entry.path} sha256 {entry.sha256}")


@srs_app.command("list")
def srs_list(as_json: JsonOption = False) -> None:
    """Show the SRS files this machine trusts."""
    import noseprint.circuits.srs as store

    entries = store.listing()
    if as_json:
        return emit_json([_srs_summary(entry) for entry in entries])
    for entry in entries:
        label = "DEV, insecure" if entry.is_dev else entry.origin
        out.print(f"logrows {entry.logrows}: sha256 {entry.sha256} ({label})")
