"""The `noseprint` console script: argument parsing and output only; the work lives in the rooms."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from noseprint.errors import NoseprintError
from noseprint.registry_cli import registry_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Zero-knowledge-proven LLM fingerprints.")
srs_app = typer.Typer(no_args_is_help=True, help="The SRS store this machine trusts.")
app.add_typer(srs_app, name="srs")
app.add_typer(registry_app, name="registry")
err = Console(stderr=True)
out = Console()


def fail(exc: BaseException) -> None:
    """One line for the user instead of a traceback (NOSEPRINT_DEBUG=1 shows it)."""
    if os.environ.get("NOSEPRINT_DEBUG"):
        raise exc
    if isinstance(exc, NoseprintError):
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code)
    err.print(f"[red]error:[/] unexpected failure: {type(exc).__name__}: {exc}", highlight=False)
    raise typer.Exit(3)


def stepper(status):
    return lambda message: status.update(f"[bold]{message}…")


@app.command()
def prove(
    model_dir: Annotated[Path, typer.Argument(help="Local Hugging Face checkpoint folder (safetensors).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Bundle folder to write.")],
    opening: Annotated[Path | None, typer.Option(help="Private opening file (default: OUT.opening.json).")] = None,
    tokens: Annotated[Path | None, typer.Option(help="Token ids to use instead of the tokenizer's.")] = None,
    n_tokens: Annotated[int, typer.Option(min=4, max=256, help="How many tokens to fingerprint.")] = 16,
    srs: Annotated[Path | None, typer.Option(help="SRS file to use instead of the local store.")] = None,
    init_dev_srs: Annotated[bool, typer.Option(help="Generate an insecure development SRS if none.")] = False,
    generator: Annotated[Path | None, typer.Option(help="Your own generator weights (safetensors + .json).")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Load pickle (*.bin) checkpoints: runs their code.")] = False,
    sign: Annotated[Path | None, typer.Option("--sign", help="Sign the bundle with this Ed25519 key (keygen).")] = None,
    prove_image: Annotated[
        bool, typer.Option("--prove-image", help="Also prove the 16x16 thumbnail of z in a circuit (minutes more).")
    ] = False,
    thumbnail: Annotated[
        Path | None, typer.Option(help="Thumbnail generator for --prove-image instead of the released one.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing bundle and opening.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Fingerprint MODEL_DIR and prove it: writes a bundle and a private opening."""
    from prover.pipeline import prove_model

    try:
        with err.status("starting…") as status:
            result = prove_model(
                model_dir,
                out_dir,
                opening_path=opening,
                token_count=n_tokens,
                tokens_file=tokens,
                allow_pickle=allow_pickle,
                force=force,
                srs_file=srs,
                init_dev_srs=init_dev_srs,
                generator=generator,
                sign_key=sign,
                prove_image_too=prove_image,
                thumbnail=thumbnail,
                progress=stepper(status),
            )
    except Exception as exc:
        fail(exc)
    m = result.manifest
    summary = {
        "bundle": str(result.bundle),
        "opening": str(result.opening),
        "model_commitment": m["commitment"]["digest"],
        "image_sha256": m["files"]["fingerprint.png"],
        "rows": m["circuit"]["num_rows"],
        "logrows": m["circuit"]["logrows"],
        "weights_committed": m["model"]["weights_committed"],
        "signed": sign is not None,
        "image_proven": "image_proof" in m,
        "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out.print(f"[green]bundle written:[/] {result.bundle}")
    out.print(f"opening (keep private): {result.opening}")
    out.print(f"model commitment: {summary['model_commitment']}")
    out.print(
        f"circuit: {summary['rows']:,} rows, logrows {summary['logrows']}, {summary['weights_committed']:,} weights"
    )
    out.print("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))


def print_report(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    if report.valid:
        out.print("[bold green]VALID[/]: the fingerprint was proven from the committed weights")
    else:
        out.print(f"[bold red]INVALID[/] ({report.failed_check}): {report.reason}", highlight=False)
    facts = report.facts
    if facts.get("signed"):
        how = "the key you gave" if facts.get("signer_demanded") else "the bundled key; pass --key to demand yours"
        out.print(f"  signed by key {facts['signer_keyid']} ({how})", highlight=False)
    elif "signed" in facts:
        out.print("  not signed", highlight=False)
    if facts.get("image_proven") and "image_proof" in facts:
        proof = facts["image_proof"]
        out.print(f"  thumbnail proven too: {proof['rows']:,} rows, logrows {proof['logrows']}", highlight=False)
    for key in ("model_type", "fingerprinted_layers", "tokens", "model_commitment", "image_sha256", "vk_sha256"):
        if key in facts:
            out.print(f"  {key}: {facts[key]}", highlight=False)
    if "circuit" in facts:
        c = facts["circuit"]
        out.print(f"  circuit: {c['circuit_id'][:16]}… {c['rows']:,} rows, logrows {c['logrows']}", highlight=False)
    if "srs" in facts:
        s = facts["srs"]
        out.print(f"  srs: {s['sha256'][:16]}… (logrows {s['logrows']}, {s['origin']})", highlight=False)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `noseprint prove`.")],
    srs: Annotated[Path | None, typer.Option(help="SRS file to trust instead of the local store.")] = None,
    generator: Annotated[Path | None, typer.Option(help="A generator you trust instead of the released one.")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="Demand a signature by this public key.")] = None,
    thumbnail: Annotated[
        Path | None, typer.Option(help="A thumbnail generator you trust for image proofs instead of the released one.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Verify a bundle: exit 0 valid, 1 invalid (with the reason), 2 usage error."""
    from verifier.checks import verify_bundle

    try:
        with err.status("verifying…") as status:
            report = verify_bundle(
                bundle,
                srs_file=srs,
                generator=generator,
                signer_key=key,
                thumbnail=thumbnail,
                progress=lambda name: status.update(f"[bold]check: {name}…"),
            )
    except Exception as exc:
        fail(exc)
    print_report(report, as_json)
    raise typer.Exit(0 if report.valid else 1)


@app.command()
def keygen(
    out_path: Annotated[Path, typer.Option("--out", help="Private key file to write (public key: OUT.pub).")],
    force: Annotated[bool, typer.Option(help="Replace an existing key (the old one is lost).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Make an Ed25519 signing key pair: the private key owner-only (0600), the public key beside it."""
    from signing.keys import generate

    try:
        private, public, keyid = generate(out_path, force=force)
    except Exception as exc:
        fail(exc)
    if as_json:
        print(json.dumps({"private_key": str(private), "public_key": str(public), "keyid": keyid}, indent=2))
        return
    out.print(f"[green]private key:[/] {private} (keep it secret)")
    out.print(f"public key: {public}")
    out.print(f"key id: {keyid}")


@app.command()
def sign(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `noseprint prove`.")],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (from keygen).")],
    force: Annotated[bool, typer.Option(help="Replace an existing signature.")] = False,
) -> None:
    """Sign an existing bundle (DSSE envelope around an in-toto statement); `prove --sign` does this itself."""
    from noseprint.errors import UsageError
    from noseprint.fileio import read_json
    from noseprint.manifest import MANIFEST, schema_errors
    from signing.attestation import is_signed, sign_bundle
    from signing.keys import load_private

    try:
        private = load_private(key)
        if not (Path(bundle) / MANIFEST).is_file():
            raise UsageError(f"{bundle} is not a bundle folder (no {MANIFEST})")
        errors = schema_errors(read_json(Path(bundle) / MANIFEST, "manifest"))
        if errors:
            raise UsageError(f"{bundle}/{MANIFEST} does not follow the bundle schema: {errors[0]}")
        if is_signed(bundle) and not force:
            raise UsageError(f"{bundle} is already signed (use --force to replace the signature)")
        keyid = sign_bundle(bundle, private)
    except Exception as exc:
        fail(exc)
    out.print(f"[green]signed[/] {bundle} with key {keyid}")


@app.command("check-opening")
def check_opening_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    model_dir: Annotated[Path, typer.Argument(help="The open-weight model the bundle claims.")],
    opening: Annotated[Path, typer.Option(help="The owner's opening file (blinding lines).")],
    srs: Annotated[Path | None, typer.Option(help="SRS file to trust instead of the local store.")] = None,
) -> None:
    """Check that the bundle's commitment opens to MODEL_DIR's weights: exit 0 yes, 1 no."""
    from verifier.opening import check_opening

    try:
        with err.status("recomputing the commitment…"):
            result = check_opening(bundle, model_dir, opening, srs_file=srs)
    except Exception as exc:
        fail(exc)
    if result.matches:
        out.print("[bold green]MATCH[/]: the commitment opens to this model's weights")
        raise typer.Exit(0)
    out.print(f"[bold red]NO MATCH[/]: commitments differ for {', '.join(result.mismatched)}", highlight=False)
    raise typer.Exit(1)


@app.command()
def demo(
    work: Annotated[Path, typer.Option(help="Folder for the demo model and bundle.")] = Path("demo"),
    force: Annotated[bool, typer.Option(help="Replace an earlier demo.")] = False,
) -> None:
    """Make the embedded default model, prove it with a development SRS, and verify the bundle."""
    from prover.demo_model import write_demo_model
    from prover.pipeline import prove_model
    from verifier.checks import verify_bundle

    try:
        model_dir, bundle = work / "model", work / "bundle"
        with err.status("writing the demo model…") as status:
            if not (model_dir / "config.json").exists() or force:
                write_demo_model(model_dir)
            result = prove_model(model_dir, bundle, force=force, init_dev_srs=True, progress=stepper(status))
            status.update("[bold]verifying…")
            report = verify_bundle(bundle)
    except Exception as exc:
        fail(exc)
    out.print(f"[green]demo bundle:[/] {result.bundle}  (picture: {result.bundle / 'fingerprint.png'})")
    out.print("prove time: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    print_report(report, as_json=False)
    raise typer.Exit(0 if report.valid else 1)


@app.command("make-demo-model")
def make_demo_model(
    folder: Annotated[Path, typer.Argument(help="Where to write the checkpoint.")],
    seed: Annotated[int, typer.Option(help="Weight seed (different seeds: independent models).")] = 0,
    force: Annotated[bool, typer.Option(help="Overwrite an existing folder.")] = False,
) -> None:
    """Write the embedded default model (tiny LLaMA, random weights) to FOLDER."""
    from prover.demo_model import write_demo_model

    if folder.exists() and not force:
        fail(NoseprintError(f"folder already exists: {folder} (use --force)"))
    try:
        write_demo_model(folder, seed=seed)
    except Exception as exc:
        fail(exc)
    out.print(f"demo model written to {folder}")


@app.command()
def fingerprint(
    model_dir: Annotated[Path, typer.Argument(help="Local Hugging Face checkpoint folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Fingerprint folder to write.")],
    n_tokens: Annotated[int, typer.Option(min=4, max=4096, help="How many tokens to fingerprint.")] = 16,
    tokens: Annotated[Path | None, typer.Option(help="Token ids to use instead of the tokenizer's.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Picture, z and raw invariants in seconds, without a proof (the invariants stay private)."""
    from prover.fingerprint import fingerprint_model

    try:
        record = fingerprint_model(model_dir, out_dir, token_count=n_tokens, tokens_file=tokens, force=force)
    except Exception as exc:
        fail(exc)
    out.print(f"fingerprint written to {out_dir} ({record['model_type']}, layers {record['fingerprinted_layers']})")


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="Model folder, fingerprint folder or bundle.")],
    b: Annotated[Path, typer.Argument(help="Model folder, fingerprint folder or bundle.")],
    image: Annotated[Path, typer.Option(help="Side-by-side picture to write.")] = Path("comparison.png"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare two fingerprints: z-cosine, ICS when both invariants are at hand, a verdict."""
    from registry.compare import compare as run_compare

    try:
        result = run_compare(a, b, image_out=image)
    except Exception as exc:
        fail(exc)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    ics = "n/a" if result["ics"] is None else f"{result['ics']:.4f}"
    verdict = result["verdict"]
    out.print(f"z-cosine {result['z_cosine']:.4f}   ICS {ics}   verdict: [bold]{verdict}[/] (zoo-calibrated)")
    out.print(f"side by side: {result['image']}")


@app.command()
def gallery(
    sources: Annotated[list[Path], typer.Argument(help="Bundles or fingerprint folders.")],
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("gallery.png"),
    columns: Annotated[int | None, typer.Option(min=1, help="Pictures per row (default: one row).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Draw the fingerprints side by side, each labelled, into one PNG."""
    from registry.gallery import grid, picture_of

    if out_file.exists() and not force:
        fail(NoseprintError(f"{out_file} already exists (use --force to replace it)"))
    try:
        grid([picture_of(source) for source in sources], out_file, columns=columns)
    except Exception as exc:
        fail(exc)
    out.print(f"gallery of {len(sources)} fingerprint(s) written to {out_file}")


@app.command()
def architectures() -> None:
    """List the model_type values noseprint can fingerprint."""
    from prover.architectures import ADAPTERS

    for adapter in ADAPTERS:
        out.print(f"{adapter.family}: {', '.join(adapter.model_types)}")


@srs_app.command("init")
def srs_init(
    logrows: Annotated[int, typer.Option(min=10, max=24, help="Circuit size the SRS serves.")] = 17,
    force: Annotated[bool, typer.Option(help="Replace an existing SRS of this size.")] = False,
) -> None:
    """Generate an INSECURE development SRS into the local store."""
    from circuits import srs as store

    try:
        entry = store.init_dev(logrows, force=force)
    except Exception as exc:
        fail(exc)
    err.print(f"[yellow]warning:[/] {store.DEV_WARNING}")
    out.print(f"SRS logrows {entry.logrows}: {entry.path} sha256 {entry.sha256}")


@srs_app.command("import")
def srs_import(
    file: Annotated[Path, typer.Argument(help="SRS file obtained from a ceremony.")],
    logrows: Annotated[int, typer.Option(min=10, max=26, help="Circuit size it serves.")],
    force: Annotated[bool, typer.Option(help="Replace an existing SRS of this size.")] = False,
) -> None:
    """Copy an SRS file into the local store (trusted from now on)."""
    from circuits import srs as store

    try:
        entry = store.import_file(file, logrows, force=force)
    except Exception as exc:
        fail(exc)
    out.print(f"SRS logrows {entry.logrows}: {entry.path} sha256 {entry.sha256}")


@srs_app.command("list")
def srs_list() -> None:
    """Show the SRS files this machine trusts."""
    from circuits import srs as store

    for entry in store.listing():
        label = "DEV, insecure" if entry.is_dev else entry.origin
        out.print(f"logrows {entry.logrows}: sha256 {entry.sha256} ({label})")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
