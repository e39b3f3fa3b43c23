"""`noseprint prove`, `plan`, `demo` and `make-demo-model`: the owner's side, from a checkpoint to a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from noseprint.console import JsonOption, emit_json, err, out, step_lines
from noseprint.core.chunks import DEFAULT_CHUNK_WEIGHTS, Chunking
from noseprint.core.errors import UsageError
from noseprint.verify_cli import print_report


def parse_chunking(text: str | None) -> Chunking | None:
    """KV:FFN, two positive integers."""
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"--chunking takes K/V heads and FFN rows per chunk as KV:FFN (e.g. 1:16), not {text!r}")
    return Chunking(int(parts[0]), int(parts[1]))


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
    from noseprint.prover.pipeline import ProveOptions, prove_model
    from noseprint.prover.schedule import Scheduler

    options = ProveOptions(
        model_dir=model_dir,
        out=out_dir,
        opening_path=opening,
        token_count=n_tokens,
        tokens_file=tokens,
        allow_pickle=allow_pickle,
        force=force,
        srs_file=srs,
        init_dev_srs=init_dev_srs,
        generator=generator,
        sign_key=sign,
        prove_image=prove_image,
        thumbnail=thumbnail,
        owner_key=owner,
        redact=redact,
        scheduler=Scheduler(jobs, ray),
        work=work,
        chunk_weights=chunk_weights,
        chunking=parse_chunking(chunking),
    )
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

    from noseprint.circuits.calibration import load_calibration
    from noseprint.core.chunks import choose_chunking, chunking_errors
    from noseprint.models.weights import proof_gap, read_layout
    from noseprint.prover.estimate import estimate

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


def demo(
    work: Annotated[Path, typer.Option(help="Folder for the demo model and bundle.")] = Path("demo"),
    force: Annotated[bool, typer.Option(help="Replace an earlier demo.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make the embedded default model, prove it with a development SRS, and verify the bundle."""
    from noseprint.models.demo_model import write_demo_model
    from noseprint.prover.pipeline import ProveOptions, prove_model
    from noseprint.verifier.checks import verify_bundle

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


def make_demo_model(
    folder: Annotated[Path, typer.Argument(help="Where to write the checkpoint.")],
    seed: Annotated[int, typer.Option(help="Weight seed (different seeds: independent models).")] = 0,
    force: Annotated[bool, typer.Option(help="Overwrite an existing folder.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the embedded default model (tiny LLaMA, random weights) to FOLDER."""
    from noseprint.models.demo_model import write_demo_model

    if folder.exists() and not force:
        raise UsageError(f"folder already exists: {folder} (use --force)")
    write_demo_model(folder, seed=seed)
    if as_json:
        return emit_json({"model": str(folder), "seed": seed})
    out.print(f"demo model written to {folder}")
