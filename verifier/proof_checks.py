"""The checks of `noseprint verify` on the proofs: the public output they prove (z, the term shifts, the
owner), the links of every chunk proof to the model commitment and to the encode proof, and that every proof
verifies against the key derived here. The public values are read from the proofs themselves."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from noseprint.circuits.commitment import SCHEME
from noseprint.circuits.settings import INPUT_SCALE
from noseprint.core.bundle import chunk_proof_file, parse_proof, parse_z
from noseprint.core.chunks import committed_pieces
from noseprint.core.fileio import canonical_json, read_inside, sha256_bytes
from noseprint.core.statement import PublicOutputs, shift_is_minimal, split_outputs
from noseprint.encoder.zvector import Z_FRAC_BITS, standardise_exact
from noseprint.verifier.report import CheckFailed

if TYPE_CHECKING:
    from noseprint.verifier.context import Context

Z_RAW_BOUND = 1 << 48
"""The circuit's output integers are far below this; the verifier bounds them itself
because the circuit skips EZKL's declaration range check on its output."""


def _proof_json(ctx: Context, relative: str, what: str) -> dict[str, Any]:
    try:
        return parse_proof(read_inside(ctx.bundle, relative))
    except (OSError, ValueError) as exc:
        raise CheckFailed("proof", f"{what} is not an EZKL proof ({exc})") from None


def _proven_outputs(ctx: Context) -> PublicOutputs:
    """The encode proof's instances, decoded with the verifier's own output scales (never the bundle's)."""
    from noseprint.circuits.proving import felt_to_signed

    assert ctx.circuits is not None
    proof = _proof_json(ctx, ctx.manifest.encode_proof["file"], "the encode proof")
    try:
        values = [felt_to_signed(felt) for felt in proof["instances"][0]]
    except BaseException as exc:  # pyo3 panics derive from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise CheckFailed("public output", "the proof's public values are not field elements") from None
    _, peak_scale, owner_scale = ctx.circuits.encode.output_scales
    try:
        return split_outputs(values, ctx.manifest.z_dim, len(ctx.layout.term_shifts), peak_scale, owner_scale)
    except ValueError as exc:
        raise CheckFailed("public output", f"the proof's outputs are not this statement's ({exc})") from None


def _check_statement(ctx: Context, outputs: PublicOutputs) -> None:
    """The shifts are the minimal ones by the proof's own peaks (z is the weights' alone), and the owner the
    proof binds is the one the manifest names (whose signature `signature` demanded). An unsigned bundle's
    owner key is reported apart (`owner_keyid_unsigned`): the proof binds it, but anyone can bind any key."""
    for index, (peak, shift) in enumerate(zip(outputs.peaks, ctx.layout.term_shifts, strict=True)):
        if not shift_is_minimal(peak, shift):
            raise CheckFailed(
                "public output",
                f"term {index}'s shift {shift} is not the minimal one: its proven peak is {peak:.3f} "
                "(the owner chose the shifts; z must follow from the weights alone)",
            )
    if outputs.owner != ctx.manifest.owner_keyid:
        raise CheckFailed("public output", "the proof binds another owner key than the manifest names")
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
        raise CheckFailed("public output", f"z.json is unreadable ({exc})") from None
    if any(abs(v) >= Z_RAW_BOUND for v in z_raw):
        raise CheckFailed("public output", "the proof's output is out of the range the circuit can produce")
    if claimed_raw != z_raw:
        raise CheckFailed("public output", "z in z.json differs from the proof's public output")
    z = standardise_exact(z_raw)
    if claimed_z != z or ctx.manifest.z_frac_bits != Z_FRAC_BITS:
        raise CheckFailed("public output", "z in z.json is not the standardisation of the proven output")
    ctx.z = z
    ctx.report.facts["z"] = [v / (1 << Z_FRAC_BITS) for v in z]


def _chunk_usable_rows(ctx: Context) -> list[int]:
    """Per chunk, its own key's usable rows: EZKL lays out a committed input by the circuit that commits it (never
    by another circuit's key, the encode circuit's included)."""
    from noseprint.circuits.proving import usable_commit_rows

    assert ctx.srs is not None and ctx.circuits is not None
    by_shape = [usable_commit_rows(keys, ctx.srs) for keys in ctx.chunk_keys]
    return [by_shape[ctx.circuits.shapes.index(chunk.shape)] for chunk in ctx.circuits.chunks]


def _tensor_points(ctx: Context) -> dict[str, list[str]]:
    """The model commitment's tensors, exactly the pieces the chunk plan commits (names, shapes, order), each
    with the number of points EZKL gives a value of its size in every chunk that takes it (by that chunk's own
    key); the digest recomputed over them."""
    from noseprint.circuits.proving import points_per_input

    assert ctx.srs is not None and ctx.circuits is not None
    commitment = ctx.manifest.data["commitment"]
    if commitment["scheme"] != SCHEME or commitment["input_scale"] != INPUT_SCALE:
        raise CheckFailed("commitment", f"the commitment scheme is not {SCHEME} at input scale {INPUT_SCALE}")
    tensors = commitment["tensors"]
    if sha256_bytes(canonical_json(tensors)) != commitment["digest"]:
        raise CheckFailed("commitment", "the commitment digest does not match the committed tensors listed")
    pieces = committed_pieces(ctx.circuits.chunks)
    if len(tensors) != len(pieces):
        raise CheckFailed(
            "commitment", f"the manifest commits to {len(tensors)} tensors; the chunk plan has {len(pieces)}"
        )
    if [(t["name"], t["shape"]) for t in tensors] != [(p.name, list(p.committed_shape)) for p in pieces]:
        raise CheckFailed("commitment", "the committed tensors do not match the chunk plan")
    ctx.chunk_usable_rows = _chunk_usable_rows(ctx)
    listed = {t["name"]: list(t["points"]) for t in tensors}
    for chunk, usable in zip(ctx.circuits.chunks, ctx.chunk_usable_rows, strict=True):
        for piece in chunk.pieces:
            count = points_per_input(math.prod(piece.committed_shape), usable)
            if len(listed[piece.name]) != count:
                raise CheckFailed(
                    "commitment", f"{piece.name} has {len(listed[piece.name])} commitment points, not {count}"
                )
    return listed


def _commitments_match(ctx: Context, relative: str, inputs: list[list[str]], outputs: list[list[str]]) -> bool:
    from noseprint.circuits.proving import commitments_match

    try:
        return commitments_match(ctx.path(relative), inputs, outputs)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return False


def check_commitment(ctx: Context) -> None:
    """Every link, exactly: each chunk proof's committed inputs are the model commitment's pieces that chunk
    takes (then its output blinding), its committed output is the one listed; the encode proof's committed
    inputs are every chunk's output, in chunk order, then the owner limbs. Counts first, then the points."""
    from noseprint.circuits.proving import points_per_input

    assert ctx.circuits is not None
    tensors = _tensor_points(ctx)
    chunks, listed = ctx.circuits.chunks, ctx.manifest.chunk_proofs
    if len(listed) != len(chunks):
        raise CheckFailed("commitment", f"the bundle has {len(listed)} chunk proofs; the chunk plan has {len(chunks)}")
    for chunk, entry, usable in zip(chunks, listed, ctx.chunk_usable_rows, strict=True):
        if entry["name"] != chunk.name or entry["file"] != chunk_proof_file(chunk.name):
            raise CheckFailed("commitment", f"chunk proof {chunk.index} is listed as {entry['name']}, not {chunk.name}")
        partial_points = points_per_input(math.prod(chunk.shape.output_shape), usable)
        if len(entry["output_points"]) != partial_points or len(entry["blinding_points"]) != 1:
            raise CheckFailed("commitment", f"chunk {chunk.name} lists the wrong number of commitment points")
        _proof_json(ctx, entry["file"], f"chunk {chunk.name}'s proof")  # a readable proof, before its links
        inputs = [tensors[piece.name] for piece in chunk.pieces] + [entry["blinding_points"]]
        if not _commitments_match(ctx, entry["file"], inputs, [entry["output_points"]]):
            raise CheckFailed(
                "commitment",
                f"chunk {chunk.name}'s proof is not about its committed weights and output (a chunk replaced, "
                "moved or taken from another bundle, or a link changed)",
            )
    encode = ctx.manifest.encode_proof
    if len(encode["owner_points"]) != 1:
        raise CheckFailed("commitment", "the encode proof lists the wrong number of owner commitment points")
    links = [entry["output_points"] for entry in listed] + [encode["owner_points"]]
    if not _commitments_match(ctx, encode["file"], links, []):
        raise CheckFailed("commitment", "the encode proof does not take in the chunks' outputs, in chunk order")
    ctx.report.facts["model_commitment"] = ctx.manifest.commitment_digest


def check_proof(ctx: Context) -> None:
    """Every proof verifies against the key derived here; the first that does not is named."""
    from noseprint.circuits.proving import verify_many

    assert ctx.keys is not None and ctx.srs is not None and ctx.circuits is not None
    jobs = []
    for chunk, entry in zip(ctx.circuits.chunks, ctx.manifest.chunk_proofs, strict=True):
        _proof_json(ctx, entry["file"], f"chunk {chunk.name}'s proof")
        keys = ctx.chunk_keys[ctx.circuits.shapes.index(chunk.shape)]
        jobs.append((chunk.name, ctx.path(entry["file"]), keys))
    _proof_json(ctx, ctx.manifest.encode_proof["file"], "the encode proof")
    jobs.append(("encode", ctx.path(ctx.manifest.encode_proof["file"]), ctx.keys))
    failed = verify_many(jobs, ctx.srs)
    if failed is not None:
        what = "the encode proof" if failed == "encode" else f"chunk {failed}'s proof"
        raise CheckFailed("proof", f"{what} does not verify against the derived verification key")
    ctx.report.facts["proofs_verified"] = len(jobs)
