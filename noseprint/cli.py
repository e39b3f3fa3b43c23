"""The `noseprint` console script: arguments in, the rooms' results out. Only wiring lives here.

Errors are handled once, in `noseprint.console.CatchingGroup`; every command takes `--json`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from core.chunks import DEFAULT_CHUNK_WEIGHTS, Chunking
from core.errors import UsageError
from noseprint.console import CatchingGroup, JsonOption, emit_json, err, out, step_lines
from noseprint.inference_cli import (
    challenge_command,
    prove_inference_command,
    query_command,
    verify_inference_command,
)
from noseprint.registry_cli import registry_app
from noseprint.watermark_cli import radioactive, watermark_app

if TYPE_CHECKING:
    from verifier.checks import Report

logging.getLogger("ezkl").setLevel(logging.ERROR)
"""EZKL logs through Python's logging; its warnings (a high fixed-point scale, chosen on purpose for the encode
circuit) would reach the user's terminal through logging's last-resort handler. Its errors come as exceptions."""

app = typer.Typer(
    cls=CatchingGroup, add_completion=False, no_args_is_help=True, help="Zero-knowledge-proven LLM fingerprints."
)
srs_app = typer.Typer(no_args_is_help=True, help="The SRS store this machine trusts.")
app.add_typer(srs_app, name="srs")
app.add_typer(registry_app, name="registry")
app.add_typer(watermark_app, name="watermark")
app.command("radioactive")(radioactive)
app.command("challenge")(challenge_command)
app.command("query")(query_command)
app.command("prove-inference")(prove_inference_command)
app.command("verify-inference")(verify_inference_command)

ForceOption = Annotated[bool, typer.Option(help="Replace what is there already.")]


def parse_chunking(text: str | None) -> Chunking | None:
    """KV:FFN, two positive integers."""
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"--chunking takes K/V heads and FFN rows per chunk as KV:FFN (e.g. 1:16), not {text!r}")
    return Chunking(int(parts[0]), int(parts[1]))


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
    sign: Annotated[
        Path | None, typer.Option("--sign", help="Bind the proof to this Ed25519 key (keygen) and sign the bundle.")
    ] = None,
    owner: Annotated[
        Path | None, typer.Option(help="Bind the proof to this public key without signing (sign later with its key).")
    ] = None,
    prove_image: Annotated[
        bool, typer.Option("--prove-image", help="Also prove the 16x16 thumbnail of z in a circuit (minutes more).")
    ] = False,
    thumbnail: Annotated[
        Path | None, typer.Option(help="Thumbnail generator for --prove-image instead of the released one.")
    ] = None,
    redact: Annotated[
        bool,
        typer.Option(
            help="Leave out model type, depth, layer numbers and token strings (not needed to verify), and so the "
            "whole-model commitment, which states them: a redacted bundle cannot take challenge inference."
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing bundle and opening.")] = False,
    jobs: Annotated[int, typer.Option(min=1, max=256, help="Chunk proofs to run at once on this machine.")] = 1,
    ray: Annotated[
        str | None, typer.Option(help="Run each chunk proof as a task on this Ray cluster (ADDRESS or auto).")
    ] = None,
    work: Annotated[
        Path | None, typer.Option(help="Work folder for finished chunk proofs (default: OUT.work); a re-run resumes.")
    ] = None,
    chunk_weights: Annotated[
        int, typer.Option(min=1024, help="Most weights one chunk proof takes (BENCHMARKS.md, 'Chunk size').")
    ] = DEFAULT_CHUNK_WEIGHTS,
    chunking: Annotated[
        str | None, typer.Option(help="K/V heads and FFN rows per chunk, as KV:FFN (instead of --chunk-weights).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Fingerprint MODEL_DIR and prove it: writes a bundle and a private opening."""
    from prover.pipeline import ProveOptions, prove_model
    from prover.schedule import Scheduler

    options = ProveOptions(
        model_dir, out_dir, opening, n_tokens, tokens, allow_pickle, force, srs, init_dev_srs, generator, sign,
        prove_image, thumbnail, owner, redact, Scheduler(jobs, ray), work, chunk_weights, parse_chunking(chunking),
    )  # fmt: skip
    result = prove_model(options, progress=step_lines)
    m = result.manifest
    summary = {
        "bundle": str(result.bundle),
        "opening": str(result.opening),
        "model_commitment": m.commitment_digest,
        "image_sha256": m.files[m.image_file],
        "rows": m.num_rows,
        "chunks": len(m.chunk_proofs),
        "chunks_proven": len(m.chunk_proofs) - result.chunks_reused,
        "chunks_reused": result.chunks_reused,
        "logrows": m.logrows,
        "weights_committed": m.weights_committed,
        "signed": sign is not None,
        "owner_keyid": m.owner_keyid,
        "image_proven": m.image_proof is not None,
        "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
    }
    if as_json:
        return emit_json(summary)
    out.print(f"[green]bundle written:[/] {result.bundle}")
    out.print(f"opening (keep private): {result.opening}")
    out.print(f"model commitment: {summary['model_commitment']}")
    if m.owner_keyid is None:
        out.print("owner: none bound (a registry refuses such a bundle; prove with --sign or --owner)")
    else:
        out.print(f"owner bound by the proof: key {m.owner_keyid}")
    out.print(
        f"circuit: {summary['rows']:,} rows, logrows {summary['logrows']}, {summary['weights_committed']:,} weights"
    )
    out.print("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))


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


@app.command()
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
    from circuits.budget import Budget
    from verifier.checks import verify_bundle

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


@app.command()
def keygen(
    out_path: Annotated[Path, typer.Option("--out", help="Private key file to write (public key: OUT.pub).")],
    force: Annotated[bool, typer.Option(help="Replace an existing key (the old one is lost).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make an Ed25519 signing key pair: the private key owner-only (0600), the public key beside it."""
    from signing.keys import generate

    private, public, keyid = generate(out_path, force=force)
    if as_json:
        return emit_json({"private_key": str(private), "public_key": str(public), "keyid": keyid})
    out.print(f"[green]private key:[/] {private} (keep it secret)")
    out.print(f"public key: {public}")
    out.print(f"key id: {keyid}")


@app.command()
def sign(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `noseprint prove`.")],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (from keygen).")],
    force: Annotated[bool, typer.Option(help="Replace an existing signature.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Sign an existing bundle (DSSE envelope around an in-toto statement); `prove --sign` does this itself."""
    from core.bundle import BundleError, Manifest
    from core.errors import UsageError
    from signing.attestation import is_signed, sign_bundle
    from signing.keys import key_id, load_private

    private = load_private(key)
    try:
        owner = Manifest.read(bundle).owner_keyid
    except BundleError as exc:
        raise UsageError(f"{bundle} is not a bundle folder: {exc}") from None
    if owner is None:
        raise UsageError(
            f"the proof in {bundle} binds no owner, so a signature would prove nothing: prove with --owner"
        )
    if key_id(private.public_key()) != owner:
        raise UsageError(f"the proof in {bundle} binds key {owner[:16]}…; only that key can sign it")
    if is_signed(bundle) and not force:
        raise UsageError(f"{bundle} is already signed (use --force to replace the signature)")
    keyid = sign_bundle(bundle, private)
    if as_json:
        return emit_json({"bundle": str(bundle), "keyid": keyid})
    out.print(f"[green]signed[/] {bundle} with key {keyid}")


@app.command("check-opening")
def check_opening_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    model_dir: Annotated[Path, typer.Argument(help="The open-weight model the bundle claims.")],
    opening: Annotated[Path, typer.Option(help="The owner's opening file (blinding lines).")],
    srs: Annotated[Path | None, typer.Option(help="SRS file to trust instead of the local store.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check that the bundle's commitment opens to MODEL_DIR's weights: exit 0 yes, 1 no."""
    from verifier.opening import check_opening

    with err.status("recomputing the commitment…"):
        result = check_opening(bundle, model_dir, opening, srs_file=srs)
    if as_json:
        emit_json({"matches": result.matches, "mismatched": result.mismatched})
    elif result.matches:
        out.print("[bold green]MATCH[/]: the commitment opens to this model's weights")
    else:
        out.print(f"[bold red]NO MATCH[/]: commitments differ for {', '.join(result.mismatched)}", highlight=False)
    raise typer.Exit(0 if result.matches else 1)


@app.command()
def demo(
    work: Annotated[Path, typer.Option(help="Folder for the demo model and bundle.")] = Path("demo"),
    force: Annotated[bool, typer.Option(help="Replace an earlier demo.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make the embedded default model, prove it with a development SRS, and verify the bundle."""
    from models.demo_model import write_demo_model
    from prover.pipeline import ProveOptions, prove_model
    from verifier.checks import verify_bundle

    model_dir, bundle = work / "model", work / "bundle"
    step_lines("writing the demo model")
    if not (model_dir / "config.json").exists() or force:
        write_demo_model(model_dir)
    options = ProveOptions(model_dir, bundle, force=force, init_dev_srs=True)
    result = prove_model(options, progress=step_lines)
    with err.status("[bold]verifying…"):
        report = verify_bundle(bundle)
    if not as_json:
        out.print(f"[green]demo bundle:[/] {result.bundle}  (picture: {result.bundle / 'fingerprint.png'})")
        out.print("prove time: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    print_report(report, as_json)
    raise typer.Exit(0 if report.valid else 1)


@app.command("make-demo-model")
def make_demo_model(
    folder: Annotated[Path, typer.Argument(help="Where to write the checkpoint.")],
    seed: Annotated[int, typer.Option(help="Weight seed (different seeds: independent models).")] = 0,
    force: Annotated[bool, typer.Option(help="Overwrite an existing folder.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the embedded default model (tiny LLaMA, random weights) to FOLDER."""
    from core.errors import UsageError
    from models.demo_model import write_demo_model

    if folder.exists() and not force:
        raise UsageError(f"folder already exists: {folder} (use --force)")
    write_demo_model(folder, seed=seed)
    if as_json:
        return emit_json({"model": str(folder), "seed": seed})
    out.print(f"demo model written to {folder}")


@app.command()
def fingerprint(
    model: Annotated[
        str, typer.Argument(help="Checkpoint folder, GGUF file, or a Hugging Face id (org/name) in the local cache.")
    ],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Fingerprint folder to write.")] = None,
    n_tokens: Annotated[int, typer.Option(min=4, max=4096, help="How many tokens to fingerprint.")] = 16,
    tokens: Annotated[Path | None, typer.Option(help="Token ids to use instead of the tokenizer's.")] = None,
    needed: Annotated[
        bool, typer.Option("--needed", help="Only list the files the fingerprint reads (and which are missing).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Picture, z and raw invariants in seconds, without a proof (the invariants stay private)."""
    if needed:
        from models.weights import needed_files

        files, missing = needed_files(Path(model))
        if as_json:
            return emit_json({"needed": files, "missing": missing})
        for name in files:
            out.print(f"{escape(name)}{'  (missing)' if name in missing else ''}")
        return None
    if out_dir is None:
        raise UsageError("fingerprint needs --out FOLDER (or --needed to list the files it reads)")
    from lineage.fingerprint import fingerprint_model

    record = fingerprint_model(
        Path(model), out_dir, token_count=n_tokens, tokens_file=tokens, force=force, progress=sys.stderr.isatty()
    )
    if as_json:
        return emit_json({"folder": str(out_dir)} | record)
    out.print(f"fingerprint written to {out_dir} ({record['model_type']}, layers {record['fingerprinted_layers']})")


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="Model folder, fingerprint folder or bundle.")],
    b: Annotated[Path, typer.Argument(help="Model folder, fingerprint folder or bundle.")],
    image: Annotated[Path, typer.Option(help="Side-by-side picture to write.")] = Path("comparison.png"),
    as_json: JsonOption = False,
) -> None:
    """Compare two fingerprints: z-cosine, ICS when both invariants are at hand, a verdict."""
    from lineage.compare import compare as run_compare

    result = run_compare(a, b, image_out=image)
    if as_json:
        return emit_json(result)
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
    as_json: JsonOption = False,
) -> None:
    """Draw the fingerprints side by side, each labelled, into one PNG."""
    from core.errors import UsageError
    from lineage.gallery import grid, picture_of

    if out_file.exists() and not force:
        raise UsageError(f"{out_file} already exists (use --force to replace it)")
    grid([picture_of(source) for source in sources], out_file, columns=columns)
    if as_json:
        return emit_json({"gallery": str(out_file), "pictures": len(sources)})
    out.print(f"gallery of {len(sources)} fingerprint(s) written to {out_file}")


@app.command()
def architectures(as_json: JsonOption = False) -> None:
    """List the model_type values noseprint can fingerprint, and which proofs each family takes."""
    from core.inference import SUPPORTED_TYPES
    from models.architectures import ADAPTERS

    if as_json:
        return emit_json({adapter.family: list(adapter.model_types) for adapter in ADAPTERS})
    for adapter in ADAPTERS:
        proofs = ["fingerprint and compare"]
        if not adapter.experts:  # the chunk circuits prove its terms (a mixture of experts' routing they do not)
            proofs.append("chunked proof")
        inference = [t for t in adapter.model_types if t in SUPPORTED_TYPES]
        if inference:
            proofs.append(f"challenge inference: {', '.join(inference)}")
        out.print(f"{adapter.family}: {', '.join(adapter.model_types)}  ({'; '.join(proofs)})", highlight=False)


def _srs_summary(entry: Any) -> dict[str, Any]:
    return {"logrows": entry.logrows, "path": str(entry.path), "sha256": entry.sha256, "origin": entry.origin}


@srs_app.command("init")
def srs_init(
    logrows: Annotated[int, typer.Option(min=10, max=24, help="Circuit size the SRS serves.")] = 17,
    force: Annotated[bool, typer.Option(help="Replace an existing SRS of this size.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Generate an INSECURE development SRS into the local store."""
    from circuits import srs as store

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
    from circuits import srs as store

    entry = store.import_file(file, logrows, force=force)
    if as_json:
        return emit_json(_srs_summary(entry))
    out.print(f"SRS logrows {entry.logrows}: {entry.path} sha256 {entry.sha256}")


@srs_app.command("list")
def srs_list(as_json: JsonOption = False) -> None:
    """Show the SRS files this machine trusts."""
    from circuits import srs as store

    entries = store.listing()
    if as_json:
        return emit_json([_srs_summary(entry) for entry in entries])
    for entry in entries:
        label = "DEV, insecure" if entry.is_dev else entry.origin
        out.print(f"logrows {entry.logrows}: sha256 {entry.sha256} ({label})")


@app.command()
def plan(
    model_dir: Annotated[Path, typer.Argument(help="Local Hugging Face checkpoint folder (its config.json suffices).")],
    nodes: Annotated[int, typer.Option(min=1, help="Machines proving chunks at once.")] = 1,
    cores: Annotated[int | None, typer.Option(min=1, help="Cores per machine (default: this machine's).")] = None,
    memory_gb: Annotated[
        float | None, typer.Option(min=0.1, help="Memory per machine in GB: fewer proofs at once if they need more.")
    ] = None,
    chunk_weights: Annotated[
        int, typer.Option(min=1024, help="Most weights one chunk proof takes (as for `prove`).")
    ] = DEFAULT_CHUNK_WEIGHTS,
    chunking: Annotated[
        str | None, typer.Option(help="K/V heads and FFN rows per chunk, as KV:FFN (as for `prove`).")
    ] = None,
    n_tokens: Annotated[int, typer.Option(min=4, max=256, help="How many tokens to fingerprint.")] = 16,
    calibration: Annotated[
        Path | None, typer.Option(help="Calibration table measured on your machine (bench/calibrate.py --write --out).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """What proving MODEL_DIR will cost, before paying: chunks, circuits, core-hours, wall-hours, memory."""
    import os

    from rich.table import Table

    from circuits.calibration import load_calibration
    from core.chunks import choose_chunking, chunking_errors
    from models.weights import proof_gap, read_layout
    from prover.estimate import estimate

    layout = read_layout(model_dir, n_tokens)
    table = load_calibration(calibration)
    with err.status("counting the chunk circuits' rows (seconds per shape, cached)…"):
        split = parse_chunking(chunking) or choose_chunking(layout, chunk_weights)
        problems = chunking_errors(layout, split)
        if problems:
            raise UsageError(f"this chunking does not fit the model: {problems[0]}")
        result = estimate(layout, split, nodes, cores or os.cpu_count() or 1, table, memory_gb)
    gap = proof_gap(model_dir)
    if gap is not None:  # the chunks of the products the circuits have: what a proof would cost at least
        result.warnings.insert(0, f"`prove` refuses {gap}")
    if as_json:
        return emit_json(result.to_dict())
    grid = Table(title=f"{result.chunks:,} chunk proofs and an encode proof, logrows {result.logrows}")
    for heading in ("circuit", "proofs", "weights each", "rows", "setup s", "prove s each", "pk GB", "peak GB"):
        grid.add_column(heading, justify="left" if heading == "circuit" else "right")
    for cost in [*result.shapes, result.encode]:
        rows = f"{cost.rows:,}" if cost.rows_exact else f"≤ {cost.rows:,}"
        grid.add_row(
            cost.name, f"{cost.count:,}", f"{cost.weights:,}" if cost.weights else "-", rows, f"{cost.setup_s:,.0f}",
            f"{cost.prove_s:,.0f}", f"{cost.pk_gb:.2f}", f"{cost.peak_gb:.2f}",
        )  # fmt: skip
    out.print(grid)
    out.print(
        f"{result.weights:,} weights committed; a chunk takes {split.kv_heads} K/V head(s) or "
        f"{split.ffn_rows} FFN rows",
        highlight=False,
    )
    out.print(
        f"[bold]{result.core_hours:,.2f} core-hours[/]; [bold]{result.wall_hours:,.2f} h[/] on {nodes} node(s) of "
        f"{result.cores} cores ({result.workers_per_node} proof(s) at once each); {result.peak_gb:.2f} GB per proof",
        highlight=False,
    )
    out.print(f"calibration: {escape(table.machine)}, measured {table.measured} ({len(table.points)} points)")
    if table.note:
        out.print(f"[dim]{escape(table.note)}[/]")
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
