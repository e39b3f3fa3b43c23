"""A Ray cluster on loopback, started from this checkout: a head node and, optionally, worker nodes.

Tests and benchmarks use it to run `prove --ray` for real on one machine. Each node is a `ray start --block`
process in its own session, stopped by signalling that one session (never `ray stop`, which kills every Ray
process on the machine, other users' clusters included); the temp dir is private, so "auto" elsewhere never
finds this cluster. Workers import the project straight from the checkout (PYTHONPATH), nothing is shipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180
"""A head node comes up in 5-7 s on two idle cores; a loaded machine gets slack."""
POLL_S = 0.5
STOP_GRACE_S = 30
OBJECT_STORE_BYTES = 100_000_000
"""Ray's floor is 75 MB; its default, 30% of RAM, is far beyond what chunk tasks pass."""
STARTED = "Ray runtime started"


class ClusterFailed(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(args: list[str], temp_dir: Path, log_name: str, extra_path: list[Path]) -> subprocess.Popen:
    ray_exe = Path(sys.executable).with_name("ray")
    log = (temp_dir / log_name).open("w")
    paths = [str(p) for p in extra_path] + [str(ROOT)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [str(ray_exe), "start", "--block", "--disable-usage-stats", *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(node: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while STARTED not in log.read_text():
        if node.poll() is not None or time.monotonic() > deadline:
            raise ClusterFailed(f"ray start did not come up:\n{log.read_text()}")
        time.sleep(POLL_S)


def _stop(node: subprocess.Popen) -> None:
    node.send_signal(signal.SIGTERM)
    try:
        node.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)  # the session this module started, and only it
        node.wait()


@contextmanager
def local_cluster(
    head_cpus: int = 2, workers: int = 0, worker_cpus: int = 1, extra_path: list[Path] | None = None
) -> Iterator[str]:
    """Yield the address of a cluster of one head node (`head_cpus`) and `workers` worker nodes."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's unix socket paths must fit in 107 bytes
    head_args = [
        "--head", f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={head_cpus}",
        "--include-dashboard=false", f"--temp-dir={temp_dir}", f"--dashboard-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}", f"--object-store-memory={OBJECT_STORE_BYTES}",
    ]  # fmt: skip
    nodes = [_start(head_args, temp_dir, "head.log", extra_path or [])]
    try:
        _wait(nodes[0], temp_dir / "head.log")
        for index in range(workers):
            args = [
                f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", f"--num-cpus={worker_cpus}",
                f"--object-store-memory={OBJECT_STORE_BYTES}", f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--node-manager-port={free_port()}",
                f"--object-manager-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            ]  # fmt: skip
            nodes.append(_start(args, temp_dir, f"worker{index}.log", extra_path or []))
            _wait(nodes[-1], temp_dir / f"worker{index}.log")
        yield f"127.0.0.1:{port}"
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(temp_dir, ignore_errors=True)
