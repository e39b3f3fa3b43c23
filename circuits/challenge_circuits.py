"""The inference circuits, built from public facts, and the integers the whole-model commitment binds.

Every inference circuit is compiled at the fingerprint bundle's logrows: a `polycommit` commitment depends on
it, and the layer proofs take the fingerprint's own pieces in. Four circuits serve any challenge of one
length (`circuits.challenge_graph`): embed, layer (every layer of a model shares it, so one key), head (every
head block) and link. Each is cached by what it was built from, like the chunk circuits.

Values: each tensor at unit RMS, quantised at the input scale (`circuits.commitment.quantise`, exactly the
fingerprint's rule); a piece is a block of rows of its tensor, zero-padded past the vocabulary's end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import noseprint.circuits.srs as srs_store
import numpy as np
from noseprint.circuits.build import BuiltCircuit, cached, probe
from noseprint.circuits.commitment import quantise
from noseprint.circuits.keys import Keys
from noseprint.circuits.settings import INPUT_SCALE, run_args_dict
from noseprint.core.chunks import BlockPiece, Chunking
from noseprint.core.layout import Piece
from noseprint.core.whole_model import (
    LAYER_SCALES,
    MODEL_SCALES,
    PART_KINDS,
    SCALE_BITS,
    SCALE_SLOTS,
    InferenceShape,
    LayerPart,
    LayerPieces,
    PartSizes,
    embed_block_of,
    layer_parts,
    layer_pieces,
    whole_layer,
)
from noseprint.models.full_model import FullModel

INFERENCE_REBASE_MULTIPLIER = 1
"""Rescale every product back to scale 8. EZKL looks a non-linearity up at its input's scale in a table over
`lookup_range` (±2^15): at scale 8 the softmax and SiLU inputs fit (|x| < 128); at scale 16 they would not,
and a value missing from the table makes EZKL 23.0.5's prover hang (zkonduit/ezkl#1029). Costs precision:
about 1e-2 of the residual's RMS per layer, against 1e-4 at scale 16 (BENCHMARKS.md, "Challenge inference")."""
MIN_INFERENCE_LOGROWS = 14
"""The softmax's and SiLU's lookup tables hold 2^16 entries (EZKL's `lookup_range`): at logrows 12 they spread
over so many columns that proving a toy layer took more than 23 GB and was killed on this 24 GiB machine
(measured); at 14 it takes about 10 GB. A bundle proven at a smaller logrows must be proven again with larger
chunks (more fingerprint tokens, or a larger --chunk-weights)."""
HIDDEN_SCALE = INPUT_SCALE
"""Hidden states leave a proof at the input scale (every product is rescaled to it), so the next proof reads the
same integers, under the same commitment, as the same values. Checked when the circuits are built."""
LINK_TOLERANCE = 3.0 / (1 << INPUT_SCALE)
"""The link proof's bound on |fingerprint row - link · model row|: both sides are rounded to 2^-8 (half a
unit each, times the link factor near one) and the factor itself to 2^-18."""


def inference_run_args(logrows: int, public_output: bool) -> dict:
    """Committed inputs; hidden states leave committed, logits and the link deviation public."""
    return run_args_dict(logrows) | {
        "output_visibility": "public" if public_output else "polycommit",
        "scale_rebase_multiplier": INFERENCE_REBASE_MULTIPLIER,
    }


def scale_line(values: list[float]) -> np.ndarray:
    """Factors as the committed integers: σ·2^SCALE_BITS read at the input scale, padded to SCALE_SLOTS."""
    line = np.zeros((1, SCALE_SLOTS), dtype=np.int64)
    line[0, : len(values)] = np.rint(np.asarray(values) * float(1 << (SCALE_BITS + INPUT_SCALE)))
    return line


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def layer_factors(weights: dict[str, np.ndarray], shape: InferenceShape, eps: float, rms_e: float) -> list[float]:
    """The products of RMS values each of a layer's products is multiplied by (`core.whole_model.LAYER_SCALES`)."""
    r = {role: _rms(value) for role, value in weights.items()}
    factors = {
        "eps": eps / rms_e**2,
        "q": r["attn_norm"] * r["q"] / math.sqrt(shape.head_dim),
        "k": r["attn_norm"] * r["k"],
        "v": r["attn_norm"] * r["v"],
        "o": r["o"] / rms_e,
        "gate": r["ffn_norm"] * r["gate"],
        "up": r["ffn_norm"] * r["up"],
        "down": r["ffn_out"] / rms_e,
    }
    return [factors[name] for name in LAYER_SCALES]


def model_factors(model: FullModel, fingerprint_ids: list[int]) -> list[float]:
    rms_e = _rms(model.embedding)
    factors = {
        "eps": model.eps / rms_e**2,
        "head": _rms(model.final_norm) * _rms(model.head),
        "link": rms_e / _rms(model.embedding[fingerprint_ids]),
    }
    return [factors[name] for name in MODEL_SCALES]


def model_values(model: FullModel, fingerprinted: dict[int, int], fingerprint_ids: list[int]) -> dict[str, np.ndarray]:
    """Every committed integer matrix by tensor name: `embedding`, `head`, `model.final_norm`, `model.scales`,
    and per layer `model.layer{i}.{role}` and `model.layer{i}.scales` (norms also under the fingerprint's names,
    `layer{k}.attn_norm`, for the layers it reads)."""
    rms_e = _rms(model.embedding)
    values = {
        "embedding": quantise(model.embedding, INPUT_SCALE),
        "head": quantise(model.head, INPUT_SCALE),
        "model.final_norm": quantise(model.final_norm, INPUT_SCALE),
        "model.scales": scale_line(model_factors(model, fingerprint_ids)),
    }
    for index, weights in enumerate(model.layers):
        for role, value in weights.items():
            values[f"model.layer{index}.{role}"] = quantise(value, INPUT_SCALE)
        values[f"model.layer{index}.scales"] = scale_line(layer_factors(weights, model.shape, model.eps, rms_e))
        if index in fingerprinted:
            for norm in ("attn_norm", "ffn_norm"):
                values[f"layer{fingerprinted[index]}.{norm}"] = values[f"model.layer{index}.{norm}"]
    return values


def piece_ints(values: dict[str, np.ndarray], piece: Piece) -> np.ndarray:
    """The integers of one piece: a whole tensor, or a block of rows or columns (rows past the end are zero)."""
    if not isinstance(piece, BlockPiece):
        return values[piece.name]
    whole = values[piece.tensor]
    if piece.blinding_axis == 0:
        block = whole[piece.start : piece.stop]
        if block.shape[0] < piece.shape[0]:
            block = np.vstack([block, np.zeros((piece.shape[0] - block.shape[0], block.shape[1]), np.int64)])
    else:
        block = whole[:, piece.start : piece.stop]
    if block.shape != piece.shape:
        raise ValueError(f"{piece.name}: block of shape {block.shape}, the plan says {piece.shape}")
    return block


BUILDER_VERSION = 3
"""Bump when an inference graph or its settings change, so cached circuits are rebuilt."""


def _description(shape: InferenceShape, tokens: int) -> dict:
    """What an inference circuit is built from (its cache key, with the circuit's own name)."""
    rows = {"embed_rows": shape.embed_rows, "head_rows": shape.head_rows, "scale_bits": SCALE_BITS}
    return {"inference": shape.to_dict(), "tokens": tokens, "builder": BUILDER_VERSION} | rows


@dataclass(frozen=True)
class InferenceCircuits:
    """The circuits of one (model shape, chunking, challenge length, fingerprint token count): embed, head,
    link, and the layer's: `layer` for a layer proven whole, `attention` and `ffn` for one proven part by part
    (`core.whole_model.layer_parts`)."""

    shape: InferenceShape
    tokens: int
    layers: list[LayerPieces]
    embed: BuiltCircuit
    head: BuiltCircuit
    link: BuiltCircuit
    layer_circuits: dict[str, BuiltCircuit]
    logrows: int
    sizes: PartSizes | None
    """Blocks per layer proof (None: each layer is one proof)."""

    def parts(self, index: int) -> list[LayerPart]:
        """The proofs of layer `index` (`core.whole_model.layer_parts`)."""
        return layer_parts(self.layers[index], self.sizes)

    @property
    def all(self) -> dict[str, BuiltCircuit]:
        return {"embed": self.embed, **self.layer_circuits, "head": self.head, "link": self.link}


Spec = tuple[dict, Callable[[Path], None], bool]
"""A circuit's cache description, its ONNX export, and whether its output is public."""


def _layer_specs(
    shape: InferenceShape, chunking: Chunking, tokens: int, layer: LayerPieces, sizes: PartSizes | None
) -> dict[str, Spec]:
    """The circuits a layer is proven with: one per part kind (every part of a kind has one shape)."""
    import noseprint.circuits.challenge_graph as graph

    base = _description(shape, tokens) | {"chunking": chunking.to_dict()}
    specs: dict[str, Spec] = {}
    for part in layer_parts(layer, sizes):
        if part.kind in specs:
            continue
        shapes = [piece.committed_shape for piece in part.pieces]
        if part.kind == "layer":
            whole = whole_layer(layer)
            export = partial(graph.export_layer, shape, tokens, (whole.attention, whole.ffn), shapes)
            specs[part.kind] = (base | {"circuit": part.kind}, export, False)
            continue
        assert sizes is not None
        blocks = sizes.attention if part.kind == "attention" else sizes.ffn
        export = partial(graph.export_layer_part, shape, tokens, part.kind, blocks, chunking.kv_heads, shapes)
        specs[part.kind] = (base | {"circuit": part.kind, "blocks": blocks}, export, False)
    return specs


def _other_specs(shape: InferenceShape, tokens: int, fingerprint_tokens: int) -> dict[str, Spec]:
    import noseprint.circuits.challenge_graph as graph

    base = _description(shape, tokens)
    return {
        "embed": (base | {"circuit": "embed"}, partial(graph.export_embed, shape, tokens), False),
        "head": (base | {"circuit": "head"}, partial(graph.export_head, shape, tokens), True),
        "link": (
            base | {"circuit": "link", "tokens": fingerprint_tokens},
            partial(graph.export_link, shape, fingerprint_tokens),
            True,
        ),
    }


def build_inference(
    shape: InferenceShape,
    chunking: Chunking,
    fingerprinted: dict[int, int],
    tokens: int,
    fingerprint_tokens: int,
    logrows: int,
    sizes: PartSizes | None = None,
    cached_only: bool = False,
) -> InferenceCircuits:
    """Every inference circuit at `logrows` (the bundle's), built or found in the cache; layers proven in parts
    of `sizes` blocks (None: whole). `cached_only`: NotCached unless every one is in the cache already."""
    layers = layer_pieces(shape, chunking, fingerprinted)
    specs = _other_specs(shape, tokens, fingerprint_tokens) | _layer_specs(shape, chunking, tokens, layers[0], sizes)
    built = {
        name: cached(description, export, inference_run_args(logrows, public), cached_only)
        for name, (description, export, public) in specs.items()
    }
    for name, circuit in built.items():
        if not specs[name][2] and circuit.output_scale != HIDDEN_SCALE:
            raise RuntimeError(f"the {name} circuit outputs at scale {circuit.output_scale}, not {HIDDEN_SCALE}")
    layer_circuits = {name: built.pop(name) for name in list(built) if name in PART_KINDS}
    return InferenceCircuits(
        shape, tokens, layers, layer_circuits=layer_circuits, logrows=logrows, sizes=sizes, **built
    )


def probe_rows(
    shape: InferenceShape, chunking: Chunking, tokens: int, sizes: PartSizes | None = None
) -> dict[str, int]:
    """EZKL's row counts of the layer circuits (`layer`, or `attention` and `ffn` for parts of `sizes` blocks)
    and the head circuit (for costing; exported and counted once, cached)."""
    specs = _layer_specs(shape, chunking, tokens, layer_pieces(shape, chunking, {})[0], sizes)
    specs["head"] = _other_specs(shape, tokens, 1)["head"]
    rows = {}
    for name, (description, export, public) in specs.items():
        run_args = partial(inference_run_args, public_output=public)
        rows[name] = int(probe(description, export, run_args)["num_rows"])
    return rows


# -- committed integers as EZKL field elements and points -------------------------------------------------

FIELD_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617
"""BN254's scalar field: EZKL's field elements."""
FELT_BYTES = 32
SIGN_BIT = 0x80
"""halo2's compressed G1 point: x little-endian, y's parity in the top bit of the last byte."""
ONE = 1 << INPUT_SCALE
"""1.0 at the input scale: a one-hot row's entry."""


def int_felt(value: int) -> str:
    """An integer as EZKL's field element string (little-endian hex of value mod p)."""
    return (int(value) % FIELD_MODULUS).to_bytes(FELT_BYTES, "little").hex()


def felts(matrix: np.ndarray) -> list[str]:
    return [int_felt(v) for v in np.asarray(matrix, dtype=np.int64).ravel().tolist()]


def compressed(point: Any) -> str:
    """EZKL's affine point (x, y as little-endian hex) in the compressed form its witnesses and proofs carry."""
    x = bytearray(bytes.fromhex(point.x))
    if bytes.fromhex(point.y)[0] & 1:
        x[-1] |= SIGN_BIT
    return bytes(x).hex()


def commit_points(committed: np.ndarray, keys: Keys, srs: srs_store.Srs) -> list[str]:
    """The KZG points EZKL's `polycommit` gives these integers as a circuit input at this key's logrows."""
    import ezkl

    return [compressed(p) for p in ezkl.kzg_commit(felts(committed), str(keys.vk), str(keys.settings), str(srs.path))]


def onehot(shape: InferenceShape, tokens: list[int]) -> np.ndarray:
    """Each token's row inside its embedding block, as committed integers (public: the verifier recomputes its
    commitment from the challenge)."""
    rows = np.zeros((len(tokens), shape.embed_rows), dtype=np.int64)
    for position, token in enumerate(tokens):
        rows[position, embed_block_of(shape, token)[1]] = ONE
    return rows
