"""Fuzz what a registry parses from strangers, many inputs per target, and report how many ran and crashed.

    python -m bench.fuzz_registry [--examples 5000] [--bundle SIGNED_BUNDLE]

Targets (tests/fuzz_targets.py): uploaded archives as raw bytes and as tar files with hostile members,
DSSE envelopes, checkpoints, and, with --bundle, the verifier on a real signed bundle whose manifest is
mutated (one value replaced by arbitrary JSON, or one key dropped) or replaced by arbitrary JSON.
A crash is any exception other than noseprint's own refusals; hypothesis stops a target at its first crash
and prints the input. Results go to bench/results/fuzz_registry.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_targets as targets


def run_target(name: str, strategy, target, examples: int) -> dict:
    count = [0]

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(strategy)
    def body(value):
        count[0] += 1
        target(value)

    started = time.perf_counter()
    crashed = None
    try:
        body()
    except Exception as exc:  # a crash: report it rather than stop the other targets
        crashed = f"{type(exc).__name__}: {exc}"[:500]
    seconds = round(time.perf_counter() - started, 1)
    result = {"target": name, "inputs": count[0], "crashed": crashed, "seconds": seconds}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--bundle", type=Path, help="a signed bundle whose manifest is mutated")
    parser.add_argument("--out", type=Path, default=Path("bench/results/fuzz_registry.json"))
    args = parser.parse_args()
    plan = [
        ("archive bytes", st.binary(max_size=512), targets.unpack_bytes),
        ("archive members", targets.TAR_MEMBERS, lambda m: targets.unpack_bytes(targets.tar_of(m))),
        ("dsse envelope", st.binary(max_size=256) | targets.JSON.map(lambda v: json.dumps(v).encode()),
         targets.parse_envelope),
        ("checkpoint", targets.JSON, targets.parse_checkpoint),
    ]  # fmt: skip
    if args.bundle:
        manifest = json.loads((args.bundle / "manifest.json").read_text())
        plan.append(
            (
                "bundle manifest (verify)",
                targets.mutations(manifest) | targets.JSON,
                lambda m: targets.verify_manifest(args.bundle, m),
            )
        )
    results = [run_target(name, strategy, target, args.examples) for name, strategy, target in plan]
    summary = {
        "examples_per_target": args.examples,
        "targets": results,
        "inputs": sum(r["inputs"] for r in results),
        "crashes": sum(1 for r in results if r["crashed"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['inputs']} inputs, {summary['crashes']} crashing targets")


if __name__ == "__main__":
    main()
