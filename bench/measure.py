"""Wall time and peak resident memory of a command, sampled over its process tree."""

from __future__ import annotations

import subprocess
import threading
import time

import psutil


def run_measured(command: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `command`; return its result, wall seconds and peak RSS in GB (sampled every 50 ms)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]

    def sample() -> None:
        try:
            parent = psutil.Process(proc.pid)
            while proc.poll() is None:
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]))
                time.sleep(0.05)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    return subprocess.CompletedProcess(command, proc.returncode, out, err), time.perf_counter() - start, peak[0] / 2**30
