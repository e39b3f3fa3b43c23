"""prover.schedule for real: the same tasks in this process, in a spawned pool and on a local Ray cluster.

The work functions live at module level here because a pool or a Ray worker imports them by name. pytest
imports this file as the top-level module `test_schedule` (tests/ has no __init__.py and goes on sys.path):
spawned pool workers inherit that sys.path, and the Ray cluster is started with PYTHONPATH=tests:. so its
workers import `test_schedule` (and the project's packages) straight from this checkout, with nothing shipped.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from noseprint.core.errors import ProvingFailed, UsageError
from noseprint.prover.schedule import Scheduler, run_tasks

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = range(6)
FAILING = 3
PAUSE_S = 0.05
EXPECTED = {f"n{n}": n * n for n in NUMBERS}
RAY_START_TIMEOUT_S = 180  # a head node comes up in 5-7 s on two idle cores; a loaded machine gets slack
RAY_POLL_S = 0.5
RAY_STOP_GRACE_S = 30
RAY_OBJECT_STORE_BYTES = 100_000_000  # Ray's floor is 75 MB; its default, 30% of RAM, is far beyond a few ints
UNREACHABLE_WITHIN_S = 10


def square(n: int) -> tuple[int, int]:
    """n squared after a short pause (so tasks overlap in a pool), and the pid of the process that ran it."""
    time.sleep(PAUSE_S)
    return n * n, os.getpid()


def square_but_not_three(n: int) -> tuple[int, int]:
    if n == FAILING:
        raise ValueError("three is not allowed")
    return square(n)


def refuse(n: int) -> int:
    raise UsageError(f"input {n} is unusable")


def home_of_worker(n: int) -> str:
    return os.environ.get("NOSEPRINT_HOME", "")


def collect(
    scheduler: Scheduler, work: Callable[[int], Any] = square, delivered: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """Run one task per number; on_done records each result and checks it runs here, in the calling process."""
    results: dict[str, Any] = {} if delivered is None else delivered
    caller = os.getpid()

    def on_done(task_id: str, result: Any) -> None:
        assert os.getpid() == caller and task_id not in results
        results[task_id] = result

    run_tasks([(f"n{n}", n) for n in NUMBERS], work, on_done, scheduler, progress=False, **options)
    return results


def squares_and_pids(results: dict[str, tuple[int, int]]) -> tuple[dict[str, int], set[int]]:
    return {task_id: value for task_id, (value, _) in results.items()}, {pid for _, pid in results.values()}


def test_in_process_runs_here_in_order():
    results = collect(Scheduler())
    squares, pids = squares_and_pids(results)
    assert squares == EXPECTED and pids == {os.getpid()}
    assert list(results) == list(EXPECTED), "one after another, in the order given"


def test_pool_gives_the_same_results_from_other_processes():
    squares, pids = squares_and_pids(collect(Scheduler(jobs=2)))
    assert squares == EXPECTED
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_a_failing_task_is_named_and_earlier_results_are_kept():
    delivered: dict[str, Any] = {}
    with pytest.raises(ProvingFailed, match=f"n{FAILING}.*three is not allowed"):
        collect(Scheduler(), square_but_not_three, delivered)
    assert squares_and_pids(delivered)[0] == {f"n{n}": n * n for n in range(FAILING)}


def test_a_failing_task_in_the_pool_stops_the_run():
    delivered: dict[str, Any] = {}
    with pytest.raises(ProvingFailed, match=f"n{FAILING}.*three is not allowed"):
        collect(Scheduler(jobs=2), square_but_not_three, delivered)
    squares = squares_and_pids(delivered)[0]
    assert f"n{FAILING}" not in squares and all(EXPECTED[task_id] == value for task_id, value in squares.items())


def test_a_task_refusing_its_input_keeps_its_error_class():
    """A UsageError (exit 2) from a task is not relabelled ProvingFailed (exit 3)."""
    with pytest.raises(UsageError, match="n0.*input 0 is unusable"):
        collect(Scheduler(), refuse)


def test_no_tasks_is_a_no_op(capsys):
    run_tasks([], square, lambda task_id, result: pytest.fail("on_done called"), Scheduler(jobs=2))
    assert capsys.readouterr() == ("", "")


def test_a_summary_line_closes_the_run(capsys):
    run_tasks([(f"n{n}", n) for n in NUMBERS], square, lambda task_id, result: None, Scheduler(), describe="chunks")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{len(NUMBERS)} chunks in ") and captured.err.rstrip().endswith(" per hour")


def test_jobs_must_be_positive():
    with pytest.raises(UsageError, match="--jobs"):
        Scheduler(jobs=0)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A one-node Ray cluster on loopback, 2 CPUs, started from this checkout (`bench.ray_local`)."""
    pytest.importorskip("ray")
    from bench.ray_local import local_cluster

    with local_cluster(head_cpus=2, extra_path=[ROOT / "tests"]) as address:
        yield address


@pytest.mark.ray
def test_ray_gives_the_same_results_from_its_workers(ray_cluster):
    import ray

    squares, pids = squares_and_pids(collect(Scheduler(ray_address=ray_cluster)))
    assert squares == EXPECTED and os.getpid() not in pids
    assert not ray.is_initialized(), "run_tasks joined the cluster, so it must leave it"


@pytest.mark.ray
def test_ray_workers_share_the_callers_noseprint_home(ray_cluster):
    results = collect(Scheduler(ray_address=ray_cluster), home_of_worker, ray_resources={"num_cpus": 1})
    assert set(results.values()) == {os.environ["NOSEPRINT_HOME"]}


@pytest.mark.ray
def test_a_failing_ray_task_is_named_with_its_own_message(ray_cluster):
    delivered: dict[str, Any] = {}
    with pytest.raises(ProvingFailed, match=f"n{FAILING}.*three is not allowed") as caught:
        collect(Scheduler(ray_address=ray_cluster), square_but_not_three, delivered)
    assert "Traceback" not in str(caught.value)
    assert f"n{FAILING}" not in delivered


def test_an_unreachable_ray_address_is_a_usage_error_in_seconds():
    pytest.importorskip("ray")
    from bench.ray_local import free_port

    address = f"127.0.0.1:{free_port()}"  # bound and released: nothing listens there now
    started = time.monotonic()
    with pytest.raises(UsageError, match=f"no Ray cluster answers at {address}"):
        collect(Scheduler(ray_address=address))
    assert time.monotonic() - started < UNREACHABLE_WITHIN_S


def test_without_ray_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(UsageError, match=r"noseprint\[cluster\]"):
        collect(Scheduler(ray_address="auto"))
