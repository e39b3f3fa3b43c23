"""`noseprint fingerprint`, `compare`, `gallery` and `architectures`: fingerprints without a proof, and how
they compare."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from noseprint.console import JsonOption, emit_json, out
from noseprint.core.errors import UsageError


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
        from noseprint.models.weights import needed_files

        files, missing = needed_files(Path(model))
        if as_json:
            return emit_json({"needed": files, "missing": missing})
        for name in files:
            out.print(f"{escape(name)}{'  (missing)' if name in missing else ''}")
        return None
    if out_dir is None:
        raise UsageError("fingerprint needs --out FOLDER (or --needed to list the files it reads)")
    from noseprint.lineage.fingerprint import fingerprint_model

    record = fingerprint_model(
        Path(model), out_dir, token_count=n_tokens, tokens_file=tokens, force=force, progress=sys.stderr.isatty()
    )
    if as_json:
        return emit_json({"folder": str(out_dir)} | record)
    out.print(f"fingerprint written to {out_dir} ({record['model_type']}, layers {record['fingerprinted_layers']})")


def compare(
    a: Annotated[Path, typer.Argument(help="Model folder, fingerprint folder or bundle.")],
    b: Annotated[Path, typer.Argument(help="Model folder, fingerprint folder or bundle.")],
    image: Annotated[Path, typer.Option(help="Side-by-side picture to write.")] = Path("comparison.png"),
    as_json: JsonOption = False,
) -> None:
    """Compare two fingerprints: z-cosine, ICS when both invariants are at hand, a verdict."""
    from noseprint.lineage.compare import compare as run_compare

    result = run_compare(a, b, image_out=image)
    if as_json:
        return emit_json(result)
    ics = "n/a" if result["ics"] is None else f"{result['ics']:.4f}"
    verdict = result["verdict"]
    out.print(f"z-cosine {result['z_cosine']:.4f}   ICS {ics}   verdict: [bold]{verdict}[/] (zoo-calibrated)")
    out.print(f"side by side: {result['image']}")


def gallery(
    sources: Annotated[list[Path], typer.Argument(help="Bundles or fingerprint folders.")],
    out_file: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("gallery.png"),
    columns: Annotated[int | None, typer.Option(min=1, help="Pictures per row (default: one row).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Draw the fingerprints side by side, each labelled, into one PNG."""
    from noseprint.lineage.gallery import grid, picture_of

    if out_file.exists() and not force:
        raise UsageError(f"{out_file} already exists (use --force to replace it)")
    grid([picture_of(source) for source in sources], out_file, columns=columns)
    if as_json:
        return emit_json({"gallery": str(out_file), "pictures": len(sources)})
    out.print(f"gallery of {len(sources)} fingerprint(s) written to {out_file}")


def architectures(as_json: JsonOption = False) -> None:
    """List the model_type values noseprint can fingerprint, and which proofs each family takes."""
    from noseprint.core.whole_model import SUPPORTED_TYPES
    from noseprint.models.architectures import ADAPTERS

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
