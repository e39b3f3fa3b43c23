"""Build the circuits of a chunked fingerprint from public facts: one per chunk shape, and the encode circuit.

Linked circuits must share logrows (a `polycommit` commitment is computed over 2^logrows rows, so the
same values committed at another size give another point): every chunk circuit is first exported and its
rows counted, then all circuits are compiled at the largest logrows a chunk needs. The chunks are the many
proofs, and a proof's fixed cost follows 2^logrows; the one encode proof spreads over more column blocks
instead (measured: BENCHMARKS.md, "Chunked proofs"). The encode circuit takes the chunks' outputs at their
output scale, which EZKL decides; all chunk shapes must agree on it.

The prover and the verifier both call `build_chunked`; each circuit is cached by what it was built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from noseprint.circuits.build import (
    BuiltCircuit,
    Export,
    NotCached,
    cached,
    probe,
)
from noseprint.circuits.settings import (
    EZKL_MAX_LOGROWS,
    choose_logrows,
    chunk_run_args_dict,
    encode_run_args_dict,
)
from noseprint.core.chunks import (
    Chunk,
    Chunking,
    ChunkShape,
    distinct_shapes,
    hiding_logrows,
    plan_chunks,
    terms_chunks,
)
from noseprint.core.layout import CircuitLayout


@dataclass(frozen=True)
class ChunkedCircuits:
    """Every circuit of one chunked fingerprint, all at one logrows."""

    chunks: list[Chunk]
    shapes: list[ChunkShape]
    chunk_circuits: list[BuiltCircuit]
    """One per shape, in `shapes` order."""
    encode: BuiltCircuit
    logrows: int
    partial_scale: int
    """Fixed-point scale of the chunks' outputs, which is the encode circuit's input scale."""

    def circuit_of(self, chunk: Chunk) -> BuiltCircuit:
        return self.chunk_circuits[self.shapes.index(chunk.shape)]

    @property
    def all(self) -> list[BuiltCircuit]:
        return [*self.chunk_circuits, self.encode]


def _chunk_export(shape: ChunkShape) -> Export:
    from noseprint.circuits.chunk_graph import export_chunk_onnx

    return lambda path: export_chunk_onnx(shape, path)


def _encode_export(layout: CircuitLayout, per_term: list[int], shape: ChunkShape, encoder_weights: Path) -> Export:
    def export(path: Path) -> None:
        from noseprint.circuits.chunk_graph import export_encode_onnx
        from noseprint.encoder.network import load_encoder

        export_encode_onnx(layout, per_term, shape.output_shape, load_encoder(encoder_weights), path)

    return export


def built_chunked(layout: CircuitLayout, chunking: Chunking, encoder_digest: str) -> ChunkedCircuits | None:
    """The circuits if every one of them is in the cache already, else None (nothing is built)."""
    import noseprint.encoder.release as release

    try:
        return build_chunked(layout, chunking, release.ENCODER, encoder_digest, cached_only=True)
    except NotCached:
        return None


def build_chunked(
    layout: CircuitLayout, chunking: Chunking, encoder_weights: Path, encoder_digest: str, cached_only: bool = False
) -> ChunkedCircuits:
    """Every circuit of this layout and chunking, built (or found in the cache) at one common logrows."""
    chunks = plan_chunks(layout, chunking)
    shapes = distinct_shapes(chunks)
    per_term = terms_chunks(chunks)
    probes = [probe({"chunk": s.to_dict()}, _chunk_export(s), chunk_run_args_dict, cached_only) for s in shapes]
    scales = {p["output_scales"][0] for p in probes}
    if len(scales) != 1:
        raise RuntimeError(f"the chunk circuits disagree on their output scale ({sorted(scales)})")
    partial_scale = scales.pop()
    encode_description = {
        "encode": {"layout": layout.to_dict(), "chunks_per_term": per_term, "output_shape": shapes[0].output_shape},
        "encoder": encoder_digest,
    }
    encode_export = _encode_export(layout, per_term, shapes[0], encoder_weights)
    # Sized by the chunks, the many proofs: the one encode proof spreads over more columns if it needs them.
    # So logrows does not depend on the term shifts either, which are settled after the chunks are proven.
    logrows = hiding_logrows(chunks, max(choose_logrows(p["num_rows"]) for p in probes), EZKL_MAX_LOGROWS)
    built = [
        cached({"chunk": s.to_dict()}, _chunk_export(s), chunk_run_args_dict(logrows), cached_only) for s in shapes
    ]
    encode_args = encode_run_args_dict(logrows, partial_scale)
    encode = cached(encode_description, encode_export, encode_args, cached_only)
    return ChunkedCircuits(chunks, shapes, built, encode, logrows, partial_scale)


def probe_rows(shape: ChunkShape) -> int:
    """EZKL's row count of the chunk circuit of `shape` (exported and counted once, then cached: seconds), so a
    proof can be costed before anything is compiled; `build_chunked` chooses logrows from the same count."""
    return int(probe({"chunk": shape.to_dict()}, _chunk_export(shape), chunk_run_args_dict)["num_rows"])
