"""`noseprint plan`: a proof's cost from the checkpoint's config before paying for it (issue 19).

The CLI runs on a tiny checkpoint (EZKL counts the chunk circuits' rows: seconds, cached in a home shared by
this module); the accounting is checked against hand-computed figures with a synthetic calibration."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
from noseprint.circuits.budget import estimated_chunk_rows
from noseprint.circuits.calibration import FIT_TOLERANCE, Calibration, Point, area, fit_line, load_calibration
from noseprint.core.chunks import DEFAULT_CHUNK_WEIGHTS, Chunking, choose_chunking, plan_chunks
from noseprint.core.layout import CircuitLayout, LayerShape
from noseprint.prover.estimate import estimate, makespan

from tests.conftest import TOKENS, run_cli, save_tiny, tiny_llama

KEYS = {"chunks", "core_hours", "wall_hours", "peak_gb", "logrows", "shapes", "weights", "encode", "pk_gb"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plan")
    return {"model": save_tiny(tiny_llama(), root / "model"), "home": root / "home"}


def plan_json(tiny: dict[str, Path], *options: str) -> dict:
    result = run_cli("plan", str(tiny["model"]), "--n-tokens", TOKENS, "--json", *options, home=tiny["home"])
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_plan_prints_the_cost_of_the_chunks_prove_would_make(tiny):
    plan = plan_json(tiny, "--cores", "2")
    assert KEYS <= set(plan)
    shape = LayerShape(hidden=16, heads=2, kv_heads=1, head_dim=8, ffn=32, gated=True)  # tiny_llama's config
    layout = CircuitLayout(tokens=int(TOKENS), hidden=16, layers=(shape, shape))
    assert plan["chunks"] == len(plan_chunks(layout, choose_chunking(layout, DEFAULT_CHUNK_WEIGHTS)))
    assert plan["weights"] == layout.weight_count
    assert {s["name"] for s in plan["shapes"]} == {"qk", "vo", "ffn"}
    assert sum(s["count"] for s in plan["shapes"]) == plan["chunks"]
    assert all(s["rows"] > 0 and s["rows_exact"] and s["logrows"] == plan["logrows"] for s in plan["shapes"])
    assert 0 < plan["wall_hours"] and 0 < plan["core_hours"] and 0 < plan["peak_gb"]


def test_more_nodes_shorten_the_wall_time_not_the_work(tiny):
    plans = [plan_json(tiny, "--cores", "2", "--nodes", str(nodes)) for nodes in (1, 2, 3)]
    walls = [plan["wall_hours"] for plan in plans]
    assert all(later < earlier for earlier, later in pairwise(walls)), walls
    assert len({round(plan["core_hours"], 9) for plan in plans}) == 1


def test_a_config_alone_is_enough_to_plan(tiny, tmp_path):
    """Costing a checkpoint before downloading its weights: no tensor is read."""
    (tmp_path / "config.json").write_text((tiny["model"] / "config.json").read_text())
    plan = run_cli("plan", str(tmp_path), "--n-tokens", TOKENS, "--json", home=tiny["home"], check=True)
    assert json.loads(plan.stdout)["chunks"] == plan_json(tiny)["chunks"]


def test_the_text_plan_is_a_table_with_the_totals(tiny):
    result = run_cli("plan", str(tiny["model"]), "--n-tokens", TOKENS, home=tiny["home"], check=True)
    assert "core-hours" in result.stdout and "ffn" in result.stdout and "calibration:" in result.stdout


def test_a_missing_folder_or_a_folder_without_a_model_is_refused(tmp_path):
    missing = run_cli("plan", str(tmp_path / "nowhere"), "--json", home=tmp_path / "home")
    assert missing.returncode == 2 and "model folder not found" in missing.stderr and not missing.stdout
    empty = run_cli("plan", str(tmp_path), "--json", home=tmp_path / "home")
    assert empty.returncode == 2 and "config.json" in empty.stderr


# The calibration table and its fit.


def test_the_stored_fit_is_monotone_and_reproduces_its_points():
    table = load_calibration()
    assert table.machine and table.measured and table.command.startswith("python -m bench.calibrate")
    predict = {
        "prove_s": table.prove_seconds,
        "setup_s": table.setup_seconds,
        "pk_bytes": table.pk_bytes,
        "peak_rss_bytes": table.peak_bytes,
    }
    for name, at in predict.items():
        values = [at(rows, 16) for rows in (1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20)]
        assert all(later > earlier for earlier, later in pairwise(values)), (name, values)
        for point in table.points:
            measured = getattr(point, name)
            assert abs(at(point.rows, point.logrows) - measured) <= FIT_TOLERANCE * measured, (name, point)


def test_the_fit_recovers_a_line_and_never_slopes_down():
    exact = fit_line([1000, 2000, 4000], [12.0, 22.0, 42.0])
    assert exact.intercept == pytest.approx(2.0) and exact.slope == pytest.approx(0.01)
    falling = fit_line([1000, 2000], [30.0, 20.0])  # noise: more area measured faster
    assert falling.slope >= 0 and falling.intercept >= 0
    assert falling.at(1000) <= falling.at(10_000)


def test_area_is_whole_column_blocks():
    assert area(100, 11) == 2048  # one block, mostly empty: a small chunk at a large logrows pays for it
    assert area(4096, 11) == 4096 and area(4097, 11) == 6144


# The accounting, with a calibration whose lines are known exactly.

SECONDS_PER_AREA = 1e-3


def synthetic(cores: int = 4) -> Calibration:
    """Points on lines through the origin: setup and prove 1 ms per unit of area, 1 KB key and 2 KB peak."""
    points = [
        Point(64, rows, 12, SECONDS_PER_AREA * area(rows, 12), SECONDS_PER_AREA * area(rows, 12),
              1024 * area(rows, 12), 2048 * area(rows, 12), cores)
        for rows in (4096, 16384)
    ]  # fmt: skip
    return Calibration("synthetic", "today", "python -m bench.calibrate", tuple(points))


LAYER = LayerShape(hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, gated=True)
LAYOUT = CircuitLayout(tokens=16, hidden=64, layers=(LAYER, LAYER))
CHUNKING = Chunking(kv_heads=1, ffn_rows=32)


def test_core_hours_add_every_proof_and_each_key_setup_once():
    table = synthetic()
    plan = estimate(LAYOUT, CHUNKING, 3, 8, table, rows_of=estimated_chunk_rows)
    chunks = plan_chunks(LAYOUT, CHUNKING)
    rows = {chunk.shape: estimated_chunk_rows(chunk.shape) for chunk in chunks}
    per_proof = [SECONDS_PER_AREA * area(rows[chunk.shape], plan.logrows) for chunk in chunks]
    setups = [SECONDS_PER_AREA * area(r, plan.logrows) for r in rows.values()]
    encode = 2 * SECONDS_PER_AREA * area(plan.encode.rows, plan.logrows)
    assert plan.chunks == len(chunks) and plan.workers_per_node == 2
    assert plan.core_hours == pytest.approx((sum(per_proof) + sum(setups) + encode) * table.cores / 3600)
    expected_wall = sum(setups) + makespan(per_proof, 3 * 2) + encode
    assert plan.wall_hours == pytest.approx(expected_wall / 3600)


def test_fewer_cores_than_calibrated_are_slower_but_the_same_work():
    table = synthetic(cores=4)
    full = estimate(LAYOUT, CHUNKING, 1, 4, table, rows_of=estimated_chunk_rows)
    half = estimate(LAYOUT, CHUNKING, 1, 2, table, rows_of=estimated_chunk_rows)
    assert half.workers_per_node == full.workers_per_node == 1
    assert half.wall_hours == pytest.approx(2 * full.wall_hours)
    assert half.core_hours == pytest.approx(full.core_hours)


def test_memory_limits_the_proofs_a_node_runs_at_once():
    table = synthetic(cores=1)
    free = estimate(LAYOUT, CHUNKING, 1, 16, table, rows_of=estimated_chunk_rows)
    tight = estimate(LAYOUT, CHUNKING, 1, 16, table, memory_gb=2.5 * free.peak_gb, rows_of=estimated_chunk_rows)
    assert (free.workers_per_node, tight.workers_per_node) == (16, 2)
    assert tight.wall_hours > free.wall_hours and tight.core_hours == pytest.approx(free.core_hours)
    starved = estimate(LAYOUT, CHUNKING, 1, 16, table, memory_gb=free.peak_gb / 2, rows_of=estimated_chunk_rows)
    assert starved.workers_per_node == 1 and any("more than a node's" in w for w in starved.warnings)


def test_makespan_hands_each_task_to_the_first_free_worker():
    assert makespan([2, 2, 2, 2, 8, 8], 1) == 24
    assert makespan([2, 2, 2, 2, 8, 8], 2) == 12
    assert makespan([2, 2, 2, 2, 8, 8], 3) == 10
    assert makespan([], 4) == 0
