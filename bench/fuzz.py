"""Fuzz everything noseprint parses from strangers, many inputs per target, and report how many ran and crashed.

    python -m bench.fuzz [--examples 12000] [--verify-examples 1000] [--only NAME ...] [--bundle B --srs S]

Targets (testkit/fuzz_targets.py), in two groups:
- registry: uploaded archives as raw bytes and as tar files with hostile members, DSSE envelopes, checkpoints;
- local verify: the manifest reader (bytes; a real manifest with one value's text replaced), z.json,
  tokens.json and proof.json parsers (bytes; the real file with one value's text replaced), the circuit
  layout reader (arbitrary values, a real layout with one value replaced), `verify` on the real signed
  bundle (--bundle, default tests/data/bundle-v4) with its manifest mutated, and, slowest, `verify` end to
  end on an unsigned copy of it with one of manifest.json, tokens.json, z.json, a proof replaced and
  re-hashed (`--verify-examples` inputs, --srs the SRS it was proven with; one NOSEPRINT_HOME for the run,
  so the verifier's key is derived once).
Hostile inputs include integers past Python's 4,300-digit limit, floats and NaN where integers belong,
nesting 50,000 deep, and lists of 100,000 items.

A crash is any exception other than noseprint's own refusals; hypothesis stops a target at its first crash,
shrinks it, and the shrunk input and traceback are printed and saved. Results: bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, reporting, settings
from hypothesis import strategies as st

from testkit import fuzz_targets as targets


def run_target(name: str, group: str, strategy, target, examples: int) -> dict:
    count = [0]
    notes: list[str] = []

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(strategy)
    def body(value):
        count[0] += 1
        target(value)

    started = time.perf_counter()
    crashed = example = trace = None
    try:
        with reporting.with_reporter(lambda text: notes.append(str(text))):
            body()
    except Exception as exc:  # a crash: report it rather than stop the other targets
        errors = list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]  # distinct failures
        crashed = "; ".join(sorted({f"{type(e).__name__}: {e}"[:300] for e in errors}))
        example = "\n".join(notes + [note for e in errors for note in getattr(e, "__notes__", [])])[:4000]
        trace = "".join(traceback.format_exception(errors[0]))[-6000:]
    seconds = round(time.perf_counter() - started, 1)
    result = {"target": name, "group": group, "inputs": count[0], "crashed": crashed, "seconds": seconds}
    print(json.dumps(result), flush=True)
    if crashed:
        result.update(example=example, traceback=trace)
        print(f"--- {name}: crashing input\n{example}\n--- traceback\n{trace}", flush=True)
    return result


def plan(bundle: Path) -> list[tuple[str, str, st.SearchStrategy, object]]:
    manifest = targets.real("manifest.json", bundle)
    layout = manifest["circuit"]["layout"]
    return [
        ("archive bytes", "registry", st.binary(max_size=512), targets.unpack_bytes),
        ("archive members", "registry", targets.TAR_MEMBERS, lambda m: targets.unpack_bytes(targets.tar_of(m))),
        ("dsse envelope", "registry", st.binary(max_size=256) | targets.JSON.map(lambda v: json.dumps(v).encode()),
         targets.parse_envelope),
        ("checkpoint", "registry", targets.JSON, targets.parse_checkpoint),
        ("Manifest.from_json", "verify", targets.file_bytes(targets.current_manifest(bundle)),
         targets.manifest_from_json),
        ("parse_z", "verify", targets.file_bytes(targets.real("z.json", bundle)), targets.z_from_bytes),
        ("parse_tokens", "verify", targets.file_bytes(targets.real("tokens.json", bundle)),
         targets.tokens_from_bytes),
        ("parse_proof", "verify", targets.file_bytes(targets.real("proofs/encode.json", bundle)),
         targets.proof_from_bytes),
        ("CircuitLayout.from_dict", "verify", targets.layout_inputs(layout), targets.layout_from_dict),
        ("verify, signed bundle, manifest mutated", "verify", targets.mutations(manifest) | targets.JSON,
         lambda m: targets.verify_manifest(bundle, m)),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=12000, help="inputs per fast target")
    parser.add_argument("--verify-examples", type=int, default=1000, help="inputs for the end-to-end verify target")
    parser.add_argument("--only", nargs="*", help="run only the targets whose names contain one of these")
    parser.add_argument("--bundle", type=Path, default=targets.BUNDLE, help="a real proven bundle")
    parser.add_argument("--srs", type=Path, default=targets.SRS, help="the SRS it was proven with")
    parser.add_argument("--out", type=Path, default=Path("bench/results/fuzz.json"))
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="noseprint-fuzz-home-")
    os.environ["NOSEPRINT_HOME"] = home  # one home: the verifier derives its key once for the whole run
    chosen = lambda name: not args.only or any(part in name for part in args.only)  # noqa: E731
    results = [
        run_target(name, group, strategy, target, args.examples)
        for name, group, strategy, target in plan(args.bundle)
        if chosen(name)
    ]
    e2e = "verify end to end, one member replaced and re-hashed"
    if args.verify_examples and chosen(e2e):
        started = time.perf_counter()
        targets.reference_facts(args.bundle, args.srs)
        print(f"verifier key derived in {time.perf_counter() - started:.1f} s", flush=True)
        results.append(
            run_target(
                e2e,
                "verify",
                targets.forged_members(args.bundle),
                lambda m: targets.verify_member(*m, bundle=args.bundle, srs=args.srs),
                args.verify_examples,
            )
        )
        results[-1]["outcomes"] = dict(sorted(targets.OUTCOMES.items()))
        print("refused by check (member: check):", json.dumps(results[-1]["outcomes"], indent=1), flush=True)
    summary = {
        "examples_per_target": args.examples,
        "verify_examples": args.verify_examples,
        "bundle": str(args.bundle),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "targets": results,
        "inputs": sum(r["inputs"] for r in results),
        "crashes": sum(1 for r in results if r["crashed"]),
        "seconds": round(sum(r["seconds"] for r in results), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print("\n| target | group | inputs | crashes | seconds |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['target']} | {r['group']} | {r['inputs']:,} | {1 if r['crashed'] else 0} | {r['seconds']} |")
    print(f"\n{summary['inputs']:,} inputs, {summary['crashes']} crashing targets, {summary['seconds']} s")


if __name__ == "__main__":
    main()
