"""`noseprint watermark …` and `noseprint radioactive`: argument parsing and printing for `watermark/`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from noseprint.console import JsonOption, emit_json, err, out
from noseprint.core.errors import UsageError
from noseprint.core.fileio import write_json_atomic

watermark_app = typer.Typer(
    no_args_is_help=True, help="LLM watermarks (Kirchenbauer, Aaronson): keys, watermarked generation, detection."
)

KeyOption = Annotated[Path, typer.Option("--key", help="Watermark key (watermark keygen); kept secret.")]
SchemeOption = Annotated[
    str | None, typer.Option(help="kirchenbauer or aaronson (default: as the texts record, else kirchenbauer).")
]
KOption = Annotated[int | None, typer.Option("--k", help="Window: how many previous tokens seed the PRF (default 2).")]
GammaOption = Annotated[float | None, typer.Option(help="Green fraction γ (Kirchenbauer; default 0.25).")]
DeltaOption = Annotated[float | None, typer.Option(help="Logit bias δ on green tokens (Kirchenbauer; default 3).")]
ReportOption = Annotated[Path | None, typer.Option("--report", help="Write a signed report here (needs --sign).")]
SignOption = Annotated[Path | None, typer.Option("--sign", help="Ed25519 key (noseprint keygen) to sign the report.")]
CommitmentOption = Annotated[
    str | None,
    typer.Option(
        "--model-commitment",
        help="With --report: the registered model it is evidence for (its commitment digest, as `registry show` "
        "prints it); the registry attaches the report to that entry only, and refuses a report without one.",
    ),
]
ForceOption = Annotated[bool, typer.Option(help="Replace existing output files.")]
NoDedupOption = Annotated[
    bool, typer.Option("--no-dedup", help="Score repeated (window, token) pairs again (invalidates the p-value).")
]


def _choice(scheme: str | None, k: int | None, gamma: float | None, delta: float | None) -> Any:
    from noseprint.watermark.pipeline import ParamChoice

    return ParamChoice(scheme, k, gamma, delta)


def _load_key(path: Path) -> Any:
    from noseprint.watermark.prf import load_key

    return load_key(path)


def _check_report_options(report: Path | None, sign: Path | None, force: bool, commitment: str | None) -> str | None:
    """The options' checks; returns the model commitment in the one spelling reports hold (lower-case hex)."""
    if (report is None) != (sign is None):
        raise UsageError("--report and --sign go together: a report is always signed")
    if report is not None and report.exists() and not force:
        raise UsageError(f"{report} already exists (use --force to replace it)")
    if commitment is None:
        return None
    if report is None:
        raise UsageError("--model-commitment names the model a signed report speaks for: give --report and --sign")
    digits = commitment.strip().lower()
    if len(digits) != 64 or not set(digits) <= set("0123456789abcdef"):
        raise UsageError(f"--model-commitment is not a 64-digit hex digest: {commitment[:80]!r}")
    return digits


def _print_result(result: dict[str, Any], what: str) -> None:
    log10_p = result["log10_p"]
    shown = "-inf" if log10_p is None or log10_p == float("-inf") else f"{log10_p:.2f}"
    out.print(f"{what}: {result['scored']:,} scored tokens, score {result['score']}, log10 p = {shown}")
    if "z" in result:
        green, gamma_eff = result["green_fraction"], result["gamma_eff"]
        out.print(f"green fraction {green:.4f} (γ_eff {gamma_eff:.4f}), z {result['z']:.2f}")
    if "membership" in result:
        m = result["membership"]
        out.print(f"membership baseline (loss/zlib, KS): statistic {m['ks_statistic']:.3f}, log10 p {m['log10_p']:.2f}")


@watermark_app.command("keygen")
def keygen(
    out_path: Annotated[Path, typer.Option("--out", help="Key file to write (owner-only, 0600).")],
    force: Annotated[bool, typer.Option(help="Replace an existing key (the old one is lost).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make a secret watermark key (32 random bytes and a salt); its salted hash is its public id."""
    from noseprint.watermark.prf import write_key

    key = write_key(out_path, force)
    if as_json:
        return emit_json({"key": str(out_path), "key_commitment": key.commitment})
    out.print(f"[green]watermark key:[/] {out_path} (keep it secret)")
    out.print(f"commitment (public): {key.commitment}")


@watermark_app.command("generate")
def generate(
    model_dir: Annotated[Path, typer.Argument(help="Local Hugging Face model folder (safetensors, tokenizer).")],
    key: KeyOption,
    prompts: Annotated[Path, typer.Option(help="Prompts file, one prompt a line.")],
    out_path: Annotated[Path, typer.Option("--out", help="JSONL file of watermarked generations.")],
    scheme: Annotated[str, typer.Option(help="kirchenbauer or aaronson.")] = "kirchenbauer",
    k: KOption = None,
    gamma: GammaOption = None,
    delta: DeltaOption = None,
    new_tokens: Annotated[int, typer.Option(min=1, max=4096, help="Tokens to generate per prompt.")] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the sampler (not the key).")] = 0,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Generate watermarked text from MODEL_DIR for each prompt."""
    from noseprint.watermark.pipeline import generate_file

    options = {"new_tokens": new_tokens, "temperature": temperature, "seed": seed}
    with err.status("generating…"):
        choice = _choice(scheme, k, gamma, delta)
        result = generate_file(model_dir, _load_key(key), prompts, out_path, choice, options, force)
    if as_json:
        return emit_json(result)
    out.print(f"[green]written:[/] {result['out']} ({result['texts']} texts, {result['tokens']:,} tokens)")


@watermark_app.command("detect")
def detect(
    texts: Annotated[Path, typer.Argument(help="JSONL texts (watermark generate's output, or lines with 'text').")],
    key: KeyOption,
    scheme: SchemeOption = None,
    k: KOption = None,
    gamma: GammaOption = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Model folder whose tokenizer encodes bare text.")] = None,
    vocab_size: Annotated[int | None, typer.Option(min=2, help="Vocabulary size, if the texts record none.")] = None,
    no_dedup: NoDedupOption = False,
    report: ReportOption = None,
    sign: SignOption = None,
    model_commitment: CommitmentOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Is TEXTS watermarked with KEY? Scores each (window, token) pair once; exact p-value in log space."""
    from noseprint.watermark.pipeline import detect_file, signed_report

    commitment = _check_report_options(report, sign, force, model_commitment)
    wm_key = _load_key(key)
    choice = _choice(scheme, k, gamma, None)
    result, params = detect_file(texts, wm_key, choice, not no_dedup, tokenizer, vocab_size)
    if report is not None and sign is not None:
        from noseprint.core.fileio import sha256_file

        subjects = {"texts": sha256_file(texts)}
        signer = signed_report("detect", wm_key, params, result, subjects, sign, report, force, None, commitment)
        result = result | {"report": str(report), "signer_keyid": signer}
    if as_json:
        return emit_json(result)
    _print_result(result, "watermark detection")


@watermark_app.command("verify-report")
def verify_report(
    signed: Annotated[Path, typer.Argument(help="Signed report (--report of detect or radioactive).")],
    pub: Annotated[Path | None, typer.Option("--pub", help="Demand this signer's public key.")] = None,
    reveal: Annotated[Path | None, typer.Option(help="A revealed watermark key: does it open the commitment?")] = None,
    texts: Annotated[
        Path | None,
        typer.Option(help="With --reveal: the texts the report names (detect, open) or its filter's texts (closed)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a signed report (exit 1 when it does not verify); with a revealed key, recompute its score from its
    texts and the suspect's recorded predictions or answers (exit 1 when the signed figures do not follow)."""
    from noseprint.signing.keys import load_public
    from noseprint.watermark.report import ReportError
    from noseprint.watermark.report_check import check_report

    required = load_public(pub) if pub else None
    try:
        summary = check_report(signed, required, reveal, texts)
    except ReportError as exc:
        if as_json:
            emit_json({"valid": False, "reason": str(exc)})
        else:
            out.print(f"[bold red]INVALID[/]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        return emit_json(summary)
    out.print(f"[bold green]VALID[/]: signed by key {summary['signer_keyid']}", highlight=False)
    named = summary["report"].get("model_commitment")
    if named:
        out.print(f"evidence for the registered model with commitment {escape(str(named))}", highlight=False)
    else:
        out.print("names no registered model (the registry refuses it as evidence)", highlight=False)
    _print_result(summary["report"]["result"], summary["report"]["kind"])
    if "recomputed" in summary:
        again = summary["recomputed"]
        out.print(f"recomputed from the revealed key: {again['scored']:,} tokens, score {again['score']} (as signed)")


def radioactive(
    suspect: Annotated[Path, typer.Argument(help="Suspect model folder, or (--closed) a JSONL transcript of answers.")],
    key: KeyOption,
    open_mode: Annotated[bool, typer.Option("--open/--closed", help="Open: read its weights; closed: its answers.")],
    texts: Annotated[Path | None, typer.Option(help="--open: watermarked texts (JSONL) the suspect reads.")] = None,
    prompts: Annotated[Path | None, typer.Option(help="--closed: prompts file, one prompt a line.")] = None,
    filter_kind: Annotated[
        str, typer.Option("--filter", help="--closed: none, supervised or unsupervised window filter φ.")
    ] = "none",
    filter_texts: Annotated[Path | None, typer.Option(help="Watermarked teacher text the filter comes from.")] = None,
    filter_top: Annotated[int, typer.Option(min=1, help="Unsupervised filter: most frequent windows kept.")] = 5000,
    mi_fresh: Annotated[
        Path | None, typer.Option(help="--open: fresh teacher texts for the membership-inference baseline.")
    ] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer folder for a transcript without ids.")] = None,
    scheme: SchemeOption = None,
    k: KOption = None,
    gamma: GammaOption = None,
    new_tokens: Annotated[int, typer.Option(min=1, max=4096, help="--closed: tokens the suspect generates.")] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, help="--closed: the suspect's sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="--closed: seed of the suspect's sampler.")] = 0,
    no_dedup: NoDedupOption = False,
    curve: Annotated[Path | None, typer.Option(help="Write log10 p against scored tokens to this JSON file.")] = None,
    report: ReportOption = None,
    sign: SignOption = None,
    model_commitment: CommitmentOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Was SUSPECT trained on our watermarked text? Radioactivity test (Sander et al. 2024), open or closed."""
    from noseprint.watermark.pipeline import RadioactiveRequest, radioactive_test, signed_report

    commitment = _check_report_options(report, sign, force, model_commitment)
    if curve is not None and curve.exists() and not force:
        raise UsageError(f"{curve} already exists (use --force to replace it)")
    wm_key = _load_key(key)
    request = RadioactiveRequest(
        suspect, wm_key, open_mode, texts, prompts, filter_kind, filter_texts, filter_top, not no_dedup, mi_fresh,
        tokenizer, new_tokens, temperature, seed,
    )  # fmt: skip
    with err.status("testing the suspect…"):
        result, params, subjects, record = radioactive_test(request, _choice(scheme, k, gamma, None))
    if curve is not None:
        write_json_atomic(curve, {"scored_vs_log10_p": result["curve"], "params": params.to_json()})
        result = result | {"curve_file": str(curve)}
    if report is not None and sign is not None:
        kind = f"radioactive-{result['mode']}"
        signer = signed_report(kind, wm_key, params, result, subjects, sign, report, force, record, commitment)
        result = result | {"report": str(report), "signer_keyid": signer}
    if as_json:
        return emit_json(result)
    _print_result(result, f"radioactivity ({result['mode']})")
