"""The whole-model commitment and the inference proofs' shapes: which tensors, cut into which pieces.

A fingerprint proof commits only to what HuRef's terms read (a few embedding rows, the last layers). To show
that the committed weights are a working model, and the one being served, every tensor the forward pass
reads is committed too, with one digest over all of them (README, "Challenge inference"):

    model.embedding.{b}     blocks of `embed_rows` rows of the token embedding (last block zero-padded)
    layer pieces            every layer's norms and weight blocks, cut exactly as the chunked fingerprint cuts
                            them (`core.chunks`); in a fingerprinted layer these ARE the fingerprint's pieces
                            (same integers, same blinding, same commitment), so nothing links them but equality
    model.layer{i}.scales   the layer's per-tensor scale factors (below)
    model.final_norm, model.head.{b}, model.scales

Every tensor is committed at unit root-mean-square (`circuits.commitment.quantise`), as the fingerprint
commits its tensors; the forward pass needs the magnitudes back, so each layer commits its scale factors,
the products of RMS values the layer's arithmetic needs, each times 2^SCALE_BITS (a circuit reads an input
at 8 fractional bits; these are small numbers and need more). The residual stream is carried in units of
the embedding's RMS, so the embedding rows enter the circuit as committed.

This module is pure shapes and names: the prover cuts the model with it, the verifier rebuilds the circuits
from it and the manifest alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from math import ceil

from noseprint.core.chunks import BlockPiece, Chunking, plan_chunks
from noseprint.core.fileio import canonical_json, sha256_bytes
from noseprint.core.layout import MAX_UNUSABLE_ROWS, ROW, CircuitLayout, LayerShape, Piece

SCALE_BITS = 10
"""A scale factor σ is committed as σ·2^SCALE_BITS (the circuit reads it at 2^-8 resolution: σ to 2^-18)."""
SCALE_SLOTS = 16
"""Scale vectors are padded to this length: a committed line needs 16 blinding values."""
LAYER_SCALES = ("eps", "q", "k", "v", "o", "gate", "up", "down")
"""A layer's factors, in order: the norm's ε in residual units, then the factor each product is multiplied by
(q carries 1/sqrt(head_dim); o and down divide by the embedding's RMS, the residual stream's unit)."""
LOGIT_GAIN_BITS = 8
"""The head proofs output logits·2^LOGIT_GAIN_BITS at the input scale: their last rounding is at 2^-16. At 2^-8
it alone moved the proven toy's top-k gaps (0.037 nats, 9.5 units of 2^-8) by 7 %, more than a fine-tune moves
them, and a temperature (a flattening server, a smaller committed head factor) could push any model there. Now
what is left is the hidden states' error (relative, so no temperature changes it: 1.9 % of the toy's logit
spread) and the head product's own rounding at 2^-8 before the factor (the head factor times 2^-9: 1e-4 of a
toy logit)."""
MODEL_SCALES = ("eps", "head", "link")
"""The final norm's ε, the head's factor, and rms(E)/rms(E_selected): the fingerprint's embedding rows are
quantised at their own RMS, the model's at the whole embedding's; the link proof checks the two agree."""
BLOCK_WEIGHTS = 4096
"""Weights per embedding block (rows = BLOCK_WEIGHTS // hidden, at least one): a challenge token costs its
block in the embedding proof, and the fingerprint's tokens theirs in the link proof."""
HEAD_BLOCK_WEIGHTS = 65_536
"""Weights per output-head block: one head proof per block per prompt."""
MAX_HEAD_ROWS = 256
"""A head block's logits are public, one instance each (tokens x rows): an instance column holds fewer than
2^logrows values, and small models prove at logrows 12-14."""
SUPPORTED_TYPES = ("llama", "mistral")
"""Forward passes the inference circuits implement: RMSNorm, rotary attention with grouped K/V heads, a gated
SiLU FFN, no biases."""


@dataclass(frozen=True)
class InferenceShape:
    """Everything the inference circuits depend on, besides the challenge's length."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    rope_theta: int
    point_values: int = field(default=0, compare=False)
    """The fewest values one commitment point holds at the bundle's logrows (`at_logrows`), or 0 for shape
    arithmetic alone. Embedding and head blocks are blinded by one row, so each must fit in one point: a block
    spread over several points leaves all but the last without blinding (issue 33)."""

    def at_logrows(self, logrows: int) -> InferenceShape:
        """This shape with its blocks cut to fit one commitment point at `logrows`."""
        return replace(self, point_values=(1 << logrows) - MAX_UNUSABLE_ROWS)

    def _one_point(self, rows: int) -> int:
        """At most `rows`, and few enough that the block and its blinding row fill less than one point."""
        if not self.point_values:
            return rows
        fits = (self.point_values - 1) // self.hidden - 1
        if fits < 1:
            raise ValueError(f"a {self.hidden}-wide row and its blinding exceed one commitment point")
        return min(rows, fits)

    @property
    def embed_rows(self) -> int:
        return self._one_point(max(1, BLOCK_WEIGHTS // self.hidden))

    @property
    def head_rows(self) -> int:
        return self._one_point(max(1, min(MAX_HEAD_ROWS, HEAD_BLOCK_WEIGHTS // self.hidden)))

    @property
    def embed_blocks(self) -> int:
        return ceil(self.vocab / self.embed_rows)

    @property
    def head_blocks(self) -> int:
        return ceil(self.vocab / self.head_rows)

    def layer_shape(self) -> LayerShape:
        return LayerShape(self.hidden, self.heads, self.kv_heads, self.head_dim, self.ffn, gated=True)

    def to_dict(self) -> dict[str, int]:
        data = asdict(self)
        del data["point_values"]  # the bundle's logrows says it
        return data

    @staticmethod
    def from_dict(data: dict) -> InferenceShape:
        names = ("vocab", "hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "rope_theta")
        if not isinstance(data, dict) or set(data) != set(names):
            raise ValueError(f"an inference shape has exactly {', '.join(names)}")
        values = [data[name] for name in names]
        if any(type(v) is not int or v < 1 for v in values):
            raise ValueError("inference shape values are positive integers")
        shape = InferenceShape(*values)
        if shape.heads % shape.kv_heads or shape.head_dim % 2:
            raise ValueError("heads must be a multiple of kv_heads and head_dim even")
        return shape


@dataclass(frozen=True)
class LayerPieces:
    """One layer's committed pieces in the layer circuit's input order."""

    attn_norm: Piece
    q: tuple[Piece, ...]
    k: tuple[Piece, ...]
    v: tuple[Piece, ...]
    o: tuple[Piece, ...]
    ffn_norm: Piece
    gate: tuple[Piece, ...]
    up: tuple[Piece, ...]
    down: tuple[Piece, ...]
    scales: Piece

    def ordered(self) -> list[Piece]:
        return [
            self.attn_norm, *self.q, *self.k, *self.v, *self.o, self.ffn_norm, *self.gate, *self.up, *self.down,
            self.scales,
        ]  # fmt: skip


PART_KINDS = ("layer", "attention", "ffn")
"""How a layer is proven: whole (one proof), or part by part: its attention blocks a few at a time, then its FFN
blocks a few at a time, each proof adding its blocks' output to the running residual (`layer_parts`)."""
DEFAULT_PART_WEIGHTS = 1 << 24
"""The most weights one layer proof takes unless the owner says otherwise (`prove-inference --part-weights`).
Any layer of the models this machine can prove is one proof (MiniLM's: 1.8M weights); a 7B layer's 202M weights
would be 7.2 times EZKL's largest circuit whole (250M rows, `python -m bench.inference_rows`), and in parts of at
most 2^24 weights each part stays under 2^26 rows with its activations (BENCHMARKS.md, "What a layer costs")."""


@dataclass(frozen=True)
class PartSizes:
    """How many of the chunking's blocks one layer proof takes: attention blocks (K/V heads with their query
    heads), FFN blocks (rows). All of both: the layer is one proof."""

    attention: int
    ffn: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @staticmethod
    def from_dict(data: object) -> PartSizes:
        if not isinstance(data, dict) or set(data) != {"attention", "ffn"}:
            raise ValueError("layer parts are attention and ffn block counts")
        values = [data["attention"], data["ffn"]]
        if any(type(v) is not int or v < 1 for v in values):
            raise ValueError("layer part sizes are positive integers")
        return PartSizes(*values)


@dataclass(frozen=True)
class LayerPart:
    """One proof of a layer: its circuit kind, its index among the parts of its kind, and its committed pieces
    in circuit order (after the hidden states: the whole layer's `h`; a part's `h` and running residual)."""

    kind: str
    block: int
    pieces: tuple[Piece, ...]

    @property
    def suffix(self) -> str:
        """Appended to the layer's proof name: none for a whole layer, `.attention{j}` or `.ffn{j}` for a part."""
        return "" if self.kind == "layer" else f".{self.kind}{self.block}"


def whole_layer(layer: LayerPieces) -> PartSizes:
    return PartSizes(attention=len(layer.q), ffn=len(layer.gate))


def _block_weights(*pieces: Piece) -> int:
    return sum(math.prod(piece.shape) for piece in pieces)


def choose_part_sizes(layer: LayerPieces, max_weights: int) -> PartSizes:
    """The most blocks of each kind one proof can take within `max_weights` weights (at least one block; a
    divisor of the blocks, so every part of a kind has one shape and one key)."""
    attention = _block_weights(layer.q[0], layer.k[0], layer.v[0], layer.o[0])
    ffn = _block_weights(layer.gate[0], layer.up[0], layer.down[0])
    sizes = whole_layer(layer)
    return PartSizes(_largest_divisor(sizes.attention, max_weights // attention),
                     _largest_divisor(sizes.ffn, max_weights // ffn))  # fmt: skip


def _largest_divisor(count: int, at_most: int) -> int:
    return max([k for k in range(1, count + 1) if count % k == 0 and k <= at_most], default=1)


def part_sizes_errors(layer: LayerPieces, sizes: PartSizes) -> list[str]:
    """Why `sizes` cannot tile the layer's blocks into parts of one shape (empty if it can)."""
    whole = whole_layer(layer)
    return [
        f"{kind} parts of {size} blocks do not tile the layer's {count}"
        for kind, size, count in (("attention", sizes.attention, whole.attention), ("ffn", sizes.ffn, whole.ffn))
        if size > count or count % size
    ]


def layer_parts(layer: LayerPieces, sizes: PartSizes | None = None) -> list[LayerPart]:
    """The proofs of one layer. A layer too big for one proof (`DEFAULT_PART_WEIGHTS`) is proven in parts of
    `sizes` blocks of the fingerprint's chunking: attention parts first (q, k, v by rows, o by columns: the output
    of those heads), then FFN parts (gate and up by rows, down by columns). Each adds its output to the running
    residual. A layer whose `sizes` take every block (the default) is one proof:
    splitting it would only cost (each part recomputes its norm and pays its activations' rescaling)."""
    if sizes is None or sizes == whole_layer(layer):
        return [LayerPart("layer", 0, tuple(layer.ordered()))]
    parts = []
    for j in range(len(layer.q) // sizes.attention):
        span = slice(j * sizes.attention, (j + 1) * sizes.attention)
        blocks = (*layer.q[span], *layer.k[span], *layer.v[span], *layer.o[span])
        parts.append(LayerPart("attention", j, (layer.attn_norm, *blocks, layer.scales)))
    for j in range(len(layer.gate) // sizes.ffn):
        span = slice(j * sizes.ffn, (j + 1) * sizes.ffn)
        blocks = (*layer.gate[span], *layer.up[span], *layer.down[span])
        parts.append(LayerPart("ffn", j, (layer.ffn_norm, *blocks, layer.scales)))
    return parts


def scales_piece(name: str) -> Piece:
    return Piece(name, (1, SCALE_SLOTS), ROW)


def embedding_piece(shape: InferenceShape, block: int) -> BlockPiece:
    rows = shape.embed_rows
    return BlockPiece(
        f"model.embedding.{block}", (rows, shape.hidden), ROW, "embedding", block * rows, (block + 1) * rows
    )


def head_piece(shape: InferenceShape, block: int) -> BlockPiece:
    rows = shape.head_rows
    return BlockPiece(f"model.head.{block}", (rows, shape.hidden), ROW, "head", block * rows, (block + 1) * rows)


def final_norm_piece(shape: InferenceShape) -> Piece:
    return Piece("model.final_norm", (1, shape.hidden), ROW)


def model_scales_piece() -> Piece:
    return scales_piece("model.scales")


def layer_pieces(shape: InferenceShape, chunking: Chunking, fingerprinted: dict[int, int]) -> list[LayerPieces]:
    """Every layer's pieces, cut by the fingerprint's chunking. `fingerprinted` maps a model layer index to
    its index in the fingerprint's layout: those layers' pieces carry the fingerprint's own names."""
    layout = CircuitLayout(tokens=1, hidden=shape.hidden, layers=(shape.layer_shape(),) * shape.layers)
    by_layer: dict[int, dict[str, list[Piece]]] = {}
    for chunk in plan_chunks(layout, chunking):
        roles = by_layer.setdefault(chunk.layer, {})
        for piece in chunk.pieces[1:]:  # the fingerprint's embedding rows are not a layer's
            role = piece.name.split(".")[1]
            named = _renamed(piece, chunk.layer, fingerprinted)
            if named not in roles.setdefault(role, []):
                roles[role].append(named)
    layers = []
    for index in range(shape.layers):
        roles = by_layer[index]
        layers.append(
            LayerPieces(
                roles["attn_norm"][0],
                tuple(roles["q"]),
                tuple(roles["k"]),
                tuple(roles["v"]),
                tuple(roles["o"]),
                roles["ffn_norm"][0],
                tuple(roles["gate"]),
                tuple(roles["up"]),
                tuple(roles["ffn_out"]),
                scales_piece(f"model.layer{index}.scales"),
            )  # fmt: skip
        )
    return layers


def _renamed(piece: Piece, layer: int, fingerprinted: dict[int, int]) -> Piece:
    """`layer{i}.role[.j]` as the fingerprint names it (layout index) or as the model commitment does."""
    rest = piece.name.split(".", 1)[1]
    name = f"layer{fingerprinted[layer]}.{rest}" if layer in fingerprinted else f"model.layer{layer}.{rest}"
    if isinstance(piece, BlockPiece):
        tensor_rest = piece.tensor.split(".", 1)[1]
        tensor = f"model.layer{layer}.{tensor_rest}"
        return BlockPiece(name, piece.shape, piece.blinding_axis, tensor, piece.start, piece.stop)
    return Piece(name, piece.shape, piece.blinding_axis)


def all_pieces(shape: InferenceShape, chunking: Chunking, fingerprinted: dict[int, int]) -> list[Piece]:
    """The whole-model commitment's pieces, in a fixed order (the digest is over this order)."""
    pieces: list[Piece] = [embedding_piece(shape, b) for b in range(shape.embed_blocks)]
    for layer in layer_pieces(shape, chunking, fingerprinted):
        pieces += layer.ordered()
    pieces += [final_norm_piece(shape), *(head_piece(shape, b) for b in range(shape.head_blocks))]
    return [*pieces, model_scales_piece()]


def fingerprint_map(layer_indices: list[int]) -> dict[int, int]:
    """Model layer index -> the fingerprint layout's index of that layer."""
    return {layer: position for position, layer in enumerate(layer_indices)}


def embed_block_of(shape: InferenceShape, token: int) -> tuple[int, int]:
    """(block, row inside it) of a token's embedding row."""
    return divmod(token, shape.embed_rows)


def whole_model_digest(scheme: str, fingerprint_digest: str, pieces: list[dict]) -> str:
    """One digest over the fingerprint's commitment and every other piece's points: the whole model's root."""
    return sha256_bytes(canonical_json({"scheme": scheme, "fingerprint": fingerprint_digest, "pieces": pieces}))


def ablations(layers: int, fingerprinted: list[int]) -> list[tuple[int, list[int]]]:
    """The ablation chains every prompt is also proven along: for each fingerprinted layer j, the model without
    it (j, the layers proven after it: j+1 .. layers-1, then the head). The verifier requires each fingerprinted
    layer to change the proven logits: a layer that does nothing (zero output factors, say) could carry any
    fingerprint while the model served is another's (README, "Challenge inference")."""
    return [(j, list(range(j + 1, layers))) for j in sorted(fingerprinted)]


def chain_prefix(prompt: int, without: int | None) -> str:
    """Proof names: `p{prompt}.` for the model's own chain, `p{prompt}.without{j}.` for its ablation chain."""
    return f"p{prompt}." if without is None else f"p{prompt}.without{without}."
