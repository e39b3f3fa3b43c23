"""`noseprint verify`: check a bundle without seeing a weight, trusting nothing the prover supplied.

Each check either passes (adding facts to the report) or raises `Invalid` with the
name of the check and one sentence saying what is wrong. What is *not* taken from
the bundle (shared/notes/soundness.md): the SRS (the verifier's own), the
verification key and settings (derived from the released encoder and the circuit
description), the networks (pinned digests), the image (re-rendered from the proven
z), the public values (read from the proof itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from circuits import srs as srs_store
from circuits.budget import (
    RELEASED_THUMBNAIL_ROWS,
    Budget,
    OverBudget,
    estimated_chunked_rows,
    refuse_over_budget,
)
from circuits.build import BuiltCircuit
from circuits.chunked import ChunkedCircuits
from circuits.commitment import SCHEME
from circuits.keys import Keys
from circuits.settings import INPUT_SCALE, chunk_run_args_dict, encode_run_args_dict
from core.bundle import MANIFEST, BundleError, Manifest, chunk_proof_file, parse_proof, parse_z
from core.chunks import committed_pieces
from core.errors import UsageError
from core.fileio import canonical_json, links_inside, parse_json_strict, read_inside, sha256_bytes, sha256_file
from core.layout import MIN_BLINDING_VALUES, ROW, CircuitLayout, unhidden_points
from core.statement import PublicOutputs, shift_is_minimal, split_outputs
from core.tokens import RULE, TokenList
from encoder import release
from encoder.zvector import Z_FRAC_BITS, standardise_exact

Z_RAW_BOUND = 1 << 48
"""The circuit's output integers are far below this; the verifier bounds them itself
because the circuit skips EZKL's declaration range check on its output."""

SUBSTITUTION_NOTE = (
    "the proof shows the fingerprint was computed from the committed weights; it does not show that "
    "those weights are the model being served (open-weight models: check the commitment with the opening)"
)


class Invalid(Exception):
    def __init__(self, check: str, reason: str):
        super().__init__(reason)
        self.check = check
        self.reason = reason


@dataclass
class Report:
    valid: bool = False
    failed_check: str | None = None
    reason: str | None = None
    checks_passed: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """What verification established: proven by the proof, recomputed, or the verifier's own choice."""
    claims: dict[str, Any] = field(default_factory=dict)
    """What the owner says and nothing proves (model type, layer numbers, token strings and ids, tool
    versions): consistent with the proof's shapes, vouched for by the signature when signed, never facts."""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "failed_check": self.failed_check,
            "reason": self.reason,
            "checks_passed": self.checks_passed,
            "facts": self.facts,
            "claims": self.claims,
            "warnings": self.warnings,
        }


@dataclass
class Context:
    bundle: Path
    srs_file: Path | None
    report: Report
    generator: Path = release.GENERATOR
    """The generator the verifier renders with: the released one, or one the auditor names (--generator)."""
    thumbnail: Path = release.THUMBNAIL
    """The thumbnail generator an image proof must be about: the released one, or one named by --thumbnail."""
    manifest_: Manifest | None = None
    srs: srs_store.Srs | None = None
    circuits: ChunkedCircuits | None = None
    keys: Keys | None = None
    """The encode circuit's verification key."""
    chunk_keys: list[Keys] = field(default_factory=list)
    """One per chunk shape."""
    chunk_usable_rows: list[int] = field(default_factory=list)
    """Per chunk, the rows of a committed column its own circuit's key fills (`usable_commit_rows`)."""
    z: list[int] = field(default_factory=list)
    signer: Ed25519PublicKey | None = None
    """The Ed25519 public key the auditor demands (--key), or None: then a signature is checked when present."""
    budget: Budget = field(default_factory=Budget)
    """What building this bundle's circuits may cost (`circuits.budget`), decided before any is built."""
    derived_in_worker: bool = False

    @property
    def manifest(self) -> Manifest:
        """The validated manifest; every check after the first may rely on it."""
        if self.manifest_ is None:
            raise RuntimeError("the manifest check has not run")
        return self.manifest_

    @property
    def layout(self) -> CircuitLayout:
        return self.manifest.layout


def _path(ctx: Context, relative: str) -> Path:
    return ctx.bundle / relative


def check_manifest(ctx: Context) -> None:
    """Well-formed by the bundle format's own reader (schema, then the layout's rules)."""
    try:
        ctx.manifest_ = Manifest.read(ctx.bundle)
    except BundleError as exc:
        raise Invalid("manifest", str(exc)) from None
    check_claims(ctx.manifest_)


def owner_claims(manifest: Manifest) -> dict[str, Any]:
    """The manifest's statements that no check can prove; `--redact` bundles leave them out."""
    model = manifest.data["model"]
    claims = {
        key: model[key] for key in ("model_type", "family", "layer_count", "fingerprinted_layers") if key in model
    }
    claims["tool"] = manifest.data["tool"]
    claims["created"] = manifest.data["created"]
    claims["srs_origin"] = manifest.data["srs"]["origin"]
    return claims


def check_claims(manifest: Manifest) -> None:
    """Unprovable claims must at least agree with what is proven: the fingerprinted layers are the last
    ones of the stated depth, as many as the circuit has."""
    layers, count = manifest.data["model"].get("fingerprinted_layers"), manifest.data["model"].get("layer_count")
    if layers is not None and len(layers) != len(manifest.layout.layers):
        raise Invalid("manifest", "the claimed fingerprinted layers are not as many as the circuit's layers")
    if layers is not None and count is not None and layers != list(range(count - len(layers), count)):
        raise Invalid("manifest", "the claimed fingerprinted layers are not the last layers of the claimed depth")


def check_files(ctx: Context) -> None:
    """Every file listed, present, unmodified; no symbolic link anywhere (nothing outside the bundle is read)."""
    links = links_inside(ctx.bundle)
    if links:
        raise Invalid("files", f"the bundle holds a symbolic link ({links[0]}); a bundle is plain files only")
    files = ctx.manifest.files
    for name in ctx.manifest.referenced_files():
        if name not in files:
            raise Invalid("files", f"{name} is used by the manifest but not listed with its hash")
    for name, digest in files.items():
        try:
            data = read_inside(ctx.bundle, name)
        except (OSError, ValueError) as exc:
            raise Invalid("files", f"{name} cannot be read ({exc})") from None
        if sha256_bytes(data) != digest:
            raise Invalid("files", f"{name} was modified: its SHA-256 differs from the manifest's")


def check_signature(ctx: Context) -> None:
    """The owner's DSSE-signed in-toto statement, when present (or demanded): it must sign exactly this manifest."""
    from signing.attestation import AttestationError, check_bundle_signature, is_signed

    owner = ctx.manifest.owner_keyid  # checked against the proof's own outputs in "public output"
    if not is_signed(ctx.bundle):
        if ctx.signer is not None:
            raise Invalid("signature", "the bundle is not signed, and a signature by the given key is demanded")
        ctx.report.facts["signed"] = False
        return
    try:
        keyid, _ = check_bundle_signature(
            ctx.bundle, ctx.manifest.data, (ctx.bundle / MANIFEST).read_bytes(), ctx.signer
        )
    except AttestationError as exc:
        raise Invalid("signature", str(exc)) from None
    if owner is None:
        raise Invalid("signature", "the bundle is signed, but its proof binds no owner: anyone could have signed it")
    if keyid != owner:
        raise Invalid(
            "signature", f"the proof binds owner key {owner[:16]}…, but the bundle is signed by key {keyid[:16]}…"
        )
    ctx.report.facts["signed"] = True
    ctx.report.facts["signer_keyid"] = keyid
    ctx.report.facts["signer_demanded"] = ctx.signer is not None


def check_tokens(ctx: Context) -> None:
    """The token list must be the one the circuit's shape implies (unique ids, as many as the layout's rows of
    E) and the token rule's selection from the bundle's own tokenizer evidence, in the rule's order
    (`core.tokens`): the same weights give one fingerprint. The evidence is the owner's word about their
    tokenizer; `check-opening` checks it against an open model's. A list made before the rule (no evidence)
    verifies if its strings are in the rule's order, and is reported as not comparable."""
    try:
        listed = TokenList.from_json(read_inside(ctx.bundle, ctx.manifest.tokens_file))
    except (OSError, ValueError) as exc:
        raise Invalid("tokens", f"tokens.json is unreadable ({exc})") from None
    ids = listed.ids
    if len(set(ids)) != len(ids):
        raise Invalid("tokens", "tokens.json repeats a token id")
    if not len(ids) == ctx.manifest.token_count == ctx.layout.tokens:
        raise Invalid("tokens", "tokens.json, the manifest and the circuit layout disagree on the number of tokens")
    if listed.by_rule:
        problem = listed.rule_error()
        if problem is not None:
            raise Invalid("tokens", f"the tokens are not the token rule's selection ({RULE}): {problem}")
    else:
        problem = listed.order_error()
        if problem is not None:
            raise Invalid("tokens", problem)
        ctx.report.warnings.append(OWNER_TOKENS_WARNING)
    ctx.report.facts["token_rule"] = listed.rule
    ctx.report.claims["token_ids"] = ids
    ctx.report.claims["token_strings"] = [t.string for t in listed]


OWNER_TOKENS_WARNING = (
    "the fingerprint's tokens are the owner's own list, not chosen by the token rule: its z is not comparable "
    "with other fingerprints (the registry and `compare` refuse it)"
)


def check_tool(ctx: Context) -> None:
    from importlib.metadata import version

    theirs, ours = ctx.manifest.data["tool"]["ezkl"], version("ezkl")
    if theirs != ours:
        raise Invalid("tool", f"the bundle was proven with EZKL {theirs}; this verifier runs EZKL {ours}")


def check_networks(ctx: Context) -> None:
    if ctx.manifest.encoder_digest != release.RELEASED_ENCODER_DIGEST:
        raise Invalid("networks", "the bundle was made with an encoder that is not the released one")
    if ctx.generator == release.GENERATOR:
        if ctx.manifest.generator_digest != release.RELEASED_GENERATOR_DIGEST:
            raise Invalid(
                "networks",
                "the bundle was made with a generator that is not the released one (name it with --generator)",
            )
        trusted = release.RELEASED_GENERATOR_DIGEST
    else:
        trusted = release.network_digest(ctx.generator)
        if ctx.manifest.generator_digest != trusted:
            raise Invalid("networks", "the bundle was made with another generator than the one given by --generator")
    ctx.report.facts["encoder_digest"] = release.RELEASED_ENCODER_DIGEST
    ctx.report.facts["generator_digest"] = trusted


def check_srs(ctx: Context) -> None:
    logrows = ctx.manifest.logrows
    ctx.srs = srs_store.choose(logrows, ctx.srs_file)
    claimed = ctx.manifest.srs_sha256
    if claimed != ctx.srs.sha256:
        raise Invalid(
            "srs",
            f"the proof was made with SRS {claimed[:16]}…, not with the SRS this verifier trusts "
            f"({ctx.srs.sha256[:16]}…)",
        )
    ctx.report.facts["srs"] = {"sha256": ctx.srs.sha256, "logrows": logrows, "origin": ctx.srs.origin}
    if ctx.srs.is_dev:
        ctx.report.warnings.append(srs_store.DEV_WARNING)


def check_circuit(ctx: Context) -> None:
    """Every circuit rebuilt from the layout, the chunking and the released encoder: within the budget, in a
    worker, unless cached. The manifest's description of each must be what noseprint derives, exactly."""
    from circuits.chunked import build_chunked
    from circuits.worker import derive_in_worker, fingerprint_job, fingerprint_ready

    assert ctx.srs is not None
    layout, chunking = ctx.layout, ctx.manifest.chunking
    if not fingerprint_ready(layout, chunking, ctx.srs):
        try:
            biggest = max(estimated_chunked_rows(layout, chunking))
            refuse_over_budget(biggest, "this bundle's largest circuit", ctx.budget)
            derive_in_worker(fingerprint_job(layout, chunking, ctx.srs), ctx.budget, "this bundle's circuits")
        except OverBudget as exc:
            raise Invalid("circuit", str(exc)) from None
        ctx.derived_in_worker = True
    ctx.circuits = circuits = build_chunked(layout, chunking, release.ENCODER, release.RELEASED_ENCODER_DIGEST)
    declared = ctx.manifest.circuit
    if declared["logrows"] != circuits.logrows or declared["partial_scale"] != circuits.partial_scale:
        raise Invalid("circuit", "the circuits' logrows or partial scale in the manifest are not the ones derived")
    entries = ctx.manifest.chunk_circuits
    if len(entries) != len(circuits.shapes):
        raise Invalid(
            "circuit", f"the manifest lists {len(entries)} chunk circuits; the chunk plan has {len(circuits.shapes)}"
        )
    for index, (entry, shape, circuit) in enumerate(
        zip(entries, circuits.shapes, circuits.chunk_circuits, strict=True)
    ):
        if entry.get("shape") != shape.to_dict() or entry["run_args"] != chunk_run_args_dict(circuits.logrows):
            raise Invalid("circuit", f"chunk circuit {index} is not the shape or settings the chunk plan derives")
        if entry["circuit_id"] != circuit.circuit_id:
            raise Invalid("circuit", f"chunk circuit {index}'s id is not the one derived from its shape")
    encode = ctx.manifest.encode_circuit
    if encode["run_args"] != encode_run_args_dict(circuits.logrows, circuits.partial_scale):
        raise Invalid("circuit", "the encode circuit's settings in the manifest are not the ones noseprint derives")
    if encode["circuit_id"] != circuits.encode.circuit_id or encode.get("output_scale") != circuits.encode.output_scale:
        raise Invalid("circuit", "the encode circuit id in the manifest is not the one derived from its layout")
    ctx.report.facts["circuit"] = {
        "chunks": len(circuits.chunks),
        "chunk_shapes": len(circuits.shapes),
        "chunking": chunking.to_dict(),
        "encode_circuit_id": circuits.encode.circuit_id,
        "rows": sum(c.num_rows for c in circuits.all),
        "logrows": circuits.logrows,
        "weights_committed": layout.weight_count,
    }


def _check_key(ctx: Context, circuit: BuiltCircuit, entry: dict[str, Any], what: str) -> Keys:
    from circuits.keys import ensure_keys

    assert ctx.srs is not None
    keys = ensure_keys(circuit, ctx.srs, need_pk=False)
    bundled = sha256_file(_path(ctx, entry["vk_file"]))
    if bundled != keys.vk_sha256 or entry["vk_sha256"] != keys.vk_sha256:
        raise Invalid("keys", f"the bundle's verification key of {what} is not the one derived from its circuit")
    try:
        settings = parse_json_strict(read_inside(ctx.bundle, entry["settings_file"]), allow_floats=True)
    except (OSError, ValueError) as exc:
        raise Invalid("keys", f"{entry['settings_file']} is unreadable ({exc})") from None
    if settings != parse_json_strict(keys.settings.read_bytes(), allow_floats=True):
        raise Invalid("keys", f"{entry['settings_file']} is not the settings noseprint derives for {what}")
    return keys


def check_keys(ctx: Context) -> None:
    assert ctx.circuits is not None
    circuits = ctx.circuits
    ctx.chunk_keys = [
        _check_key(ctx, circuit, entry, f"chunk circuit {i}")
        for i, (circuit, entry) in enumerate(zip(circuits.chunk_circuits, ctx.manifest.chunk_circuits, strict=True))
    ]
    ctx.keys = keys = _check_key(ctx, circuits.encode, ctx.manifest.encode_circuit, "the encode circuit")
    ctx.report.facts["vk_sha256"] = keys.vk_sha256
    ctx.report.facts["vk_derived_now"] = keys.derived_now or ctx.derived_in_worker


def check_hiding(ctx: Context) -> None:
    """Every point of every commitment the chunk proofs make carries at least MIN_BLINDING_VALUES blinding
    values, computed from the shapes and each chunk key's own column height: EZKL commits an input as one point
    per column, so a point without blinding can be recomputed from a guessed model (issue 33). A layout that
    leaves one bare is refused, whatever the rest proves."""
    from circuits.proving import usable_commit_rows

    assert ctx.circuits is not None and ctx.srs is not None
    circuits = ctx.circuits
    usable = [usable_commit_rows(keys, ctx.srs) for keys in ctx.chunk_keys]
    for chunk in circuits.chunks:
        rows = usable[circuits.shapes.index(chunk.shape)]
        values = [(p.name, p.committed_shape, p.blinding_axis, 1) for p in chunk.pieces]
        values.append((f"chunk {chunk.name}'s output", chunk.shape.output_shape, ROW, chunk.shape.blinding_rows))
        for name, shape, axis, lines in values:
            bare = unhidden_points(shape, axis, rows, lines)
            if bare:
                raise Invalid(
                    "hiding",
                    f"{name}'s commitment point {bare[0]} carries fewer than {MIN_BLINDING_VALUES} blinding values "
                    f"(columns of {rows:,} rows): a guessed model could be tested against it",
                )
    ctx.report.facts["min_blinding_per_point"] = MIN_BLINDING_VALUES


def _proof_json(ctx: Context, relative: str, what: str) -> dict[str, Any]:
    try:
        return parse_proof(read_inside(ctx.bundle, relative))
    except (OSError, ValueError) as exc:
        raise Invalid("proof", f"{what} is not an EZKL proof ({exc})") from None


def _proven_outputs(ctx: Context) -> PublicOutputs:
    """The encode proof's instances, decoded with the verifier's own output scales (never the bundle's)."""
    from circuits.proving import felt_to_signed

    assert ctx.circuits is not None
    proof = _proof_json(ctx, ctx.manifest.encode_proof["file"], "the encode proof")
    try:
        values = [felt_to_signed(felt) for felt in proof["instances"][0]]
    except BaseException as exc:  # pyo3 panics derive from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise Invalid("public output", "the proof's public values are not field elements") from None
    _, peak_scale, owner_scale = ctx.circuits.encode.output_scales
    try:
        return split_outputs(values, ctx.manifest.z_dim, len(ctx.layout.term_shifts), peak_scale, owner_scale)
    except ValueError as exc:
        raise Invalid("public output", f"the proof's outputs are not this statement's ({exc})") from None


def _check_statement(ctx: Context, outputs: PublicOutputs) -> None:
    """The shifts are the minimal ones by the proof's own peaks (z is the weights' alone), and the owner the
    proof binds is the one the manifest names (whose signature `signature` demanded). An unsigned bundle's
    owner key is reported apart (`owner_keyid_unsigned`): the proof binds it, but anyone can bind any key."""
    for index, (peak, shift) in enumerate(zip(outputs.peaks, ctx.layout.term_shifts, strict=True)):
        if not shift_is_minimal(peak, shift):
            raise Invalid(
                "public output",
                f"term {index}'s shift {shift} is not the minimal one: its proven peak is {peak:.3f} "
                "(the owner chose the shifts; z must follow from the weights alone)",
            )
    if outputs.owner != ctx.manifest.owner_keyid:
        raise Invalid("public output", "the proof binds another owner key than the manifest names")
    if ctx.report.facts.get("signed") or outputs.owner is None:
        ctx.report.facts["owner_keyid"] = outputs.owner
    else:  # bound, but the prover chose it freely: nothing shows the key's holder made this bundle
        ctx.report.facts["owner_keyid_unsigned"] = outputs.owner


def check_public_output(ctx: Context) -> None:
    outputs = _proven_outputs(ctx)
    _check_statement(ctx, outputs)
    z_raw = outputs.z_raw
    try:
        claimed_raw, claimed_z = parse_z(read_inside(ctx.bundle, ctx.manifest.z_file))
    except (OSError, ValueError) as exc:
        raise Invalid("public output", f"z.json is unreadable ({exc})") from None
    if any(abs(v) >= Z_RAW_BOUND for v in z_raw):
        raise Invalid("public output", "the proof's output is out of the range the circuit can produce")
    if claimed_raw != z_raw:
        raise Invalid("public output", "z in z.json differs from the proof's public output")
    z = standardise_exact(z_raw)
    if claimed_z != z or ctx.manifest.z_frac_bits != Z_FRAC_BITS:
        raise Invalid("public output", "z in z.json is not the standardisation of the proven output")
    ctx.z = z
    ctx.report.facts["z"] = [v / (1 << Z_FRAC_BITS) for v in z]


def _chunk_usable_rows(ctx: Context) -> list[int]:
    """Per chunk, its own key's usable rows: EZKL lays out a committed input by the circuit that commits it (never
    by another circuit's key, the encode circuit's included)."""
    from circuits.proving import usable_commit_rows

    assert ctx.srs is not None and ctx.circuits is not None
    by_shape = [usable_commit_rows(keys, ctx.srs) for keys in ctx.chunk_keys]
    return [by_shape[ctx.circuits.shapes.index(chunk.shape)] for chunk in ctx.circuits.chunks]


def _tensor_points(ctx: Context) -> dict[str, list[str]]:
    """The model commitment's tensors, exactly the pieces the chunk plan commits (names, shapes, order), each
    with the number of points EZKL gives a value of its size in every chunk that takes it (by that chunk's own
    key); the digest recomputed over them."""
    from circuits.proving import points_per_input

    assert ctx.srs is not None and ctx.circuits is not None
    commitment = ctx.manifest.data["commitment"]
    if commitment["scheme"] != SCHEME or commitment["input_scale"] != INPUT_SCALE:
        raise Invalid("commitment", f"the commitment scheme is not {SCHEME} at input scale {INPUT_SCALE}")
    tensors = commitment["tensors"]
    if sha256_bytes(canonical_json(tensors)) != commitment["digest"]:
        raise Invalid("commitment", "the commitment digest does not match the committed tensors listed")
    pieces = committed_pieces(ctx.circuits.chunks)
    if len(tensors) != len(pieces):
        raise Invalid("commitment", f"the manifest commits to {len(tensors)} tensors; the chunk plan has {len(pieces)}")
    if [(t["name"], t["shape"]) for t in tensors] != [(p.name, list(p.committed_shape)) for p in pieces]:
        raise Invalid("commitment", "the committed tensors do not match the chunk plan")
    ctx.chunk_usable_rows = _chunk_usable_rows(ctx)
    listed = {t["name"]: list(t["points"]) for t in tensors}
    for chunk, usable in zip(ctx.circuits.chunks, ctx.chunk_usable_rows, strict=True):
        for piece in chunk.pieces:
            count = points_per_input(math.prod(piece.committed_shape), usable)
            if len(listed[piece.name]) != count:
                raise Invalid(
                    "commitment", f"{piece.name} has {len(listed[piece.name])} commitment points, not {count}"
                )
    return listed


def _commitments_match(ctx: Context, relative: str, inputs: list[list[str]], outputs: list[list[str]]) -> bool:
    from circuits.proving import commitments_match

    try:
        return commitments_match(_path(ctx, relative), inputs, outputs)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return False


def check_commitment(ctx: Context) -> None:
    """Every link, exactly: each chunk proof's committed inputs are the model commitment's pieces that chunk
    takes (then its output blinding), its committed output is the one listed; the encode proof's committed
    inputs are every chunk's output, in chunk order, then the owner limbs. Counts first, then the points."""
    from circuits.proving import points_per_input

    assert ctx.circuits is not None
    tensors = _tensor_points(ctx)
    chunks, listed = ctx.circuits.chunks, ctx.manifest.chunk_proofs
    if len(listed) != len(chunks):
        raise Invalid("commitment", f"the bundle has {len(listed)} chunk proofs; the chunk plan has {len(chunks)}")
    for chunk, entry, usable in zip(chunks, listed, ctx.chunk_usable_rows, strict=True):
        if entry["name"] != chunk.name or entry["file"] != chunk_proof_file(chunk.name):
            raise Invalid("commitment", f"chunk proof {chunk.index} is listed as {entry['name']}, not {chunk.name}")
        partial_points = points_per_input(math.prod(chunk.shape.output_shape), usable)
        if len(entry["output_points"]) != partial_points or len(entry["blinding_points"]) != 1:
            raise Invalid("commitment", f"chunk {chunk.name} lists the wrong number of commitment points")
        _proof_json(ctx, entry["file"], f"chunk {chunk.name}'s proof")  # a readable proof, before its links
        inputs = [tensors[piece.name] for piece in chunk.pieces] + [entry["blinding_points"]]
        if not _commitments_match(ctx, entry["file"], inputs, [entry["output_points"]]):
            raise Invalid(
                "commitment",
                f"chunk {chunk.name}'s proof is not about its committed weights and output (a chunk replaced, "
                "moved or taken from another bundle, or a link changed)",
            )
    encode = ctx.manifest.encode_proof
    if len(encode["owner_points"]) != 1:
        raise Invalid("commitment", "the encode proof lists the wrong number of owner commitment points")
    links = [entry["output_points"] for entry in listed] + [encode["owner_points"]]
    if not _commitments_match(ctx, encode["file"], links, []):
        raise Invalid("commitment", "the encode proof does not take in the chunks' outputs, in chunk order")
    ctx.report.facts["model_commitment"] = ctx.manifest.commitment_digest


def check_proof(ctx: Context) -> None:
    """Every proof verifies against the key derived here; the first that does not is named."""
    from circuits.proving import verify_many

    assert ctx.keys is not None and ctx.srs is not None and ctx.circuits is not None
    jobs = []
    for chunk, entry in zip(ctx.circuits.chunks, ctx.manifest.chunk_proofs, strict=True):
        _proof_json(ctx, entry["file"], f"chunk {chunk.name}'s proof")
        keys = ctx.chunk_keys[ctx.circuits.shapes.index(chunk.shape)]
        jobs.append((chunk.name, _path(ctx, entry["file"]), keys))
    _proof_json(ctx, ctx.manifest.encode_proof["file"], "the encode proof")
    jobs.append(("encode", _path(ctx, ctx.manifest.encode_proof["file"]), ctx.keys))
    failed = verify_many(jobs, ctx.srs)
    if failed is not None:
        what = "the encode proof" if failed == "encode" else f"chunk {failed}'s proof"
        raise Invalid("proof", f"{what} does not verify against the derived verification key")
    ctx.report.facts["proofs_verified"] = len(jobs)


def check_image(ctx: Context) -> None:
    import numpy as np

    from encoder.generator import load_generator, read_png_pixels

    rendered = load_generator(ctx.generator).render(ctx.z)
    image_path = _path(ctx, ctx.manifest.image_file)
    try:
        pixels = read_png_pixels(image_path)
    except Exception as exc:  # Pillow raises several types for corrupt images
        raise Invalid("image", f"fingerprint image is not a readable PNG ({exc})") from None
    if pixels.shape != rendered.shape or not np.array_equal(pixels, rendered):
        raise Invalid("image", "fingerprint.png is not the released generator's rendering of the proven z")
    ctx.report.facts["image_sha256"] = sha256_file(image_path)


def _derive_image_circuit(ctx: Context, logrows: int, digest: str, custom: bool) -> None:
    """The thumbnail circuit (minutes, ~11 GB) is built only within the budget, in a worker. A thumbnail the
    auditor named is the auditor's own choice; the released one's size is known without building it."""
    from circuits.worker import derive_in_worker, image_job, image_ready

    srs = ctx.srs if ctx.srs is not None and ctx.srs.logrows == logrows else srs_store.find(logrows)
    if srs is None or image_ready(ctx.thumbnail, digest, srs):
        return  # no SRS of that size: the SRS check below says so
    try:
        if not custom:
            refuse_over_budget(RELEASED_THUMBNAIL_ROWS, "the image proof's circuit", ctx.budget)
        derive_in_worker(image_job(ctx.thumbnail, digest, srs), ctx.budget, "the image proof's circuit")
    except OverBudget as exc:
        raise Invalid("image proof", str(exc)) from None


def _image_proof_keys(ctx: Context, declared: dict[str, Any]) -> tuple[BuiltCircuit, srs_store.Srs, Keys]:
    """The thumbnail circuit, SRS and verification key, derived here; the manifest's claims must match each.

    Nothing of these is taken from the bundle: a prover that picked its own circuit or key could prove anything.
    """
    from circuits.image_circuit import cached_image_circuit, image_run_args_dict, output_scale
    from circuits.keys import ensure_keys

    custom = ctx.thumbnail != release.THUMBNAIL
    trusted = release.network_digest(ctx.thumbnail) if custom else release.RELEASED_THUMBNAIL_DIGEST
    if declared["thumbnail_digest"] != trusted:
        which = "the one given by --thumbnail" if custom else "the released one"
        raise Invalid("image proof", f"the image proof is about a thumbnail generator that is not {which}")
    _derive_image_circuit(ctx, declared["logrows"], trusted, custom)
    circuit = cached_image_circuit(ctx.thumbnail, trusted)
    if declared["logrows"] != circuit.logrows or declared["run_args"] != image_run_args_dict(circuit.logrows):
        raise Invalid("image proof", "the image circuit's settings are not the ones noseprint derives")
    if declared["circuit_id"] != circuit.circuit_id or declared["output_scale"] != output_scale(circuit):
        raise Invalid("image proof", "the image circuit id is not the one derived from the thumbnail generator")
    srs = ctx.srs if ctx.srs is not None and ctx.srs.logrows == circuit.logrows else srs_store.choose(circuit.logrows)
    if declared["srs_sha256"] != srs.sha256:
        raise Invalid("image proof", "the image proof was made with another SRS than the one this verifier trusts")
    keys = ensure_keys(circuit, srs, need_pk=False)
    if declared["vk_sha256"] != keys.vk_sha256:
        raise Invalid("image proof", "the image proof's verification key is not the one derived here")
    return circuit, srs, keys


def _check_image_proof_pixels(ctx: Context, declared: dict[str, Any], circuit: BuiltCircuit, proof_path: Path) -> None:
    """The proof's public values: its inputs are the proven z, its outputs spell exactly the thumbnail shown."""
    from circuits.image_circuit import output_scale, pixels_from_outputs, split_instances
    from encoder.generator import load_generator, read_png_pixels

    resolution = load_generator(ctx.thumbnail).config.resolution
    try:
        inputs, outputs = split_instances(proof_path, len(ctx.z))
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise Invalid("image proof", f"the image proof is not readable ({exc})") from None
    if inputs != list(ctx.z):
        raise Invalid("image proof", "the image proof is about another z than the fingerprint proof")
    if len(outputs) != 3 * resolution * resolution:
        raise Invalid(
            "image proof", f"the image proof has {len(outputs)} outputs, not a {resolution}x{resolution} picture"
        )
    try:
        shown = read_png_pixels(_path(ctx, declared["file"]))
    except Exception as exc:  # Pillow raises several types for corrupt images
        raise Invalid("image proof", f"the thumbnail is not a readable PNG ({exc})") from None
    proven = pixels_from_outputs(outputs, output_scale(circuit), resolution)
    if shown.shape != proven.shape or not (shown == proven).all():
        raise Invalid("image proof", "the thumbnail is not the picture the image proof's outputs spell")


def check_image_proof(ctx: Context) -> None:
    """Only for bundles made with --prove-image: the thumbnail is the proven output of the thumbnail circuit
    on the same z. Circuit, SRS and key are the verifier's own, as for the fingerprint proof."""
    declared = ctx.manifest.image_proof
    ctx.report.facts["image_proven"] = declared is not None
    if declared is None:
        return
    from circuits.proving import verify_proof

    circuit, srs, keys = _image_proof_keys(ctx, declared)
    proof_path = _path(ctx, declared["proof_file"])
    _check_image_proof_pixels(ctx, declared, circuit, proof_path)
    if not verify_proof(proof_path, keys, srs):
        raise Invalid("image proof", "the image proof does not verify against the derived verification key")
    ctx.report.facts["image_proof"] = {
        "rows": circuit.num_rows,
        "logrows": circuit.logrows,
        "vk_sha256": keys.vk_sha256,
    }


CHECKS: list[tuple[str, Callable[[Context], None]]] = [
    ("manifest", check_manifest),
    ("files", check_files),
    ("signature", check_signature),
    ("tokens", check_tokens),
    ("tool", check_tool),
    ("networks", check_networks),
    ("srs", check_srs),
    ("circuit", check_circuit),
    ("keys", check_keys),
    ("hiding", check_hiding),
    ("public output", check_public_output),
    ("commitment", check_commitment),
    ("proof", check_proof),
    ("image", check_image),
    ("image proof", check_image_proof),
]


def verify_bundle(
    bundle: Path,
    srs_file: Path | None = None,
    progress: Callable[[str], None] = lambda s: None,
    generator: Path | None = None,
    signer_key: Path | None = None,
    thumbnail: Path | None = None,
    budget: Budget | None = None,
) -> Report:
    """Run every check in order; the first failure ends verification with its reason."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise UsageError(f"bundle folder not found: {bundle}")
    if generator is not None and not (Path(generator).is_file() and Path(generator).with_suffix(".json").is_file()):
        raise UsageError(f"generator weights {generator} (and its .json config beside it) not found")
    report = Report()
    if thumbnail is not None and not (Path(thumbnail).is_file() and Path(thumbnail).with_suffix(".json").is_file()):
        raise UsageError(f"thumbnail generator {thumbnail} (and its .json config beside it) not found")
    ctx = Context(bundle, Path(srs_file) if srs_file else None, report, Path(generator or release.GENERATOR))
    ctx.thumbnail = Path(thumbnail or release.THUMBNAIL)
    ctx.budget = budget or Budget.from_env()
    if signer_key is not None:
        from signing.keys import load_public

        ctx.signer = load_public(signer_key)
    for name, check in CHECKS:
        progress(name)
        try:
            check(ctx)
        except Invalid as failure:
            report.failed_check, report.reason = failure.check, failure.reason
            return report
        report.checks_passed.append(name)
    report.facts["tokens"] = ctx.manifest.token_count
    report.claims.update(owner_claims(ctx.manifest))
    report.warnings.append(SUBSTITUTION_NOTE)
    report.valid = True
    return report
