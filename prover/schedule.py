"""Running independent chunk-proof tasks: in this process, in a local process pool, or on a Ray cluster.

One loop for three places, so `noseprint prove` does not care where a chunk is proven. Whatever runs the
tasks, each result comes back to `on_done` in the calling process as soon as its task finishes: the caller
writes it to disk there and then, so a job of many hours that is killed loses only the tasks in flight, and a
rerun proves only what is missing. Results therefore never need to cross machines through shared disk.

    jobs=1          one task after another in this process: the least memory, the simplest traceback
    jobs=N          a local pool of N spawned processes (EZKL and torch are not fork-safe)
    ray_address=A   each task a Ray task on the cluster at A ("auto", "HOST:PORT" or "ray://HOST:PORT")

A task that raises stops the run: nothing new starts, and the failure comes back as `ProvingFailed` naming
the task (a `NoseprintError` raised by the task keeps its own class, hence its exit code).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from importlib.util import find_spec
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from noseprint.core.errors import NoseprintError, ProvingFailed, UsageError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

T = TypeVar("T")
R = TypeVar("R")

START_METHOD = "spawn"
"""A forked child would inherit EZKL's and torch's thread pools half-copied and can deadlock; spawn starts clean."""
RAY_MISSING = "--ray needs Ray: pip install 'noseprint[cluster]'"
RAY_CLIENT_SCHEME = "ray://"
RAY_CLIENT_MISSING = "--ray ray://... needs Ray Client (grpcio): pip install 'ray[client]', or give the GCS's HOST:PORT"
RAY_CONNECT_TIMEOUT_S = 5.0
"""A live head answers a TCP connect in milliseconds; `ray.init` itself retries a dead address for minutes."""
RAY_DEFAULT_CPUS = 1
RAY_FORWARDED_ENV = ("NOSEPRINT_HOME",)
"""Passed on to Ray workers, so that on a local cluster they share the caller's SRS store and key cache."""
SECONDS_PER_HOUR = 3600
SECONDS_PER_MINUTE = 60


@dataclass(frozen=True)
class Scheduler:
    """Where tasks run. `jobs` counts local processes; with `ray_address` set, the cluster decides the parallelism
    (each task asks it for `ray_resources`) and `jobs` is ignored."""

    jobs: int = 1
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, not {self.jobs}")
        if self.ray_address is not None and not self.ray_address.strip():
            raise UsageError("--ray needs an address: auto, HOST:PORT or ray://HOST:PORT")


def run_tasks(
    tasks: Sequence[tuple[str, T]],
    work: Callable[[T], R],
    on_done: Callable[[str, R], None],
    scheduler: Scheduler,
    describe: str = "chunks",
    progress: bool = True,
    ray_resources: dict[str, Any] | None = None,
) -> None:
    """Run `work(payload)` for every `(task_id, payload)` and hand each result to `on_done(task_id, result)` in this
    process, in the order the tasks finish.

    For a pool or Ray, `work` must be a module-level function and payloads and results picklable: they cross
    processes. `ray_resources` are Ray task options per task (`num_cpus`, default 1; `memory` in bytes; ...), so
    the cluster does not overcommit a node with proofs that each need many GiB. With `progress`, a bar and a
    closing summary line go to stderr (stdout may carry `--json`).
    """
    if not tasks:
        return
    ids = [task_id for task_id, _ in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("task ids must be unique: on_done tells results apart by them")
    with _Tracker(len(tasks), describe, progress) as tracker:

        def deliver(task_id: str, result: R) -> None:
            on_done(task_id, result)
            tracker.advance()

        if scheduler.ray_address is not None:
            _run_ray(tasks, work, deliver, scheduler.ray_address, ray_resources)
        elif scheduler.jobs > 1:
            _run_pool(tasks, work, deliver, scheduler.jobs)
        else:
            _run_inline(tasks, work, deliver)
    tracker.summary()


def _failure(task_id: str, exc: BaseException) -> NoseprintError:
    """The task's own `NoseprintError` class (its exit code means something), any other failure as ProvingFailed."""
    kind = type(exc) if isinstance(exc, NoseprintError) else ProvingFailed
    reason = str(exc) or type(exc).__name__
    failure = kind(f"task {task_id} failed: {reason}")
    failure.__cause__ = exc
    return failure


def _run_inline(tasks: Sequence[tuple[str, T]], work: Callable[[T], R], deliver: Callable[[str, R], None]) -> None:
    for task_id, payload in tasks:
        try:
            result = work(payload)
        except Exception as exc:
            raise _failure(task_id, exc) from exc
        deliver(task_id, result)


def _run_pool(
    tasks: Sequence[tuple[str, T]], work: Callable[[T], R], deliver: Callable[[str, R], None], jobs: int
) -> None:
    """At most `jobs` tasks submitted at a time, so that after a failure nothing new starts. Tasks already running
    when one fails are waited for (a pool cannot stop them) and their results delivered: work kept, not lost."""
    waiting: Iterator[tuple[str, T]] = iter(tasks)
    running: dict[Future[R], str] = {}
    failure: NoseprintError | None = None
    executor = ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context(START_METHOD)
    )
    try:
        while True:
            while failure is None and len(running) < jobs and (task := next(waiting, None)) is not None:
                running[executor.submit(work, task[1])] = task[0]
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task_id = running.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # the task's own error, or BrokenProcessPool when a worker dies (OOM)
                    failure = failure or _failure(task_id, exc)
                    continue
                deliver(task_id, result)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    if failure is not None:
        raise failure


def _run_ray(
    tasks: Sequence[tuple[str, T]],
    work: Callable[[T], R],
    deliver: Callable[[str, R], None],
    address: str,
    resources: dict[str, Any] | None,
) -> None:
    """All tasks submitted at once: the cluster queues them and schedules by the resources each asks for. After a
    failure the rest are cancelled (Ray cannot tell queued from running cheaply; running ones are interrupted)."""
    ray = _import_ray()
    connected_here = _connect(ray, address)
    try:
        options: dict[str, Any] = {"num_cpus": RAY_DEFAULT_CPUS, **(resources or {})}
        forwarded = {name: os.environ[name] for name in RAY_FORWARDED_ENV if name in os.environ}
        if forwarded:
            options["runtime_env"] = {"env_vars": forwarded}
        remote = ray.remote(work).options(**options)
        pending = {remote.remote(payload): task_id for task_id, payload in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task_id = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:
                    for other in pending:
                        ray.cancel(other)
                    # RayTaskError wraps the task's exception (with a remote traceback in its text): report the cause
                    raise _failure(task_id, getattr(exc, "cause", None) or exc) from exc
                deliver(task_id, result)
    finally:
        if connected_here:
            ray.shutdown()


def _import_ray() -> ModuleType:
    """Ray is an optional extra: imported only when asked for, and its absence said in one line."""
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


def _connect(ray: ModuleType, address: str) -> bool:
    """Join the cluster unless this process already has; True when this call joined (and so must leave)."""
    if ray.is_initialized():
        return False
    if address.startswith(RAY_CLIENT_SCHEME) and find_spec("grpc") is None:
        raise UsageError(RAY_CLIENT_MISSING)
    _check_reachable(address)
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # ConnectionError for "auto" with no cluster, RuntimeError for a wrong service, ...
        raise UsageError(f"cannot join the Ray cluster at {address}: {exc}") from None
    return True


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at HOST:PORT (or ray://HOST:PORT). Addresses Ray resolves
    itself ("auto") are left to `ray.init`, which fails fast for them."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--ray {address}: the port is not a number") from None
    if parts.hostname is None or port is None:
        return
    try:
        with socket.create_connection((parts.hostname, port), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UsageError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one with `ray start --head` "
            "or check the address"
        ) from None


class _PerHourColumn(ProgressColumn):
    """Tasks per hour since the start: chunk proofs take minutes each, so rich's 30-second speed window is empty."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if not task.completed or not elapsed:
            return Text("-- per hour")
        return Text(f"{task.completed / elapsed * SECONDS_PER_HOUR:,.1f} per hour")


class _RemainingColumn(ProgressColumn):
    """Time left at the average pace so far (see `_PerHourColumn` for why not rich's own estimate)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if not task.completed or not elapsed or task.total is None:
            return Text("-:--:-- left")
        seconds = int((task.total - task.completed) * elapsed / task.completed)
        hours, rest = divmod(seconds, SECONDS_PER_HOUR)
        minutes, seconds = divmod(rest, SECONDS_PER_MINUTE)
        return Text(f"{hours}:{minutes:02d}:{seconds:02d} left")


class _Tracker:
    """The live bar (only on a terminal) and the one-line summary (always, unless progress is off)."""

    def __init__(self, total: int, describe: str, progress: bool) -> None:
        self.describe = describe
        self.progress = progress
        self.console = Console(stderr=True, highlight=False)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _PerHourColumn(),
            _RemainingColumn(),
            console=self.console,
            disable=not (progress and self.console.is_terminal),
        )
        self.task = self.bar.add_task(describe, total=total)
        self.done = 0
        self.started = time.monotonic()

    def __enter__(self) -> _Tracker:
        self.started = time.monotonic()
        self.bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.stop()

    def advance(self) -> None:
        self.done += 1
        self.bar.advance(self.task)

    def summary(self) -> None:
        if not self.progress:
            return
        elapsed = time.monotonic() - self.started
        per_hour = self.done / elapsed * SECONDS_PER_HOUR if elapsed > 0 else 0.0
        self.console.print(f"{self.done} {self.describe} in {elapsed:.1f} s, {per_hour:,.1f} per hour", markup=False)
