"""A layer proven part by part computes what the whole layer computes.

A model whose chunking cuts a layer into several blocks is proven one attention block and one FFN block at a
time (`core.whole_model.layer_parts`), each proof adding its block to the running residual. These tests run the
circuits' own torch graphs (what is exported to ONNX and compiled) in float on a real toy LLaMA's committed
integers: the chain of parts equals the whole-layer circuit. The proofs themselves, and the links between them:
tests/test_inference_proofs.py (`test_a_model_proven_part_by_part_passes`, slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from noseprint.circuits.challenge_circuits import model_values, piece_ints
from noseprint.circuits.challenge_graph import AttentionPartCircuit, FfnPartCircuit, LayerCircuit
from noseprint.circuits.commitment import random_blinding, with_blinding
from noseprint.circuits.settings import INPUT_SCALE
from noseprint.core.chunks import Chunking
from noseprint.core.layout import Piece
from noseprint.core.whole_model import LayerPieces, PartSizes, layer_parts, layer_pieces
from noseprint.models.demo_model import DemoShape, write_demo_model
from noseprint.models.full_model import FullModel, read_full_model

TOKENS = 8
SHAPE = DemoShape(hidden=16, heads=4, kv_heads=2, ffn=32, layers=2, vocab_words=60)
CHUNKING = Chunking(kv_heads=1, ffn_rows=8)
"""Two attention blocks (one K/V head and its two query heads each) and four FFN blocks per layer."""
SIZES = [PartSizes(attention=1, ffn=1), PartSizes(attention=1, ffn=2), PartSizes(attention=2, ffn=1)]
"""Blocks per proof: every block its own part; FFN blocks two at a time; the attention in one part."""


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> FullModel:
    return read_full_model(write_demo_model(tmp_path_factory.mktemp("toy"), SHAPE, seed=1))


def as_input(ints: np.ndarray) -> torch.Tensor:
    """Committed integers as the circuit reads them (values at the input scale)."""
    return torch.tensor(ints / float(1 << INPUT_SCALE), dtype=torch.float32)


def committed(values: dict[str, np.ndarray], piece: Piece) -> torch.Tensor:
    return as_input(with_blinding(piece_ints(values, piece), piece, random_blinding(piece.blinding_count)))


def hidden_state(model: FullModel, values: dict[str, np.ndarray]) -> torch.Tensor:
    """The embedding rows of a few tokens (the residual stream's units) with a blinding row under them."""
    rows = values["embedding"][np.arange(3, 3 + TOKENS)]
    return as_input(np.vstack([rows, np.full((1, model.shape.hidden), 7)]))


def whole_layer(model: FullModel, layer: LayerPieces, values, h: torch.Tensor) -> torch.Tensor:
    circuit = LayerCircuit(model.shape, TOKENS, len(layer.q), len(layer.gate))
    blinding = torch.zeros((1, model.shape.hidden))
    return circuit(h, *(committed(values, p) for p in layer.ordered()), blinding)[:TOKENS]


def part_by_part(model: FullModel, layer: LayerPieces, values, h: torch.Tensor, sizes: PartSizes) -> torch.Tensor:
    """The parts' chain as the prover runs it."""
    circuits = {
        "attention": AttentionPartCircuit(model.shape, TOKENS, sizes.attention * CHUNKING.kv_heads, sizes.attention),
        "ffn": FfnPartCircuit(model.shape, TOKENS, sizes.ffn),
    }
    norm_input = running = h
    for part in layer_parts(layer, sizes):
        if part.kind == "ffn" and part.block == 0:
            norm_input = running
        pieces = [committed(values, p) for p in part.pieces]
        blinding = torch.full((1, model.shape.hidden), float(part.block))
        running = circuits[part.kind](norm_input, running, *pieces, blinding)
    return running[:TOKENS]


@pytest.mark.parametrize("sizes", SIZES)
def test_the_parts_of_a_layer_add_up_to_the_whole_layer(model, sizes):
    values = model_values(model, {}, [3, 4])
    h = hidden_state(model, values)
    for layer in layer_pieces(model.shape, CHUNKING, {}):
        kinds = [p.kind for p in layer_parts(layer, sizes)]
        assert kinds == ["attention"] * (2 // sizes.attention) + ["ffn"] * (4 // sizes.ffn)
        with torch.no_grad():
            whole, parts = whole_layer(model, layer, values, h), part_by_part(model, layer, values, h, sizes)
        update = (whole - h[:TOKENS]).norm()
        assert update > 0.1 * h[:TOKENS].norm()  # the layer does something: the comparison means something
        assert (parts - whole).norm() < 1e-5 * update
