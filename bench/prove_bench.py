"""Prove and verify one model end to end, timing every stage and the peak memory of each command.

    python bench/prove_bench.py                      # the README's default model (noseprint demo's)
    python bench/prove_bench.py --hidden 16 --heads 2 --kv-heads 1 --ffn 32 --layers 3 --tokens 8

Runs the real CLI in subprocesses, each with a fresh NOSEPRINT_HOME where it matters:
prove (owner: key generation included), verify uncached (auditor: derives its own keys),
verify cached. Peak RSS is sampled every 0.1 s over the process tree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import run_measured  # noqa: E402
from models.demo_model import DemoShape, write_demo_model  # noqa: E402


def run(args: list[str], home: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run the CLI with its own NOSEPRINT_HOME; return the result, wall seconds and peak RSS (GB)."""
    env = {"NOSEPRINT_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)}
    result, seconds, peak = run_measured([sys.executable, "-m", "noseprint.cli", *args], env)
    if result.returncode:
        print(result.stderr, file=sys.stderr)
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    default = DemoShape()
    parser.add_argument("--hidden", type=int, default=default.hidden)
    parser.add_argument("--heads", type=int, default=default.heads)
    parser.add_argument("--kv-heads", type=int, default=default.kv_heads)
    parser.add_argument("--ffn", type=int, default=default.ffn)
    parser.add_argument("--layers", type=int, default=default.layers)
    parser.add_argument("--tokens", type=int, default=16)
    a = parser.parse_args()
    shape = DemoShape(hidden=a.hidden, heads=a.heads, kv_heads=a.kv_heads, ffn=a.ffn, layers=a.layers)

    with tempfile.TemporaryDirectory(prefix="noseprint-bench-") as tmp:
        root = Path(tmp)
        write_demo_model(root / "model", shape)
        owner, auditor = root / "owner", root / "auditor"
        proved, prove_s, prove_rss = run(
            [
                "prove",
                str(root / "model"),
                "--out",
                str(root / "bundle"),
                "--n-tokens",
                str(a.tokens),
                "--init-dev-srs",
                "--json",
            ],
            owner,
        )
        summary = json.loads(proved.stdout)
        logrows = summary["logrows"]
        run(["srs", "import", str(owner / "srs" / f"k{logrows}.srs"), "--logrows", str(logrows)], auditor)
        first, first_s, first_rss = run(["verify", str(root / "bundle"), "--json"], auditor)
        cached_runs = [run(["verify", str(root / "bundle"), "--json"], auditor) for _ in range(3)]
        assert first.returncode == 0 and all(r[0].returncode == 0 for r in cached_runs), first.stdout
        cached_s = sorted(r[1] for r in cached_runs)[1]
        pk = next((owner / "keys").glob("*/pk.key"))
        bundle_bytes = sum(p.stat().st_size for p in (root / "bundle").rglob("*") if p.is_file())
        weights = summary["weights_committed"]
        t = summary["timings_s"]
        print(f"model: hidden {a.hidden}, heads {a.heads} ({a.kv_heads} kv), ffn {a.ffn}, layers {a.layers}")
        print(f"tokens: {a.tokens}")
        print(f"weights committed: {weights:,}   rows: {summary['rows']:,}   logrows: {logrows}")
        print(f"prove command: {prove_s:.1f} s wall, peak RSS {prove_rss:.2f} GB")
        print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()))
        print(f"  key generation {t['keys']:.1f} s, proving {t['prove']:.1f} s")
        print(f"verify, first (derives keys): {first_s:.1f} s, peak RSS {first_rss:.2f} GB")
        print(f"verify, keys cached (median of 3): {cached_s:.2f} s")
        proof_kb = (root / "bundle" / "proof.json").stat().st_size / 1024
        print(f"proving key: {pk.stat().st_size / 2**30:.2f} GB   proof: {proof_kb:.0f} KB")
        print(f"bundle: {bundle_bytes / 2**20:.2f} MB")
        print(
            f"weights proven per second: {weights / t['prove']:.0f} (proving only), "
            f"{weights / (t['keys'] + t['prove']):.0f} (key generation included)"
        )


if __name__ == "__main__":
    main()
