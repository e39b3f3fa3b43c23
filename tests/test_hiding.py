"""Every commitment point hides (issue 33, item 2): EZKL's polycommit commits an input row-major in columns of
`usable` rows, one KZG point per column, and the points are published. A point must carry blinding values of
its own, or anyone holding a candidate model recomputes it and compares."""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from noseprint.core.chunks import Chunking, committed_values, hidden_at, hiding_logrows, plan_chunks
from noseprint.core.layout import (
    COLUMN,
    MIN_BLINDING_VALUES,
    ROW,
    CircuitLayout,
    LayerShape,
    point_blinding,
    unhidden_points,
)
from noseprint.core.whole_model import InferenceShape

DATA = Path(__file__).with_name("data")
LLAMA_2_7B = LayerShape(4096, 32, 32, 128, 11008, gated=True)


def _by_hand(shape: tuple[int, int], axis: int, usable: int, lines: int) -> list[tuple[int, int]]:
    marks = np.zeros(shape, dtype=int)
    if axis == ROW:
        marks[-lines:, :] = 1
    else:
        marks[:, -1] = 1
    flat = marks.ravel()
    return [
        (int((flat[i * usable : (i + 1) * usable] == 0).sum()), int(flat[i * usable : (i + 1) * usable].sum()))
        for i in range(flat.size // usable + 1)
    ]


def test_point_blinding_counts_each_points_values_exactly():
    for rows, cols, usable, axis in itertools.product(range(2, 9), range(1, 9), range(1, 24), (ROW, COLUMN)):
        lines = 1 if axis == COLUMN else random.randint(1, rows - 1)
        assert point_blinding((rows, cols), axis, usable, lines) == _by_hand((rows, cols), axis, usable, lines)


def test_the_audits_layout_is_refused_and_the_plan_raises_logrows_until_every_point_hides():
    """LLaMA-2-7B with one K/V head a chunk: a k block (128 rows + blinding, 4096 wide) spans two columns at
    logrows 19, and its first point holds 524,282 weights and no blinding. The plan now proves at 20."""
    assert unhidden_points((129, 4096), ROW, (1 << 19) - 6) == [0]
    chunks = plan_chunks(CircuitLayout(tokens=16, hidden=4096, layers=(LLAMA_2_7B,) * 2), Chunking(1, 64))
    values = committed_values(chunks)
    assert not hidden_at(values, 19) and hidden_at(values, 20)
    assert hiding_logrows(chunks, 12, 26) == 20
    with pytest.raises(ValueError, match="no logrows"):
        hiding_logrows(chunks, 12, 19)
    # a column-blinded block may span columns: each row ends in a blinding value, so every point has many
    spans = point_blinding((4096, 129), COLUMN, (1 << 19) - 6)
    assert len(spans) == 2 and min(blinding for _, blinding in spans) >= MIN_BLINDING_VALUES


def test_whole_model_blocks_are_cut_to_one_point_at_the_bundles_logrows():
    """A zoo-width head (hidden 64) at logrows 14: 256 rows + blinding = 16,448 values, two points, the first
    bare; cut to 253 rows it fits one. Shapes without a logrows (circuit arithmetic) are unchanged."""
    zoo = InferenceShape(vocab=2048, hidden=64, layers=4, heads=4, kv_heads=2, head_dim=16, ffn=128, rope_theta=1)
    assert zoo.head_rows == 256 and unhidden_points((257, 64), ROW, (1 << 14) - 6) == [0]
    bounded = zoo.at_logrows(14)
    assert bounded == zoo and bounded.to_dict() == zoo.to_dict()
    assert (bounded.head_rows + 1) * 64 < (1 << 14) - 64 and bounded.head_rows >= 250
    toy = InferenceShape(vocab=63, hidden=16, layers=2, heads=2, kv_heads=1, head_dim=8, ffn=32, rope_theta=1)
    assert toy.at_logrows(14).head_rows == toy.head_rows == 256  # the committed fixture's blocks stay as they are
    wide = InferenceShape(vocab=8, hidden=16384, layers=1, heads=2, kv_heads=1, head_dim=8, ffn=8, rope_theta=1)
    with pytest.raises(ValueError, match="exceed one commitment point"):
        _ = wide.at_logrows(14).head_rows


@pytest.mark.proof
def test_with_real_commitments_a_bare_point_is_the_models_alone_and_a_blinded_one_changes(tmp_path):
    """EZKL itself, at logrows 12 (the fixture's chunk key): a row-blinded 257 x 16 block spans two points and
    its first does not change when the blinding does (a guessed model can be tested against it); a
    column-blinded 512 x 9 block spans two points and both change."""
    import noseprint.circuits.srs as srs_store
    from noseprint.circuits.challenge_circuits import commit_points
    from noseprint.circuits.keys import Keys
    from noseprint.circuits.proving import usable_commit_rows

    key = tmp_path / "chunk1"
    shutil.copytree(DATA / "bundle-v4" / "circuit" / "chunk1", key)
    keys = Keys(key / "vk.key", None, key / "settings.json", "", False)
    srs = srs_store.from_file(DATA / "dev-k12.srs", 12)
    assert usable_commit_rows(keys, srs) == 4090
    rng = np.random.default_rng(0)

    def commit(values: np.ndarray) -> list[str]:
        return commit_points(values, keys, srs)

    def blinded(weights: np.ndarray, axis: int) -> np.ndarray:
        line = rng.integers(-(1 << 15), 1 << 15, size=weights.shape[1 - axis])
        return np.vstack([weights, line[None, :]]) if axis == ROW else np.hstack([weights, line[:, None]])

    row_block = rng.integers(-256, 256, size=(256, 16))
    first, second = commit(blinded(row_block, ROW)), commit(blinded(row_block, ROW))
    assert len(first) == len(second) == 2 and first[0] == second[0] and first[1] != second[1]
    assert unhidden_points((257, 16), ROW, 4090) == [0]
    column_block = rng.integers(-256, 256, size=(512, 8))
    first, second = commit(blinded(column_block, COLUMN)), commit(blinded(column_block, COLUMN))
    assert len(first) == len(second) == 2 and all(a != b for a, b in zip(first, second, strict=True))
    assert unhidden_points((512, 9), COLUMN, 4090) == []
