"""`noseprint verify-inference`: did the committed model answer the challenge as the served model did?

Checks, in order; the first failure ends it with its reason (as `verify` does):

1. bundle     the fingerprint bundle verifies (`verify`), and it carries a whole-model commitment whose pieces
              are exactly the ones its shape and chunking give (names, shapes, order; digest recomputed).
              The fingerprint's own pieces are taken from its commitment: one commitment, one root.
2. challenge  the proofs are for this bundle and this challenge; the challenge's prompts follow from its seed;
              the answers are the served model's answers to the same challenge.
3. links      every proof's committed inputs are the whole-model commitment's pieces it must take, or the
              one-hot rows of the challenge tokens (recomputed here), or the previous proof's output; checked
              against the proof itself with `swap_proof_commitments`, counts first. A layer proven in parts
              (`core.whole_model.layer_parts`) is a chain of its own: each part takes the state its norm reads
              and the running residual, and outputs the residual with its blocks added.
4. proofs     every proof verifies against keys derived here, from circuits rebuilt from public facts, with
              the auditor's own SRS.
5. link       the fingerprint's embedding rows are the model's (within rounding).
6. agreement  the proven greedy token at each position (argmax of the proven logits over the vocabulary)
              equals the served model's on at least AGREEMENT_THRESHOLD of the positions.
7. logprobs   where the answers carry top-k log-probabilities, the proven logits give the same gaps between
              the served top-k tokens, up to one temperature, within MAX_LOGPROB_DEVIATION
              (`logprob_deviation`). Greedy tokens alone let a light fine-tune pass (AGREEMENT_THRESHOLD says
              which). Answers without them skip it (the report says so), or fail it where the auditor requires
              them (`require_logprobs`, `--require-logprobs`).
8. ablation   every fingerprinted layer matters: each prompt is also proven without it (its ablation chain,
              linked like the model's own), and removing it changes the proven logits by at least
              MIN_LAYER_EFFECT. Otherwise an owner could append layers that do nothing (zero output factors)
              and carry another model's fingerprint on a model that is really their own.

Checks 1, 2 and the circuits they need are here; 3-5 walk the proof chains (`verifier.challenge_chain`); 6-8
hold the proven logits to the served answers (`verifier.challenge_statistics`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import noseprint.circuits.srs as srs_store
import numpy as np
from noseprint.circuits.budget import Budget, OverBudget, estimated_inference_rows, refuse_over_budget
from noseprint.circuits.challenge_circuits import (
    LINK_TOLERANCE,
    MIN_INFERENCE_LOGROWS,
    InferenceCircuits,
    build_inference,
)
from noseprint.circuits.keys import Keys, ensure_keys
from noseprint.circuits.worker import inference_job
from noseprint.core.answers import Answers, answers_errors
from noseprint.core.bundle import Bundle, BundleError, Manifest
from noseprint.core.challenge import Challenge, ChallengeError, bundle_digest, challenge_errors
from noseprint.core.challenge_listing import CHALLENGE, InferenceProofs, InferenceProofsError
from noseprint.core.chunks import Chunking, chunking_errors
from noseprint.core.errors import UsageError
from noseprint.core.fileio import read_inside, sha256_bytes
from noseprint.core.layout import CircuitLayout
from noseprint.core.tokens import TokenList
from noseprint.core.whole_model import (
    SCALE_BITS,
    InferenceShape,
    LayerPart,
    LayerPieces,
    PartSizes,
    ablations,
    all_pieces,
    chain_prefix,
    fingerprint_map,
    layer_parts,
    layer_pieces,
    part_sizes_errors,
    whole_model_digest,
)
from noseprint.verifier.challenge_chain import Chains, ProofChecker
from noseprint.verifier.challenge_statistics import InferenceReport, check_ablation, check_agreement, check_logprobs
from noseprint.verifier.checks import verify_bundle
from noseprint.verifier.report import CheckFailed

Logits = dict[int | None, list[np.ndarray]]
"""Per chain (None: the model's own, j: without layer j), each prompt's proven logits (positions x vocabulary)."""

MAX_LAYERS = 1024
MAX_VOCAB = 1 << 20
"""Bounds on a stranger's shape before anything is built from it."""


def _shape_errors(manifest, shape: InferenceShape, layers: list[int]) -> list[str]:
    """The whole-model shape must be the fingerprint's model: its last layers are the fingerprinted ones (the
    owner names them, so they are pinned here), with the layout's shapes, and the chunking must cut them."""
    layout = manifest.layout
    wanted = list(range(shape.layers - len(layout.layers), shape.layers))
    problems = []
    if shape.layers > MAX_LAYERS or shape.vocab > MAX_VOCAB:
        problems.append(f"the model's shape is out of bounds ({shape.layers} layers, vocabulary {shape.vocab})")
    elif layers != wanted:
        problems.append(f"the fingerprinted layers are {layers}, not the model's last ones {wanted}")
    elif manifest.fingerprinted_layers not in (None, layers):
        problems.append("the fingerprinted layers differ from the ones the model section names")
    elif shape.hidden != layout.hidden or any(shape.layer_shape() != layer for layer in layout.layers):
        problems.append("the fingerprinted layers' shapes are not the whole model's layer shape")
    else:
        whole = CircuitLayout(tokens=1, hidden=shape.hidden, layers=(shape.layer_shape(),))
        problems += chunking_errors(whole, manifest.chunking)
    return problems


def whole_model_points(manifest, section: dict[str, Any]) -> tuple[InferenceShape, dict[str, list[str]]]:
    """Every piece's points: the fingerprint's own from its commitment, the rest from the inference section,
    which must list exactly the pieces the shape gives (names, shapes, order) under the digest recomputed here."""
    shape = InferenceShape.from_dict(section["shape"]).at_logrows(manifest.logrows)
    try:
        shape.head_rows  # noqa: B018 (a row that cannot fit one commitment point cannot be hidden)
    except ValueError as exc:
        raise CheckFailed(
            "bundle", f"the whole-model commitment cannot be hidden at logrows {manifest.logrows}: {exc}"
        ) from None
    layers = [int(i) for i in section["fingerprinted_layers"]]
    problems = _shape_errors(manifest, shape, layers)
    if section["scale_bits"] != SCALE_BITS:
        problems.append(f"the scale factors are committed at 2^{section['scale_bits']}, not 2^{SCALE_BITS}")
    if problems:
        raise CheckFailed("bundle", problems[0])
    fingerprinted = fingerprint_map(layers)
    fingerprint = {t.name: list(t.points) for t in manifest.committed_tensors}
    pieces = all_pieces(shape, manifest.chunking, fingerprinted)
    names = {p.name for p in pieces}
    if any(name != "embedding" and name not in names for name in fingerprint):
        raise CheckFailed("bundle", "a piece the fingerprint commits is no part of the whole model")
    expected = [p for p in pieces if p.name not in fingerprint]
    bare = [p.name for p in expected if p.unhidden_points(shape.point_values)]
    if bare:
        raise CheckFailed("bundle", f"{bare[0]}'s commitment would leave a point without blinding at this logrows")
    listed = section["pieces"]
    if len(listed) != len(expected):
        raise CheckFailed(
            "bundle", f"the whole-model commitment lists {len(listed)} pieces; the model's shape has {len(expected)}"
        )
    if [(t["name"], t["shape"]) for t in listed] != [(p.name, list(p.committed_shape)) for p in expected]:
        raise CheckFailed("bundle", "the whole-model commitment's pieces are not the ones the model's shape gives")
    digest = whole_model_digest(manifest.commitment_scheme, manifest.commitment_digest, listed)
    if digest != section["digest"]:
        raise CheckFailed("bundle", "the whole-model commitment's digest does not match its pieces")
    return shape, fingerprint | {t["name"]: list(t["points"]) for t in listed}


def _check_challenge(
    bundle: Bundle, shape: InferenceShape, proofs_dir: Path, listing: InferenceProofs, answers: Answers
) -> Challenge:
    digest = bundle_digest(bundle.manifest_bytes())
    if listing.bundle_digest != digest:
        raise CheckFailed("challenge", "the proofs are for another bundle")
    try:
        challenge = Challenge.from_json(read_inside(proofs_dir, CHALLENGE))
    except (OSError, ValueError, ChallengeError) as exc:
        raise CheckFailed("challenge", f"{CHALLENGE} is unreadable ({exc})") from None
    if challenge.digest() != listing.challenge_digest or challenge.digest() != answers.challenge_digest:
        raise CheckFailed("challenge", "the proofs and the answers are not about the same challenge")
    problems = challenge_errors(challenge, digest, shape.vocab) + answers_errors(answers, challenge)
    if problems:
        raise CheckFailed("challenge", problems[0])
    if challenge.length != listing.tokens:
        raise CheckFailed("challenge", "the proofs are for another challenge length")
    return challenge


def _expected_entries(
    shape: InferenceShape, challenge: Challenge, fingerprinted: list[int], parts: list[LayerPart]
) -> list[tuple[str, str, int, int]]:
    """(name, kind, prompt, index) of every proof, in order: the link, then each prompt's chain and its
    ablation chains (`core.whole_model.ablations`), each layer as its `parts` (`core.whole_model.layer_parts`)."""

    def layer(prefix: str, prompt: int, index: int) -> list[tuple[str, str, int, int]]:
        return [(f"{prefix}layer{index}{part.suffix}", part.kind, prompt, index) for part in parts]

    chains = ablations(shape.layers, fingerprinted)
    entries = [("link", "link", -1, 0)]
    for prompt in range(len(challenge.prompts)):
        entries.append((f"p{prompt}.embed", "embed", prompt, 0))
        for i in range(shape.layers):
            entries += layer(f"p{prompt}.", prompt, i)
        entries += [(f"p{prompt}.head{b}", "head", prompt, b) for b in range(shape.head_blocks)]
        for without, after in chains:
            prefix = chain_prefix(prompt, without)
            for i in after:
                entries += layer(prefix, prompt, i)
            entries += [(f"{prefix}head{b}", "head", prompt, b) for b in range(shape.head_blocks)]
    return entries


def verify_inference(
    bundle_dir: Path,
    proofs_dir: Path,
    answers: Answers,
    srs_file: Path | None = None,
    progress: Callable[[str], None] = lambda step: None,
    require_logprobs: bool = False,
    budget: Budget | None = None,
) -> InferenceReport:
    """Every check in order; the first failure ends it with its reason. `require_logprobs`: answers without
    top-k log-probabilities fail instead of being checked on greedy tokens alone (which a light fine-tune
    passes). `budget`: what building the bundle's and the inference circuits may cost (default: `verify`'s,
    $NOSEPRINT_MAX_ROWS and its siblings)."""
    report = InferenceReport()
    budget = budget or Budget.from_env()
    try:
        logits = _run(Path(bundle_dir), Path(proofs_dir), answers, srs_file, progress, report, budget)
        check_logprobs(report, logits[None], answers, require_logprobs)
        check_ablation(report, logits, [without for without in logits if without is not None])
    except CheckFailed as failure:
        report.failed(failure)
        return report
    report.valid = True
    return report


def _verified_bundle(
    bundle_dir: Path, srs_file: Path | None, progress, budget: Budget
) -> tuple[Bundle, InferenceShape, dict]:
    """The fingerprint bundle verified (`verify`), with its whole-model commitment checked against its shape."""
    progress("verifying the fingerprint bundle")
    verified = verify_bundle(bundle_dir, srs_file=srs_file, budget=budget)
    if not verified.valid:
        raise CheckFailed("bundle", f"the fingerprint bundle is INVALID ({verified.failed_check}: {verified.reason})")
    bundle = Bundle.open(bundle_dir)
    section = bundle.manifest.inference
    if section is None:
        raise CheckFailed("bundle", "the bundle has no whole-model commitment")
    shape, points = whole_model_points(bundle.manifest, section)
    return bundle, shape, points


def _run(
    bundle_dir: Path, proofs_dir: Path, answers: Answers, srs_file: Path | None, progress, report, budget: Budget
) -> Logits:
    """Checks 1-6, step by step; returns the proven logits of every chain, for the checks that read them."""
    bundle, shape, points = _verified_bundle(bundle_dir, srs_file, progress, budget)
    manifest = bundle.manifest
    report.checks_passed.append("bundle")
    listing, challenge = _read_challenge(bundle, shape, proofs_dir, answers, report)
    report.checks_passed.append("challenge")
    layers = _fingerprinted_layers(manifest)
    fingerprinted, sizes = fingerprint_map(layers), listing.layer_parts
    first_layer = layer_pieces(shape, manifest.chunking, fingerprinted)[0]
    _check_listing(shape, challenge, layers, first_layer, listing)
    token_ids = _fingerprint_token_ids(bundle, shape)
    lengths = (challenge.length, len(token_ids))
    args = _CircuitArgs(shape, manifest.chunking, fingerprinted, *lengths, manifest.logrows, sizes)
    srs = _inference_srs(manifest, srs_file, progress)
    _derive_within_budget(args, first_layer, srs, budget)
    circuits, keys = _inference_keys(args, srs, progress)
    checker = ProofChecker(proofs_dir, keys, srs, points)
    chains = Chains(checker, {p.name: p for p in listing.proofs}, circuits, points, challenge.length)
    _check_link(chains, token_ids, report, progress)
    logits = _prompt_logits(chains, challenge, ablations(shape.layers, layers), progress)
    report.checks_passed += ["links", "proofs", "link"]
    check_agreement(report, [prompt.argmax(axis=1).tolist() for prompt in logits[None]], answers)
    return logits


def _fingerprinted_layers(manifest: Manifest) -> list[int]:
    section = manifest.inference
    assert section is not None
    return [int(i) for i in section["fingerprinted_layers"]]


def _read_challenge(
    bundle: Bundle, shape: InferenceShape, proofs_dir: Path, answers: Answers, report: InferenceReport
) -> tuple[InferenceProofs, Challenge]:
    """The proofs folder's listing and its challenge, checked against the bundle and the answers (check 2)."""
    try:
        listing = InferenceProofs.read(proofs_dir)
    except InferenceProofsError as exc:
        raise CheckFailed("challenge", str(exc)) from None
    report.proofs_digest = sha256_bytes(listing.to_json())
    challenge = _check_challenge(bundle, shape, proofs_dir, listing, answers)
    report.challenge_digest = challenge.digest()
    report.seed_source, report.answers_source = challenge.seed_source, answers.source
    return listing, challenge


def _check_listing(
    shape: InferenceShape, challenge: Challenge, layers: list[int], first_layer: LayerPieces, listing: InferenceProofs
) -> None:
    """The proofs listed are exactly the ones this challenge needs, in order, with layer parts this model has."""
    sizes = listing.layer_parts
    if sizes is not None and part_sizes_errors(first_layer, sizes):
        raise CheckFailed(
            "links", f"the layers' parts cannot be proofs of this model: {part_sizes_errors(first_layer, sizes)[0]}"
        )
    expected = _expected_entries(shape, challenge, layers, layer_parts(first_layer, sizes))
    if [(p.name, p.kind, p.prompt, p.index) for p in listing.proofs] != expected:
        raise CheckFailed("links", f"the proofs listed are not the {len(expected)} this challenge needs, in order")


def _fingerprint_token_ids(bundle: Bundle, shape: InferenceShape) -> list[int]:
    """The fingerprint's token ids, every one a row of the model's vocabulary."""
    try:
        token_ids = TokenList.from_json(bundle.read(bundle.manifest.tokens_file)).ids
    except (ValueError, BundleError) as exc:
        raise CheckFailed("bundle", f"the bundle's tokens are unreadable ({exc})") from None
    if any(not 0 <= t < shape.vocab for t in token_ids):
        raise CheckFailed("bundle", "a fingerprint token is outside the model's vocabulary (its row would be padding)")
    return token_ids


def _inference_srs(manifest: Manifest, srs_file: Path | None, progress) -> srs_store.Srs:
    if manifest.logrows < MIN_INFERENCE_LOGROWS:
        raise CheckFailed("proofs", f"the bundle's logrows {manifest.logrows} is below the inference circuits' minimum")
    progress("rebuilding the inference circuits")
    return srs_store.choose(manifest.logrows, srs_file)


class _CircuitArgs(NamedTuple):
    """What the inference circuits are built from: `build_inference`'s arguments (and `inference_job`'s)."""

    shape: InferenceShape
    chunking: Chunking
    fingerprinted: dict[int, int]
    tokens: int
    fingerprint_tokens: int
    logrows: int
    sizes: PartSizes | None


def _derive_within_budget(args: _CircuitArgs, layer: LayerPieces, srs: srs_store.Srs, budget: Budget) -> None:
    """The inference circuits, bounded before any is built: the owner's proofs folder chooses the layer parts
    (None: whole layers) and the challenge its length, so the largest circuit's rows are estimated from them and
    refused above the budget; within it, the circuits are built and keyed in a worker under the budget's memory
    and time (unless every one is cached), as `verify` builds the fingerprint's."""
    from noseprint.circuits.worker import derive_in_worker, inference_ready

    job = inference_job(*args, srs)
    if inference_ready(job, srs):
        return
    estimates = estimated_inference_rows(args.shape, layer, args.sizes, args.tokens, args.fingerprint_tokens)
    name = max(estimates, key=lambda circuit: estimates[circuit])
    try:
        refuse_over_budget(estimates[name], f"this challenge's largest inference circuit ({name})", budget)
        derive_in_worker(job, budget, "the inference circuits")
    except OverBudget as exc:
        raise CheckFailed("proofs", str(exc)) from None


def _inference_keys(args: _CircuitArgs, srs: srs_store.Srs, progress) -> tuple[InferenceCircuits, dict[str, Keys]]:
    """The inference circuits rebuilt from `args` (`build_inference`'s) and their verification keys."""
    try:
        circuits = build_inference(*args)
        progress("deriving the inference keys")
        keys = {name: ensure_keys(circuit, srs, need_pk=False) for name, circuit in circuits.all.items()}
    except (RuntimeError, ValueError) as exc:  # EZKL reports a circuit it cannot build or key as RuntimeError
        raise CheckFailed(
            "proofs", f"the inference circuits cannot be built at logrows {args.logrows} ({exc})"
        ) from None
    return circuits, keys


def _check_link(chains: Chains, token_ids: list[int], report: InferenceReport, progress) -> None:
    """Check 5 (its links and validity checked as every proof's): the fingerprint's rows are the model's."""
    progress("checking the link proof")
    report.link_deviation = deviation = chains.link(token_ids)
    if deviation > LINK_TOLERANCE:
        raise CheckFailed(
            "link",
            f"the fingerprint's embedding rows are not the model's (deviation {deviation:.4f} > "
            f"{LINK_TOLERANCE:.4f}): the fingerprint was computed from other weights",
        )


def _prompt_logits(chains: Chains, challenge: Challenge, chain_list: list[tuple[int, list[int]]], progress) -> Logits:
    """Every prompt's chains checked (checks 3-4), their proven logits gathered per chain."""
    logits: Logits = {}
    for prompt, tokens in enumerate(challenge.prompts):
        progress(f"checking prompt {prompt + 1} of {len(challenge.prompts)}")
        for without, values in chains.prompt(prompt, tokens, chain_list).items():
            logits.setdefault(without, []).append(values)
    return logits


def verify_inference_files(bundle_dir: Path, proofs_dir: Path, answers_path: Path, **kwargs) -> InferenceReport:
    if not Path(answers_path).is_file():
        raise UsageError(f"answers file not found: {answers_path}")
    return verify_inference(bundle_dir, proofs_dir, Answers.read(Path(answers_path)), **kwargs)
