"""Scale by simulation: a local Ray cluster (a head and worker nodes on loopback) proves a model of many chunks.

    python -m bench.ray_prove                          # the demo model split into 40 chunks, head + 2 workers
    python -m bench.ray_prove --workers 3 --chunking 1:4

The cluster is started by this benchmark (`bench.ray_local`); `noseprint prove --ray ADDRESS` sends each
chunk proof to it as a Ray task, then the bundle is verified by an auditor with its own home. On one 2-core
machine the nodes share the cores: this shows the distribution works end to end, not a speed-up; beside it,
the same model is proven with `--jobs 1` in one process, and `plan`'s prediction is printed for both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from noseprint.models.demo_model import DemoShape, write_demo_model  # noqa: E402

from bench.measure import run_measured  # noqa: E402
from bench.ray_local import local_cluster  # noqa: E402

DEFAULT_CHUNKING = "1:8"
"""The demo model (2 K/V heads, FFN 128) in 2 + 2 + 16 chunks a layer: 40 chunk proofs."""


def cli(args: list[str], home: Path) -> tuple[dict, float, float]:
    env = {"NOSEPRINT_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)}
    result, seconds, peak = run_measured([sys.executable, "-m", "noseprint.cli", *args], env)
    if result.returncode:
        raise SystemExit(f"noseprint {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout), seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2, help="worker nodes beside the head")
    parser.add_argument("--chunking", default=DEFAULT_CHUNKING)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--skip-local", action="store_true", help="do not prove in one process beside it")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="noseprint-ray-") as tmp:
        root = Path(tmp)
        model = root / "model"
        write_demo_model(model, DemoShape())
        owner, auditor = root / "owner", root / "auditor"
        common = ["--n-tokens", str(a.tokens), "--chunking", a.chunking, "--init-dev-srs", "--json"]
        with local_cluster(head_cpus=1, workers=a.workers, worker_cpus=1) as address:
            print(f"cluster: head + {a.workers} worker nodes at {address}", flush=True)
            summary, ray_s, ray_peak = cli(
                ["prove", str(model), "--out", str(root / "ray"), *common, "--ray", address], owner
            )
        chunks = summary["chunks"]
        print(f"prove --ray: {chunks} chunks, {ray_s:.1f} s wall (keys included), {3600 * chunks / ray_s:.0f} chunks/h")
        print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["timings_s"].items()))
        logrows = summary["logrows"]
        srs = owner / "srs" / f"k{logrows}.srs"
        env_args = ["srs", "import", str(srs), "--logrows", str(logrows)]
        run_measured(
            [sys.executable, "-m", "noseprint.cli", *env_args],
            {"NOSEPRINT_HOME": str(auditor), "PATH": "/usr/bin:/bin"},
        )
        report, verify_s, _ = cli(["verify", str(root / "ray"), "--json"], auditor)
        print(
            f"verify (derives {len(report['facts'].get('circuit', {}) and [1])} keys): valid={report['valid']}, "
            f"{report['facts'].get('proofs_verified')} proofs, {verify_s:.1f} s"
        )
        if not a.skip_local:
            local, local_s, _ = cli(["prove", str(model), "--out", str(root / "local"), *common], owner)
            local_chunks, ray_chunks = local["timings_s"]["chunks"], summary["timings_s"]["chunks"]
            print(
                f"prove in one process, keys cached: {local_s:.1f} s wall, chunk phase {local_chunks:.1f} s "
                f"(Ray's chunk phase, keys included: {ray_chunks:.1f} s)"
            )
        plan_args = ["plan", str(model), "--n-tokens", str(a.tokens), "--chunking", a.chunking, "--json"]
        plan, _, _ = cli(plan_args, owner)
        print(
            f"plan: {plan['chunks']} chunks, {plan['core_hours']:.3f} core-hours, "
            f"{plan['wall_hours'] * 3600:.0f} s wall on 1 node, peak {plan['peak_gb']:.2f} GB"
        )


if __name__ == "__main__":
    main()
