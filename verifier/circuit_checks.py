"""The checks of `noseprint verify` on what the verifier derives itself: the SRS it trusts, the circuits
rebuilt from the layout (within the budget), their verification keys, and that every commitment point hides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import noseprint.circuits.srs as srs_store
import noseprint.encoder.release as release
from noseprint.circuits.budget import OverBudget, estimated_chunked_rows, refuse_over_budget
from noseprint.circuits.build import BuiltCircuit
from noseprint.circuits.keys import Keys
from noseprint.circuits.settings import chunk_run_args_dict, encode_run_args_dict
from noseprint.core.fileio import parse_json_strict, read_inside, sha256_file
from noseprint.core.layout import MIN_BLINDING_VALUES, ROW, unhidden_points
from noseprint.verifier.report import CheckFailed

if TYPE_CHECKING:
    from noseprint.verifier.context import Context


def check_srs(ctx: Context) -> None:
    logrows = ctx.manifest.logrows
    ctx.srs = srs_store.choose(logrows, ctx.srs_file)
    claimed = ctx.manifest.srs_sha256
    if claimed != ctx.srs.sha256:
        raise CheckFailed(
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
    from noseprint.circuits.chunked import build_chunked
    from noseprint.circuits.worker import derive_in_worker, fingerprint_job, fingerprint_ready

    assert ctx.srs is not None
    layout, chunking = ctx.layout, ctx.manifest.chunking
    if not fingerprint_ready(layout, chunking, ctx.srs):
        try:
            biggest = max(estimated_chunked_rows(layout, chunking))
            refuse_over_budget(biggest, "this bundle's largest circuit", ctx.budget)
            derive_in_worker(fingerprint_job(layout, chunking, ctx.srs), ctx.budget, "this bundle's circuits")
        except OverBudget as exc:
            raise CheckFailed("circuit", str(exc)) from None
        ctx.derived_in_worker = True
    ctx.circuits = circuits = build_chunked(layout, chunking, release.ENCODER, release.RELEASED_ENCODER_DIGEST)
    declared = ctx.manifest.circuit
    if declared["logrows"] != circuits.logrows or declared["partial_scale"] != circuits.partial_scale:
        raise CheckFailed("circuit", "the circuits' logrows or partial scale in the manifest are not the ones derived")
    entries = ctx.manifest.chunk_circuits
    if len(entries) != len(circuits.shapes):
        raise CheckFailed(
            "circuit", f"the manifest lists {len(entries)} chunk circuits; the chunk plan has {len(circuits.shapes)}"
        )
    for index, (entry, shape, circuit) in enumerate(
        zip(entries, circuits.shapes, circuits.chunk_circuits, strict=True)
    ):
        if entry.get("shape") != shape.to_dict() or entry["run_args"] != chunk_run_args_dict(circuits.logrows):
            raise CheckFailed("circuit", f"chunk circuit {index} is not the shape or settings the chunk plan derives")
        if entry["circuit_id"] != circuit.circuit_id:
            raise CheckFailed("circuit", f"chunk circuit {index}'s id is not the one derived from its shape")
    encode = ctx.manifest.encode_circuit
    if encode["run_args"] != encode_run_args_dict(circuits.logrows, circuits.partial_scale):
        raise CheckFailed("circuit", "the encode circuit's settings in the manifest are not the ones noseprint derives")
    if encode["circuit_id"] != circuits.encode.circuit_id or encode.get("output_scale") != circuits.encode.output_scale:
        raise CheckFailed("circuit", "the encode circuit id in the manifest is not the one derived from its layout")
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
    from noseprint.circuits.keys import ensure_keys

    assert ctx.srs is not None
    keys = ensure_keys(circuit, ctx.srs, need_pk=False)
    bundled = sha256_file(ctx.path(entry["vk_file"]))
    if bundled != keys.vk_sha256 or entry["vk_sha256"] != keys.vk_sha256:
        raise CheckFailed("keys", f"the bundle's verification key of {what} is not the one derived from its circuit")
    try:
        settings = parse_json_strict(read_inside(ctx.bundle, entry["settings_file"]), allow_floats=True)
    except (OSError, ValueError) as exc:
        raise CheckFailed("keys", f"{entry['settings_file']} is unreadable ({exc})") from None
    if settings != parse_json_strict(keys.settings.read_bytes(), allow_floats=True):
        raise CheckFailed("keys", f"{entry['settings_file']} is not the settings noseprint derives for {what}")
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
    from noseprint.circuits.proving import usable_commit_rows

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
                raise CheckFailed(
                    "hiding",
                    f"{name}'s commitment point {bare[0]} carries fewer than {MIN_BLINDING_VALUES} blinding values "
                    f"(columns of {rows:,} rows): a guessed model could be tested against it",
                )
    ctx.report.facts["min_blinding_per_point"] = MIN_BLINDING_VALUES
