"""`noseprint verify` and `check-opening`: the auditor's side of a bundle, and how a report is printed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from noseprint.console import JsonOption, emit_json, err, out

if TYPE_CHECKING:
    from noseprint.verifier.report import Report


def print_report(report: Report, as_json: bool) -> None:
    if as_json:
        return emit_json(report.to_dict())
    if report.valid:
        out.print("[bold green]VALID[/]: the fingerprint was proven from the committed weights")
    else:
        out.print(f"[bold red]INVALID[/] ({report.failed_check}): {escape(str(report.reason))}", highlight=False)
    _print_facts(report.facts)
    _print_claims(report.claims)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _print_facts(facts: dict[str, Any]) -> None:
    """What verification established (proven, recomputed, or the verifier's own choice)."""
    if facts.get("signed"):
        how = "the key you gave" if facts.get("signer_demanded") else "the bundled key; pass --key to demand yours"
        out.print(f"  signed by key {facts['signer_keyid']} ({how})", highlight=False)
    elif "signed" in facts:
        out.print("  not signed", highlight=False)
    if facts.get("image_proven") and "image_proof" in facts:
        proof = facts["image_proof"]
        out.print(f"  thumbnail proven too: {proof['rows']:,} rows, logrows {proof['logrows']}", highlight=False)
    if "owner_keyid_unsigned" in facts:
        out.print(
            f"  owner_keyid: {facts['owner_keyid_unsigned']} (bound by the proof but unsigned: the prover chose it, "
            "nothing shows that key's holder made this bundle)",
            highlight=False,
        )
    for key in ("owner_keyid", "tokens", "model_commitment", "image_sha256", "vk_sha256"):
        if key in facts:
            out.print(f"  {key}: {facts[key]}", highlight=False)
    if "circuit" in facts:
        c = facts["circuit"]
        out.print(
            f"  circuits: {c['chunks']} chunk proofs of {c['chunk_shapes']} shapes and an encode proof "
            f"({c['encode_circuit_id'][:16]}…), {c['rows']:,} rows, logrows {c['logrows']}",
            highlight=False,
        )
    if "srs" in facts:
        s = facts["srs"]
        out.print(f"  srs: {s['sha256'][:16]}… (logrows {s['logrows']}, {s['origin']})", highlight=False)


def _print_claims(claims: dict[str, Any]) -> None:
    """What the owner says and nothing proves, apart from the facts."""
    shown = {key: claims[key] for key in ("model_type", "fingerprinted_layers", "token_strings") if key in claims}
    if shown:
        out.print("  the owner claims (not proven):", highlight=False)
        for key, value in shown.items():  # the owner's text: printed as text, never as console markup
            out.print(f"    {key}: {escape(str(value))}", highlight=False)


def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `noseprint prove`.")],
    srs: Annotated[Path | None, typer.Option(help="SRS file to trust instead of the local store.")] = None,
    generator: Annotated[Path | None, typer.Option(help="A generator you trust instead of the released one.")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="Demand a signature by this public key.")] = None,
    thumbnail: Annotated[
        Path | None, typer.Option(help="A thumbnail generator you trust for image proofs instead of the released one.")
    ] = None,
    max_rows: Annotated[
        int | None, typer.Option(min=1, help="Refuse bundles whose circuits would exceed this many rows to check.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a bundle: exit 0 valid, 1 invalid (with the reason), 2 usage error."""
    from noseprint.circuits.budget import Budget
    from noseprint.verifier.checks import verify_bundle

    with err.status("verifying…") as status:
        report = verify_bundle(
            bundle,
            srs_file=srs,
            generator=generator,
            signer_key=key,
            thumbnail=thumbnail,
            budget=Budget.from_env(max_rows),
            progress=lambda name: status.update(f"[bold]check: {name}…"),
        )
    print_report(report, as_json)
    raise typer.Exit(0 if report.valid else 1)


def check_opening_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    model_dir: Annotated[Path, typer.Argument(help="The open-weight model the bundle claims.")],
    opening: Annotated[Path, typer.Option(help="The owner's opening file (blinding lines).")],
    srs: Annotated[Path | None, typer.Option(help="SRS file to trust instead of the local store.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check that the bundle's commitment opens to MODEL_DIR's weights: exit 0 yes, 1 no."""
    from noseprint.verifier.opening import check_opening

    with err.status("recomputing the commitment…"):
        result = check_opening(bundle, model_dir, opening, srs_file=srs)
    if as_json:
        emit_json({"matches": result.matches, "mismatched": result.mismatched})
    elif result.matches:
        out.print("[bold green]MATCH[/]: the commitment opens to this model's weights")
    else:
        out.print(f"[bold red]NO MATCH[/]: commitments differ for {', '.join(result.mismatched)}", highlight=False)
    raise typer.Exit(0 if result.matches else 1)
