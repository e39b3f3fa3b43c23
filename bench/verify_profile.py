"""Where a cached `verify` spends its time: each check, in process.

    NOSEPRINT_HOME=... python bench/verify_profile.py BUNDLE

Run after one `noseprint verify BUNDLE` with the same NOSEPRINT_HOME, so keys and circuit are cached.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

start = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noseprint.verifier.checks import CHECKS  # noqa: E402
from noseprint.verifier.context import Context  # noqa: E402
from noseprint.verifier.report import Report  # noqa: E402


def main() -> None:
    imported = time.perf_counter()
    print(f"{'imports':<14} {imported - start:6.3f} s")
    ctx = Context(Path(sys.argv[1]), None, Report())
    for name, check in CHECKS:
        t = time.perf_counter()
        check(ctx)
        print(f"{name:<14} {time.perf_counter() - t:6.3f} s")
    print(f"{'total':<14} {time.perf_counter() - start:6.3f} s (process start and CLI imports come on top)")


if __name__ == "__main__":
    main()
