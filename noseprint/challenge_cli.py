"""`noseprint challenge` and `noseprint query`: the auditor's side of challenge inference, which needs no proof.

The auditor derives prompts the owner could not predict (`core/challenge.py`), from a registry checkpoint that
includes the bundle's entry or from a seed of their own, and records what the served model answers
(`models/serving.py`, `core/answers.py`). The owner's inference proofs are then held to those answers
(`noseprint verify-inference`, `noseprint registry inference`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from noseprint.console import JsonOption, emit_json, err, out, stepper
from noseprint.core.challenge import DEFAULT_LENGTH, DEFAULT_PROMPTS, MAX_LENGTH, MAX_PROMPTS
from noseprint.core.errors import UsageError
from noseprint.core.opening import default_path as default_opening_path
from noseprint.core.whole_model import DEFAULT_PART_WEIGHTS

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from noseprint.core.bundle import Manifest
    from noseprint.registry.audit import Source

ForceOption = Annotated[bool, typer.Option(help="Replace what is there already.")]


def bundle_vocab(manifest: Manifest) -> int:
    """The vocabulary the committed model predicts over: challenges draw their tokens from it.

    Only a bundle proven with a whole-model commitment states it; an older bundle commits to the fingerprinted
    layers alone, and no inference can be proven from those."""
    vocab = getattr(manifest, "inference_vocab", None)
    if vocab is None:
        raise UsageError(
            "this bundle has no whole-model commitment: prove it again with this version, without --redact "
            "(a redacted bundle leaves it out, as it states the model's shape)"
        )
    return int(vocab)


def _refuse_existing(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to replace it)")


def parse_seed(text: str) -> bytes:
    """An auditor's seed: hex, of at least MIN_SEED_BYTES bytes (upper case and a 0x prefix are accepted)."""
    from noseprint.core.challenge import MAX_SEED_BYTES, MIN_SEED_BYTES

    digits = text.strip().lower().removeprefix("0x")
    try:
        seed = bytes.fromhex(digits)
    except ValueError:
        raise UsageError(f"--seed is not hex: {text[:40]!r}") from None
    if not MIN_SEED_BYTES <= len(seed) <= MAX_SEED_BYTES:
        raise UsageError(
            f"--seed has {len(seed)} bytes; give {MIN_SEED_BYTES} to {MAX_SEED_BYTES} (e.g. 32 random bytes: "
            "python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return seed


def registry_source(spec: str) -> Source:
    """`--registry`: an http(s) base URL (registry serve) or a database URL, as `registry check` takes them."""
    from noseprint.registry_cli import need_registry_extra

    need_registry_extra()
    from noseprint.registry.audit import HttpSource, LocalSource

    return HttpSource(spec) if spec.startswith(("http://", "https://")) else LocalSource(spec)


def pinned_registry_key(source: Source, key_file: Path | None) -> Ed25519PublicKey:
    """The registry key to trust: the file given, else the one `registry check` pinned for this registry.

    Never the key the registry serves now: a registry that swapped keys could sign any root it liked."""
    from noseprint.registry.audit import state_path
    from noseprint.signing.keys import load_public, parse_public

    if key_file is not None:
        return load_public(key_file)
    state = state_path(source.name)
    if state.is_file():
        pinned = json.loads(state.read_text()).get("public_key")
        if isinstance(pinned, str):
            return parse_public(pinned.encode(), str(state))
    raise UsageError(
        "no registry key pinned for this registry: give --registry-key KEY.pub, "
        "or run `noseprint registry check` once to pin it"
    )


def _registry_record(spec: str, entry: int | None, key_file: Path | None, digest: str) -> dict[str, Any]:
    from noseprint.registry.challenge_seed import fetch_seed_record

    if entry is None:
        raise UsageError("--registry needs --entry ID (the entry that registered this bundle)")
    source = registry_source(spec)
    return fetch_seed_record(source, entry, digest, pinned_registry_key(source, key_file))


def challenge_command(
    bundle: Annotated[Path, typer.Argument(help="The bundle to challenge (its manifest names the model).")],
    out_path: Annotated[Path, typer.Option("--out", help="Challenge file to write (C.json).")],
    seed: Annotated[str | None, typer.Option(help="Your own seed, hex (at least 16 bytes).")] = None,
    registry: Annotated[
        str | None, typer.Option(help="Seed from the registry's first checkpoint with the entry: http(s) or db URL.")
    ] = None,
    entry: Annotated[int | None, typer.Option(help="The registry entry of this bundle (with --registry).")] = None,
    registry_key: Annotated[
        Path | None, typer.Option(help="The registry's public key (else the one `registry check` pinned).")
    ] = None,
    prompts: Annotated[int, typer.Option(min=1, max=MAX_PROMPTS, help="How many prompts.")] = DEFAULT_PROMPTS,
    length: Annotated[int, typer.Option(min=1, max=MAX_LENGTH, help="Tokens per prompt.")] = DEFAULT_LENGTH,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Derive challenge prompts for BUNDLE from a seed fixed after it was published (a registry root, or --seed)."""
    from noseprint.core.bundle import Bundle
    from noseprint.core.challenge import Challenge, bundle_digest

    if (seed is None) == (registry is None):
        raise UsageError("give exactly one seed: --seed HEX, or --registry SOURCE --entry ID")
    _refuse_existing(out_path, force)
    opened = Bundle.open(bundle)
    digest, vocab = bundle_digest(opened.manifest_bytes()), bundle_vocab(opened.manifest)
    if seed is not None:
        made = Challenge.derive(digest, parse_seed(seed), "auditor", vocab, prompts, length)
    else:
        assert registry is not None
        with err.status("fetching and checking the registry's checkpoint…"):
            record = _registry_record(registry, entry, registry_key, digest)
        made = Challenge.derive(
            digest, bytes.fromhex(record["root"]), "registry-checkpoint", vocab, prompts, length, record
        )
    made.write(out_path)
    summary = {
        "challenge": str(out_path),
        "digest": made.digest(),
        "bundle_digest": digest,
        "seed_source": made.seed_source,
        "checkpoint_size": made.checkpoint["size"] if made.checkpoint else None,
        "prompts": len(made.prompts),
        "length": made.length,
        "vocab": made.vocab,
    }
    if as_json:
        return emit_json(summary)
    seeded = f"registry checkpoint of size {summary['checkpoint_size']}" if made.checkpoint else "your seed"
    out.print(f"[green]challenge[/] {out_path}: {len(made.prompts)} prompts of {made.length} tokens from {seeded}")
    out.print(f"digest {summary['digest']}", highlight=False)


def query_command(
    target: Annotated[str, typer.Argument(help="Model folder, http(s) URL of an OpenAI-compatible server, or .jsonl.")],
    challenge: Annotated[Path, typer.Option(help="Challenge file (noseprint challenge).")],
    out_path: Annotated[Path, typer.Option("--out", help="Answers file to write (ANSWERS.json).")],
    top_k: Annotated[int, typer.Option(min=0, max=100, help="Log-probabilities kept per position (0: none).")] = 5,
    model: Annotated[str | None, typer.Option(help="Model name the server serves (default: the one it lists).")] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Ask the served model the challenge's prompts; record its greedy next token (and top-k) at every position."""
    from noseprint.core.challenge import Challenge, challenge_errors
    from noseprint.models.serving import query

    _refuse_existing(out_path, force)
    loaded = Challenge.read(challenge)
    problems = challenge_errors(loaded, loaded.bundle_digest, loaded.vocab)
    if problems:
        raise UsageError(f"{challenge} is not a fair challenge: {problems[0]}")
    with err.status("querying the served model…"):
        answers = query(target, loaded, top_k, model)
    answers.write(out_path)
    summary = {
        "answers": str(out_path),
        "source": answers.source,
        "challenge_digest": answers.challenge_digest,
        "positions": sum(len(row) for row in answers.greedy),
        "top_k": len(answers.top[0][0]) if answers.top else 0,
    }
    if as_json:
        return emit_json(summary)
    out.print(f"[green]answers[/] {out_path}: {summary['positions']} positions from {answers.source}", highlight=False)


def prove_inference_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `noseprint prove`.")],
    model_dir: Annotated[Path, typer.Argument(help="The committed model's checkpoint folder.")],
    challenge: Annotated[Path, typer.Option(help="Challenge file (noseprint challenge).")],
    out_path: Annotated[Path, typer.Option("--out", help="Folder to write the inference proofs to (P_DIR).")],
    opening: Annotated[Path | None, typer.Option(help="The bundle's opening (default: BUNDLE.opening.json).")] = None,
    srs: Annotated[Path | None, typer.Option(help="SRS file instead of the local store.")] = None,
    work: Annotated[
        Path | None, typer.Option(help="Work folder of finished proofs, so a re-run resumes (default: OUT.work).")
    ] = None,
    part_weights: Annotated[
        int,
        typer.Option(
            min=1,
            help="The most weights one layer proof takes: a bigger layer is proven in parts (blocks of the "
            "bundle's chunking), linked by the running residual's commitments.",
        ),
    ] = DEFAULT_PART_WEIGHTS,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Prove the committed model's forward pass on the challenge, linked to the bundle's whole-model commitment.
    Interrupted, the same command resumes from the proofs already finished."""
    from noseprint.prover.challenge_proofs import prove_inference

    opening_path = opening or default_opening_path(bundle)
    with err.status("proving inference…") as status:
        listing = prove_inference(
            bundle, model_dir, opening_path, challenge, out_path, force, srs,
            progress=stepper(status), work_dir=work, part_weights=part_weights,
        )  # fmt: skip
    summary = {"proofs": str(out_path), "count": len(listing.proofs), "challenge_digest": listing.challenge_digest}
    if as_json:
        return emit_json(summary)
    out.print(f"[green]inference proofs[/] {out_path}: {summary['count']} proofs", highlight=False)


def verify_inference_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `noseprint prove`.")],
    proofs: Annotated[Path, typer.Argument(help="Inference proofs folder (noseprint prove-inference).")],
    answers: Annotated[Path, typer.Option(help="The served model's answers (noseprint query).")],
    srs: Annotated[Path | None, typer.Option(help="SRS file to trust instead of the local store.")] = None,
    registry_key: Annotated[
        Path | None, typer.Option(help="Check a registry seed's checkpoint signature with this registry key.")
    ] = None,
    require_logprobs: Annotated[
        bool,
        typer.Option(
            help="Fail answers without top-k log-probabilities (greedy tokens alone let a light fine-tune pass)."
        ),  # fmt: skip
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check inference proofs against the served model's answers: exit 0 pass, 1 fail, 2 usage error."""
    from noseprint.verifier.challenge import verify_inference_files

    if not proofs.is_dir():
        raise UsageError(f"inference proofs folder not found: {proofs}")
    with err.status("verifying inference…") as status:
        report = verify_inference_files(
            bundle,
            proofs,
            answers,
            srs_file=srs,
            progress=stepper(status),
            require_logprobs=require_logprobs,
        )
    if report.valid and report.seed_source == "registry-checkpoint":
        _check_registry_seed(proofs, registry_key, report)
    if as_json:
        emit_json(report.to_dict())
    elif report.valid:
        from noseprint.core.answers import answers_origin

        source = escape(str(report.answers_source))  # the answers file's text, not markup
        out.print(
            f"[green]PASS[/] the committed model agrees with the served one on {report.agreement:.0%} of "
            f"{report.positions} positions (threshold {report.threshold:.0%}); seed: {report.seed_source}, "
            f"answers: {source} ({answers_origin(report.answers_source)})",
            highlight=False,
        )
        if report.logprob_deviation is None:
            out.print(f"      {report.logprobs_skipped}: greedy tokens alone checked", highlight=False)
        else:
            deviation, limit = report.logprob_deviation, report.to_dict()["max_logprob_deviation"]
            out.print(f"      served log-probabilities match the proven logits (deviation {deviation:.3f}, at most "
                      f"{limit}; temperature {report.logprob_temperature:.3g})", highlight=False)  # fmt: skip
        effects = ", ".join(f"layer {layer} {effect:.2f}" for layer, effect in report.layer_effects.items())
        out.print(f"      every fingerprinted layer changes the proven logits ({effects})", highlight=False)
    else:
        out.print(f"[red]FAIL[/] {report.failed_check}: {report.reason}", highlight=False)
    raise typer.Exit(0 if report.valid else 1)


def _check_registry_seed(proofs: Path, key_file: Path | None, report: Any) -> None:
    """A registry seed is only unpredictable if the registry signed the checkpoint that includes the entry:
    checked here (the verifier layer may not import the registry's code) with the key the auditor pins."""
    from noseprint.core.challenge import Challenge
    from noseprint.core.challenge_listing import CHALLENGE
    from noseprint.registry.challenge_seed import challenge_seed_errors
    from noseprint.signing.keys import load_public

    if key_file is None:
        err.print("warning: the challenge's registry seed was not checked (give --registry-key)")
        return
    problems = challenge_seed_errors(Challenge.read(proofs / CHALLENGE), load_public(key_file))
    if problems:
        report.valid, report.failed_check, report.reason = False, "challenge", f"registry seed: {problems[0]}"
