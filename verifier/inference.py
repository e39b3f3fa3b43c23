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
              (`core.inference.layer_parts`) is a chain of its own: each part takes the state its norm reads
              and the running residual, and outputs the residual with its blocks added.
4. proofs     every proof verifies against keys derived here, from circuits rebuilt from public facts, with
              the auditor's own SRS.
5. link       the fingerprint's embedding rows are the model's (within rounding).
6. agreement  the proven greedy token at each position (argmax of the proven logits over the vocabulary)
              equals the served model's on at least AGREEMENT_THRESHOLD of the positions.
7. logprobs   where the answers carry top-k log-probabilities, the proven logits give the same gaps between
              the served top-k tokens, up to one temperature, within MAX_LOGPROB_DEVIATION
              (`logprob_deviation`). Greedy tokens alone let a light fine-tune pass (a zoo base's DPO tune
              agrees on 89-92 %). Answers without them skip it (the report says so), or fail it where the
              auditor requires them (`require_logprobs`, `--require-logprobs`).
8. ablation   every fingerprinted layer matters: each prompt is also proven without it (its ablation chain,
              linked like the model's own), and removing it changes the proven logits by at least
              MIN_LAYER_EFFECT. Otherwise an owner could append layers that do nothing (zero output factors)
              and carry another model's fingerprint on a model that is really their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from circuits import srs as srs_store
from circuits.budget import Budget, OverBudget, estimated_inference_rows, refuse_over_budget
from circuits.inference import LINK_TOLERANCE, MIN_INFERENCE_LOGROWS, build_inference
from circuits.keys import Keys, ensure_keys
from circuits.worker import inference_job
from core.answers import Answers, answers_errors
from core.bundle import Bundle, BundleError, parse_proof
from core.challenge import Challenge, ChallengeError, bundle_digest, challenge_errors
from core.chunks import chunking_errors
from core.errors import UsageError
from core.fileio import read_inside, sha256_bytes
from core.inference import (
    LOGIT_GAIN_BITS,
    SCALE_BITS,
    InferenceShape,
    LayerPart,
    LayerPieces,
    PartSizes,
    ablations,
    all_pieces,
    chain_prefix,
    embed_block_of,
    embedding_piece,
    final_norm_piece,
    fingerprint_map,
    head_piece,
    layer_parts,
    layer_pieces,
    model_scales_piece,
    part_sizes_errors,
    whole_model_digest,
)
from core.inference_proofs import CHALLENGE, InferenceProofs, InferenceProofsError, ProofEntry
from core.layout import CircuitLayout
from core.tokens import TokenList
from verifier.checks import verify_bundle

MIN_LAYER_EFFECT = 0.08
"""How much removing each fingerprinted layer must change the proven logits (`layer_effect`). Measured in float
over 512 random-token positions (`python -m bench.layer_effect`): one layer of the toy LLaMA (random weights)
changes them by 0.16, of a trained zoo base or fine-tune (4 layers) by 0.30-0.68; a layer whose output factors
are zero by exactly 0. Half the weakest honest layer: an owner who makes a fingerprinted layer nearly inert
must still let it move the served model's logits by this much. On real proofs of a toy trained on a chain that
needs context (`python -m bench.trained_inference`): 0.44 and 0.55. A model that leaves a fingerprinted layer
idle (the same toy trained on a chain of the last token alone: 0.014) is refused: its fingerprint does not
describe what it serves."""
AGREEMENT_THRESHOLD = 0.75
"""The fraction of positions whose proven greedy token must equal the served one. Fixed-point and float
inference differ where two logits nearly tie: honest runs agree on 7-8 of 8 (the proven toy) and 95.5-98.2 %
(a zoo base, fixed point emulated, `python -m bench.served_agreement`); another base reaches 15-19 %, sft, cpt
and lora fine-tunes 22-47 %, but a DPO fine-tune 89-92 %: greedy tokens cannot tell it from the committed model,
so the log-probability check (below) does where answers carry them."""

MAX_LOGPROB_DEVIATION = 0.1
"""The most `logprob_deviation` a served model may show against the proven logits. Measured in float over 512
random-token positions with top-5 log-probabilities (`python -m bench.served_agreement`, the circuits' error
emulated at LAYER_ERROR 1.5e-2, which gives the proven toy's measured 1.9 % logit error): a zoo base against
itself as a proof computes it 0.061-0.069, its int8 copy 0.073-0.076, its DPO fine-tune 0.120, its 20 %-pruned
copy 0.36-0.39, its sft/cpt/lora fine-tunes 0.6-0.93, another base 0.83-0.95. The real proofs of the toy fixture
(8 positions): the committed model 0.085, every weight moved 1 % 0.108, 3 % 0.173. Fixed point at 2^-8 in the
layers is what keeps honest and DPO within 2x of each other: margins of about 1.2-1.4x each side, and a median
over few positions is noisy (honest draws at 8 positions: 0.06-0.09), so a challenge that relies on it should
have 64 positions or more."""


@dataclass
class InferenceReport:
    valid: bool = False
    failed_check: str | None = None
    reason: str | None = None
    checks_passed: list[str] = field(default_factory=list)
    agreement: float | None = None
    threshold: float = AGREEMENT_THRESHOLD
    positions: int = 0
    challenge_digest: str | None = None
    proofs_digest: str | None = None
    proven_tokens: list[list[int]] = field(default_factory=list)
    link_deviation: float | None = None
    seed_source: str | None = None
    """Who fixed the challenge's randomness (an auditor's seed is only as unpredictable as its auditor)."""
    answers_source: str | None = None
    """Where the served answers came from (a transcript is its maker's word)."""
    layer_effects: dict[str, float] = field(default_factory=dict)
    """Per fingerprinted layer, how much removing it changes the proven logits (`layer_effect`)."""
    logprob_deviation: float | None = None
    """The served top-k log-probabilities against the proven logits (None: not compared, see logprobs_skipped)."""
    served_gap: float | None = None
    """The served top-k's mean gap in nats (`served_gap`): how peaked the served distribution is."""
    logprob_temperature: float | None = None
    """The fitted temperature: served nats per proven logit (about 1 for a server that returns its raw
    log-probabilities and an owner who committed the true head factor; a flattening server shows here)."""
    logprobs_skipped: str | None = None
    """Why the log-probabilities were not compared (none given), so the reader knows."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "failed_check": self.failed_check,
            "reason": self.reason,
            "checks_passed": self.checks_passed,
            "agreement": self.agreement,
            "threshold": self.threshold,
            "positions": self.positions,
            "challenge_digest": self.challenge_digest,
            "proofs_digest": self.proofs_digest,
            "proven_tokens": self.proven_tokens,
            "link_deviation": self.link_deviation,
            "seed_source": self.seed_source,
            "answers_source": self.answers_source,
            "layer_effects": self.layer_effects,
            "logprob_deviation": self.logprob_deviation,
            "max_logprob_deviation": MAX_LOGPROB_DEVIATION,
            "served_gap": self.served_gap,
            "logprob_temperature": self.logprob_temperature,
            "logprobs_skipped": self.logprobs_skipped,
        }


class Failed(Exception):
    def __init__(self, check: str, reason: str):
        super().__init__(reason)
        self.check, self.reason = check, reason


MAX_LAYERS = 1024
MAX_VOCAB = 1 << 20
"""Bounds on a stranger's shape before anything is built from it (soundness note 11)."""


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
        raise Failed(
            "bundle", f"the whole-model commitment cannot be hidden at logrows {manifest.logrows}: {exc}"
        ) from None
    layers = [int(i) for i in section["fingerprinted_layers"]]
    problems = _shape_errors(manifest, shape, layers)
    if section["scale_bits"] != SCALE_BITS:
        problems.append(f"the scale factors are committed at 2^{section['scale_bits']}, not 2^{SCALE_BITS}")
    if problems:
        raise Failed("bundle", problems[0])
    fingerprinted = fingerprint_map(layers)
    fingerprint = {t.name: list(t.points) for t in manifest.committed_tensors}
    pieces = all_pieces(shape, manifest.chunking, fingerprinted)
    names = {p.name for p in pieces}
    if any(name != "embedding" and name not in names for name in fingerprint):
        raise Failed("bundle", "a piece the fingerprint commits is no part of the whole model")
    expected = [p for p in pieces if p.name not in fingerprint]
    bare = [p.name for p in expected if p.unhidden_points(shape.point_values)]
    if bare:
        raise Failed("bundle", f"{bare[0]}'s commitment would leave a point without blinding at this logrows")
    listed = section["pieces"]
    if len(listed) != len(expected):
        raise Failed(
            "bundle", f"the whole-model commitment lists {len(listed)} pieces; the model's shape has {len(expected)}"
        )
    if [(t["name"], t["shape"]) for t in listed] != [(p.name, list(p.committed_shape)) for p in expected]:
        raise Failed("bundle", "the whole-model commitment's pieces are not the ones the model's shape gives")
    digest = whole_model_digest(manifest.commitment_scheme, manifest.commitment_digest, listed)
    if digest != section["digest"]:
        raise Failed("bundle", "the whole-model commitment's digest does not match its pieces")
    return shape, fingerprint | {t["name"]: list(t["points"]) for t in listed}


def _check_challenge(
    bundle: Bundle, shape: InferenceShape, proofs_dir: Path, listing: InferenceProofs, answers: Answers
) -> Challenge:
    digest = bundle_digest(bundle.manifest_bytes())
    if listing.bundle_digest != digest:
        raise Failed("challenge", "the proofs are for another bundle")
    try:
        challenge = Challenge.from_json(read_inside(proofs_dir, CHALLENGE))
    except (OSError, ValueError, ChallengeError) as exc:
        raise Failed("challenge", f"{CHALLENGE} is unreadable ({exc})") from None
    if challenge.digest() != listing.challenge_digest or challenge.digest() != answers.challenge_digest:
        raise Failed("challenge", "the proofs and the answers are not about the same challenge")
    problems = challenge_errors(challenge, digest, shape.vocab) + answers_errors(answers, challenge)
    if problems:
        raise Failed("challenge", problems[0])
    if challenge.length != listing.tokens:
        raise Failed("challenge", "the proofs are for another challenge length")
    return challenge


def _expected_entries(
    shape: InferenceShape, challenge: Challenge, fingerprinted: list[int], parts: list[LayerPart]
) -> list[tuple[str, str, int, int]]:
    """(name, kind, prompt, index) of every proof, in order: the link, then each prompt's chain and its
    ablation chains (`core.inference.ablations`), each layer as its `parts` (`core.inference.layer_parts`)."""

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


class _Checker:
    """Checks each proof's links and validity, and reads the public outputs."""

    def __init__(self, proofs_dir: Path, keys: dict[str, Keys], srs: srs_store.Srs, points: dict[str, list[str]]):
        from circuits.proving import usable_commit_rows

        self.dir, self.keys, self.srs, self.points = proofs_dir, keys, srs, points
        self.usable = {kind: usable_commit_rows(k, srs) for kind, k in keys.items()}

    def counts(self, entry: ProofEntry, lists: list[list[str]], sizes: list[int], what: str) -> None:
        """Counts first: `swap_proof_commitments` writes over the first commitments only, so a short list would
        leave the rest unchecked."""
        from circuits.proving import points_per_input

        if len(lists) != len(sizes):
            raise Failed("links", f"{entry.name} takes {len(sizes)} committed {what}, not {len(lists)}")
        for points, size in zip(lists, sizes, strict=True):
            if len(points) != points_per_input(size, self.usable[entry.kind]):
                raise Failed("links", f"{entry.name} lists the wrong number of commitment points for its {what}")

    def proof(self, entry: ProofEntry) -> dict[str, Any]:
        try:
            return parse_proof(read_inside(self.dir, entry.file))
        except (OSError, ValueError) as exc:
            raise Failed("proofs", f"{entry.name}'s proof is not an EZKL proof ({exc})") from None

    def check(
        self, entry: ProofEntry, inputs: list[list[str]], sizes: list[int], outputs: list[list[str]], hidden: int
    ) -> list[str]:
        """Counts, links (exact, via the proof) and validity; the proof's public instances. `sizes`: the values
        of each committed input; `hidden`: those of the committed output."""
        from circuits.proving import commitments_match, verify_proof

        self.counts(entry, inputs, sizes, "inputs")
        self.counts(entry, outputs, [hidden] * len(outputs), "outputs")
        proof = self.proof(entry)
        path = self.dir / entry.file
        try:
            linked = commitments_match(path, inputs, outputs)
        except BaseException as exc:  # pyo3 panics derive from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            linked = False
        if not linked:
            raise Failed("links", f"{entry.name} is not about the committed pieces and hidden states it must take")
        if not verify_proof(path, self.keys[entry.kind], self.srs):
            raise Failed("proofs", f"{entry.name} does not verify")
        return list(proof["instances"][0]) if proof.get("instances") else []


def _hidden_points(entry: ProofEntry) -> tuple[list[str], list[str]]:
    if not entry.blinding_points or not entry.output_points:
        raise Failed("links", f"{entry.name} lists no hidden-state commitments")
    return entry.blinding_points, entry.output_points


def _decode(instances: list[str], scale: int) -> np.ndarray:
    from circuits.proving import felt_to_signed

    return np.asarray([felt_to_signed(f) for f in instances], dtype=np.float64) / float(1 << scale)


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
        _check_logprobs(report, logits[None], answers, require_logprobs)
        _check_ablation(report, logits, [without for without in logits if without is not None])
    except Failed as failure:
        report.failed_check, report.reason = failure.check, failure.reason
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
        raise Failed("bundle", f"the fingerprint bundle is INVALID ({verified.failed_check}: {verified.reason})")
    bundle = Bundle.open(bundle_dir)
    section = bundle.manifest.inference
    if section is None:
        raise Failed("bundle", "the bundle has no whole-model commitment")
    shape, points = whole_model_points(bundle.manifest, section)
    return bundle, shape, points


def _derive_within_budget(
    shape: InferenceShape, layer: LayerPieces, sizes: PartSizes | None, fingerprint_tokens: int, job: dict, srs,
    budget: Budget,
) -> None:  # fmt: skip
    """The inference circuits, bounded before any is built (soundness notes 11 and 17): the owner's proofs folder
    chooses the layer parts (None: whole layers, about 250M rows for a 7B layer) and the challenge its length, so
    the largest circuit's rows are estimated from them and refused above the budget; within it, the circuits are
    built and keyed in a worker under the budget's memory and time (unless every one is cached), as `verify`
    builds the fingerprint's."""
    from circuits.worker import derive_in_worker, inference_ready

    if inference_ready(job, srs):
        return
    estimates = estimated_inference_rows(shape, layer, sizes, job["tokens"], fingerprint_tokens)
    name = max(estimates, key=lambda circuit: estimates[circuit])
    try:
        refuse_over_budget(estimates[name], f"this challenge's largest inference circuit ({name})", budget)
        derive_in_worker(job, budget, "the inference circuits")
    except OverBudget as exc:
        raise Failed("proofs", str(exc)) from None


def _run(
    bundle_dir: Path, proofs_dir: Path, answers: Answers, srs_file: Path | None, progress, report, budget: Budget
) -> dict[int | None, list[np.ndarray]]:
    """Checks 1-6; returns the proven logits of every chain (None: the model's own, j: without layer j), each
    prompt's as positions x vocabulary, for the checks that read them."""
    from circuits.inference import commit_points, onehot

    bundle, shape, points = _verified_bundle(bundle_dir, srs_file, progress, budget)
    manifest = bundle.manifest
    section = manifest.inference
    assert section is not None
    report.checks_passed.append("bundle")
    try:
        listing = InferenceProofs.read(proofs_dir)
    except InferenceProofsError as exc:
        raise Failed("challenge", str(exc)) from None
    report.proofs_digest = sha256_bytes(listing.to_json())
    challenge = _check_challenge(bundle, shape, proofs_dir, listing, answers)
    report.challenge_digest = challenge.digest()
    report.seed_source, report.answers_source = challenge.seed_source, answers.source
    report.checks_passed.append("challenge")
    layers = [int(i) for i in section["fingerprinted_layers"]]
    first_layer = layer_pieces(shape, manifest.chunking, fingerprint_map(layers))[0]
    sizes = listing.layer_parts
    if sizes is not None and part_sizes_errors(first_layer, sizes):
        raise Failed(
            "links", f"the layers' parts cannot be proofs of this model: {part_sizes_errors(first_layer, sizes)[0]}"
        )
    expected = _expected_entries(shape, challenge, layers, layer_parts(first_layer, sizes))
    if [(p.name, p.kind, p.prompt, p.index) for p in listing.proofs] != expected:
        raise Failed("links", f"the proofs listed are not the {len(expected)} this challenge needs, in order")
    try:
        token_ids = TokenList.from_json(bundle.read(manifest.tokens_file)).ids
    except (ValueError, BundleError) as exc:
        raise Failed("bundle", f"the bundle's tokens are unreadable ({exc})") from None
    if any(not 0 <= t < shape.vocab for t in token_ids):
        raise Failed("bundle", "a fingerprint token is outside the model's vocabulary (its row would be padding)")
    if manifest.logrows < MIN_INFERENCE_LOGROWS:
        raise Failed("proofs", f"the bundle's logrows {manifest.logrows} is below the inference circuits' minimum")
    progress("rebuilding the inference circuits")
    fingerprinted = fingerprint_map([int(i) for i in section["fingerprinted_layers"]])
    srs = srs_store.choose(manifest.logrows, srs_file)
    job = inference_job(shape, manifest.chunking, fingerprinted, challenge.length, len(token_ids), manifest.logrows,
                        sizes, srs)  # fmt: skip
    _derive_within_budget(shape, first_layer, sizes, len(token_ids), job, srs, budget)
    try:
        circuits = build_inference(shape, manifest.chunking, fingerprinted, challenge.length, len(token_ids),
                                   manifest.logrows, sizes)  # fmt: skip
        progress("deriving the inference keys")
        keys = {name: ensure_keys(circuit, srs, need_pk=False) for name, circuit in circuits.all.items()}
    except (RuntimeError, ValueError) as exc:  # EZKL reports a circuit it cannot build or key as RuntimeError
        raise Failed(
            "proofs", f"the inference circuits cannot be built at logrows {manifest.logrows} ({exc})"
        ) from None
    d, t = shape.hidden, challenge.length
    hidden_size, blinding_size = (t + 1) * d, d
    block_size = (shape.embed_rows + 1) * d
    scales_size = math.prod(model_scales_piece().committed_shape)
    checker = _Checker(proofs_dir, keys, srs, points)
    fingerprint_rows = points["embedding"]
    entries = {p.name: p for p in listing.proofs}

    progress("checking the link proof")
    blocks = [points[embedding_piece(shape, embed_block_of(shape, t)[0]).name] for t in token_ids]
    link_onehot = commit_points(onehot(shape, token_ids), keys["link"], srs)
    link_inputs = [fingerprint_rows, link_onehot, *blocks, points[model_scales_piece().name]]
    n = len(token_ids)
    link_sizes = [(n + 1) * d, n * shape.embed_rows, *[block_size] * n, scales_size]
    instances = checker.check(entries["link"], link_inputs, link_sizes, [], 0)
    deviation = float(_decode(instances, circuits.link.output_scale).max())
    report.link_deviation = deviation
    if deviation > LINK_TOLERANCE:
        raise Failed("link", f"the fingerprint's embedding rows are not the model's (deviation {deviation:.4f} > "
                     f"{LINK_TOLERANCE:.4f}): the fingerprint was computed from other weights")  # fmt: skip
    chains = _Chains(checker, entries, circuits, points, hidden_size, blinding_size, scales_size)
    proven: list[list[int]] = []
    logits: dict[int | None, list[np.ndarray]] = {}
    """Per chain (None: the model's own, j: without layer j), each prompt's proven logits (positions x vocab)."""
    chain_list = ablations(shape.layers, [int(i) for i in section["fingerprinted_layers"]])
    for prompt, tokens in enumerate(challenge.prompts):
        progress(f"checking prompt {prompt + 1} of {len(challenge.prompts)}")
        embed = entries[f"p{prompt}.embed"]
        blinding, hidden = _hidden_points(embed)
        blocks = [points[embedding_piece(shape, embed_block_of(shape, t)[0]).name] for t in tokens]
        embed_inputs = [commit_points(onehot(shape, tokens), keys["embed"], srs), *blocks, blinding]
        embed_sizes = [t * shape.embed_rows, *[block_size] * t, blinding_size]
        checker.check(embed, embed_inputs, embed_sizes, [hidden], hidden_size)
        entering = chains.layers(prompt, None, range(shape.layers), hidden)
        logits.setdefault(None, []).append(chains.head(prompt, None, entering[-1], challenge.length))
        for without, after in chain_list:
            final = chains.layers(prompt, without, after, entering[without])[-1]
            logits.setdefault(without, []).append(chains.head(prompt, without, final, challenge.length))
        proven.append(logits[None][-1].argmax(axis=1).tolist())
    report.checks_passed += ["links", "proofs", "link"]
    _check_agreement(report, proven, answers)
    return logits


def _check_agreement(report: InferenceReport, proven: list[list[int]], answers: Answers) -> None:
    """The proven greedy tokens against the served ones."""
    positions = sum(len(p) for p in proven)
    pairs = zip(proven, answers.greedy, strict=True)
    agree = sum(a == b for mine, theirs in pairs for a, b in zip(mine, theirs, strict=True))
    report.proven_tokens, report.positions = proven, positions
    report.agreement = agree / positions if positions else 0.0
    if report.agreement < AGREEMENT_THRESHOLD:
        share = f"{agree} of {positions} positions ({report.agreement:.0%} < {AGREEMENT_THRESHOLD:.0%})"
        raise Failed(
            "agreement", f"the committed model agrees with the served one on {share}: it is not the model served"
        )
    report.checks_passed.append("agreement")


def _check_logprobs(report: InferenceReport, logits: list[np.ndarray], answers: Answers, required: bool) -> None:
    """The served top-k log-probabilities against the proven logits, where the answers carry them, at any
    flatness (the head proofs' last rounding is at 2^-16, LOGIT_GAIN_BITS, and one temperature is fitted, so a
    server that flattens its distribution gains nothing); the report says when they were not compared.

    What the server chooses must not choose the result: a second token at some positions only would pick the
    positions compared (one gap fits a temperature exactly), top-k lists tied at every position have no gaps
    to compare, and a temperature at or below zero would score the served gaps against nothing."""
    top = None if answers.top is None else [position for prompt in answers.top for position in prompt]
    ranked = 0 if top is None else sum(len(pairs) >= 2 for pairs in top)
    if not ranked:
        missing = "carry no log-probabilities" if top is None else "carry one token per position: no gaps"
        if required:
            raise Failed("logprobs", f"the answers {missing}, and the auditor requires log-probabilities "
                         "(greedy tokens alone let a light fine-tune of the committed model pass)")  # fmt: skip
        report.logprobs_skipped = f"the answers {missing}"
        return
    assert top is not None
    if ranked < len(top):
        raise Failed("logprobs", f"the answers rank a second token at {ranked} of {len(top)} positions only: "
                     "log-probabilities must cover every position, or none")  # fmt: skip
    report.served_gap = served_gap(top)
    fit = logprob_fit(np.concatenate(logits), top)
    if fit is None or fit[1] <= 0:
        what = "tie their top-k at most positions" if fit is None else "rank tokens against the proven logits"
        raise Failed("logprobs", f"the served log-probabilities {what}: no temperature makes them the committed "
                     "model's")  # fmt: skip
    deviation, report.logprob_temperature = fit
    report.logprob_deviation = deviation
    if deviation > MAX_LOGPROB_DEVIATION:
        raise Failed(
            "logprobs",
            f"the served log-probabilities differ from the committed model's logits by {deviation:.3f} (relative "
            f"to the served gaps; at most {MAX_LOGPROB_DEVIATION} allowed): the greedy tokens agree on "
            f"{report.agreement:.0%}, but the model served is another one (a fine-tune of it, or a neighbour)",
        )
    report.checks_passed.append("logprobs")


def served_gap(top: list[list[tuple[int, float]]]) -> float | None:
    """The mean gap, in nats, from the served most likely token to the others of its top-k (None: no gaps)."""
    gaps = [pairs[0][1] - logprob for pairs in top for _, logprob in pairs[1:]]
    return float(np.mean(gaps)) if gaps else None


def _check_ablation(report: InferenceReport, logits: dict[int | None, list[np.ndarray]], layers: list[int]) -> None:
    """Every fingerprinted layer changes the proven logits."""
    model = np.concatenate(logits[None])
    for without in layers:
        effect = layer_effect(model, np.concatenate(logits[without]))
        report.layer_effects[str(without)] = effect
        if effect < MIN_LAYER_EFFECT:
            raise Failed(
                "ablation",
                f"without layer {without} the committed model's logits change by {effect:.3f} (median relative "
                f"change; at least {MIN_LAYER_EFFECT} needed): a fingerprinted layer that does nothing can carry "
                "any fingerprint, so this one does not describe the model served",
            )
    report.checks_passed.append("ablation")


def layer_effect(model: np.ndarray, without: np.ndarray) -> float:
    """How much removing a layer changes the proven logits: the median over positions of |without - model|
    relative to the spread of the model's logits at that position (0 for a layer that does nothing)."""
    spread = np.linalg.norm(model - model.mean(axis=1, keepdims=True), axis=1)
    change = np.linalg.norm(without - model, axis=1)
    relative = np.where(spread > 0, change / np.where(spread > 0, spread, 1.0), 0.0)
    return float(np.median(relative))


def logprob_deviation(proven: np.ndarray, top: list[list[tuple[int, float]]]) -> float | None:
    """`logprob_fit`'s deviation alone (None: nothing to compare)."""
    fit = logprob_fit(proven, top)
    return None if fit is None else fit[0]


def logprob_fit(proven: np.ndarray, top: list[list[tuple[int, float]]]) -> tuple[float, float] | None:
    """How far the proven logits (positions x vocabulary) are from the served top-k log-probabilities, relative
    to the served model's own gaps (0: the same up to a temperature; about 1: unrelated).

    At each position, the gaps from the served most likely token to the others of its top-k: served,
    log-probability differences; proven, logit differences (the same quantity: a softmax's normaliser cancels).
    One temperature is fitted over all positions first (the head's committed factor is the owner's word, so a
    temperature must not decide). The result is the median over positions of the mean |fitted proven gap -
    served gap|, divided by the median over positions of the mean served gap (one normaliser, so that a near tie
    does not blow up its position and a model's overall logit scale does not matter; the same statistic as the
    numerator, so that a server cannot make a few positions' huge gaps stand for the rest). Returned with the
    fitted temperature (served nats per proven logit; not clamped: at or below zero the served ranking is
    against the proven one). None where no position has two tokens in its top-k, or the normaliser is zero."""
    proven_gaps, served_gaps = [], []
    for row, pairs in zip(proven, top, strict=True):
        anchor, anchor_logprob = pairs[0]
        proven_gaps.append(np.array([row[anchor] - row[token] for token, _ in pairs[1:]], dtype=np.float64))
        served_gaps.append(np.array([anchor_logprob - logprob for _, logprob in pairs[1:]], dtype=np.float64))
    scored = [(p, s) for p, s in zip(proven_gaps, served_gaps, strict=True) if len(s)]
    scale = float(np.median([s.mean() for _, s in scored])) if scored else 0.0
    if scale <= 0:
        return None
    energy = sum(float(p @ p) for p, _ in scored)
    temperature = sum(float(p @ s) for p, s in scored) / energy if energy > 0 else 0.0
    deviation = float(np.median([np.abs(temperature * p - s).mean() for p, s in scored])) / scale
    return deviation, temperature


@dataclass
class _Chains:
    """Checks one chain of layer proofs and its head proofs (the model's own, or an ablation chain)."""

    checker: _Checker
    entries: dict[str, ProofEntry]
    circuits: Any
    points: dict[str, list[str]]
    hidden_size: int
    blinding_size: int
    scales_size: int

    def layers(self, prompt: int, without: int | None, indices, hidden: list[str]) -> list[list[str]]:
        """The hidden state entering each of `indices` and the last one's output. Each layer's proofs
        (`core.inference.layer_parts`) are checked in order: a whole layer's input is the state entering it; a
        part's norm input is the state entering the layer (attention) or the residual after the last attention
        part (FFN), and its running residual the previous part's output, starting from that same state."""
        states = [hidden]
        for index in indices:
            norm_input = running = states[-1]
            for part in self.circuits.parts(index):
                if part.kind == "ffn" and part.block == 0:
                    norm_input = running
                entry = self.entries[f"{chain_prefix(prompt, without)}layer{index}{part.suffix}"]
                blinding, output = _hidden_points(entry)
                hidden_states = [running] if part.kind == "layer" else [norm_input, running]
                pieces = [self.points[piece.name] for piece in part.pieces]
                sizes = [self.hidden_size] * len(hidden_states)
                sizes += [math.prod(piece.committed_shape) for piece in part.pieces] + [self.blinding_size]
                self.checker.check(entry, [*hidden_states, *pieces, blinding], sizes, [output], self.hidden_size)
                running = output
            states.append(running)
        return states

    def head(self, prompt: int, without: int | None, hidden: list[str], length: int) -> np.ndarray:
        """The proven logits (positions x vocabulary) of the head proofs on `hidden`."""
        shape = self.circuits.shape
        blocks = []
        for block in range(shape.head_blocks):
            entry = self.entries[f"{chain_prefix(prompt, without)}head{block}"]
            inputs = [hidden, self.points[final_norm_piece(shape).name], self.points[head_piece(shape, block).name],
                      self.points[model_scales_piece().name]]  # fmt: skip
            sizes = [self.hidden_size, 2 * shape.hidden, (shape.head_rows + 1) * shape.hidden, self.scales_size]
            gained = self.circuits.head.output_scale + LOGIT_GAIN_BITS
            values = _decode(self.checker.check(entry, inputs, sizes, [], 0), gained)
            blocks.append(values.reshape(length, shape.head_rows))
        return np.concatenate(blocks, axis=1)[:, : shape.vocab]


def verify_inference_files(bundle_dir: Path, proofs_dir: Path, answers_path: Path, **kwargs) -> InferenceReport:
    if not Path(answers_path).is_file():
        raise UsageError(f"answers file not found: {answers_path}")
    return verify_inference(bundle_dir, proofs_dir, Answers.read(Path(answers_path)), **kwargs)
