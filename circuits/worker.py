"""Building a circuit and deriving its keys in a worker process, under a memory and a time limit.

EZKL aborts the process it runs in when an allocation fails (SIGABRT): in a worker, only the worker
dies, and the verifier (or the registry's server) reports a refusal. The worker only fills the caches
(`NOSEPRINT_HOME/circuits`, `NOSEPRINT_HOME/keys`); the caller then reads them, so nothing crosses the
process boundary but a job description. Staging folders a killed worker leaves behind are removed.

    python -m noseprint.circuits.worker < job.json     (what `derive_in_worker` runs)
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import noseprint.core.paths as paths
from noseprint.circuits.budget import GIB, Budget, OverBudget
from noseprint.circuits.srs import Srs
from noseprint.core.chunks import Chunking
from noseprint.core.layout import CircuitLayout
from noseprint.core.whole_model import InferenceShape, PartSizes

STAGING_PREFIXES = (".build-", ".setup-")


def fingerprint_job(layout: CircuitLayout, chunking: Chunking, srs: Srs) -> dict[str, Any]:
    return {"kind": "fingerprint", "layout": layout.to_dict(), "chunking": chunking.to_dict(), "srs": _srs_dict(srs)}


def image_job(thumbnail: Path, digest: str, srs: Srs) -> dict[str, Any]:
    return {"kind": "image", "thumbnail": str(thumbnail), "digest": digest, "srs": _srs_dict(srs)}


def inference_job(
    shape: InferenceShape,
    chunking: Chunking,
    fingerprinted: dict[int, int],
    tokens: int,
    fingerprint_tokens: int,
    logrows: int,
    sizes: PartSizes | None,
    srs: Srs,
) -> dict[str, Any]:
    """The inference circuits `build_inference` would build from these (the shape with every field it has)."""
    return {
        "kind": "inference",
        "shape": asdict(shape),
        "chunking": chunking.to_dict(),
        "fingerprinted": [[layer, index] for layer, index in fingerprinted.items()],
        "tokens": tokens,
        "fingerprint_tokens": fingerprint_tokens,
        "logrows": logrows,
        "sizes": None if sizes is None else sizes.to_dict(),
        "srs": _srs_dict(srs),
    }


InferenceArgs = tuple[InferenceShape, Chunking, dict[int, int], int, int, int, PartSizes | None]


def _inference_args(job: dict[str, Any]) -> InferenceArgs:
    """`build_inference`'s arguments from an `inference_job`."""
    sizes = None if job["sizes"] is None else PartSizes.from_dict(job["sizes"])
    fingerprinted = {int(layer): int(index) for layer, index in job["fingerprinted"]}
    return (InferenceShape(**job["shape"]), Chunking.from_dict(job["chunking"]), fingerprinted, job["tokens"],
            job["fingerprint_tokens"], job["logrows"], sizes)  # fmt: skip


def _srs_dict(srs: Srs) -> dict[str, Any]:
    return {"path": str(srs.path), "logrows": srs.logrows, "sha256": srs.sha256, "origin": srs.origin}


def run_job(job: dict[str, Any]) -> None:
    """Build (or find) the circuit and derive (or find) its verification key: the caches are the result."""
    import noseprint.encoder.release as release
    from noseprint.circuits.challenge_circuits import build_inference
    from noseprint.circuits.chunked import build_chunked
    from noseprint.circuits.image_circuit import cached_image_circuit
    from noseprint.circuits.keys import ensure_keys

    srs = Srs(Path(job["srs"]["path"]), job["srs"]["logrows"], job["srs"]["sha256"], job["srs"]["origin"])
    if job["kind"] == "fingerprint":
        layout = CircuitLayout.from_dict(job["layout"])
        chunking = Chunking.from_dict(job["chunking"])
        circuits = build_chunked(layout, chunking, release.ENCODER, release.RELEASED_ENCODER_DIGEST).all
    elif job["kind"] == "inference":
        circuits = list(build_inference(*_inference_args(job)).all.values())
    else:
        circuits = [cached_image_circuit(Path(job["thumbnail"]), job["digest"])]
    for circuit in circuits:
        if circuit.logrows == srs.logrows:  # else the caller's check of the SRS fails, with its own reason
            ensure_keys(circuit, srs, need_pk=False)


def _limit_memory(max_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def _remove_staging_since(started: float) -> None:
    """Staging folders a killed worker could not remove (its own cleanup never ran)."""
    for folder in (paths.home() / "circuits", paths.key_cache()):
        if not folder.is_dir():
            continue
        for stage in folder.iterdir():
            if stage.name.startswith(STAGING_PREFIXES) and stage.stat().st_mtime >= started - 1:
                shutil.rmtree(stage, ignore_errors=True)


def fingerprint_ready(layout: CircuitLayout, chunking: Chunking, srs: Srs) -> bool:
    """Every circuit built and its verification key derived already: checking costs nothing more."""
    import noseprint.encoder.release as release
    from noseprint.circuits.chunked import built_chunked
    from noseprint.circuits.keys import has_verification_key

    circuits = built_chunked(layout, chunking, release.RELEASED_ENCODER_DIGEST)
    return circuits is not None and all(has_verification_key(c, srs) for c in circuits.all)


def inference_ready(job: dict[str, Any], srs: Srs) -> bool:
    """Every circuit of an `inference_job` built and its verification key derived already."""
    from noseprint.circuits.build import NotCached
    from noseprint.circuits.challenge_circuits import build_inference
    from noseprint.circuits.keys import has_verification_key

    try:
        circuits = build_inference(*_inference_args(job), cached_only=True)
    except NotCached:
        return False
    return all(has_verification_key(c, srs) for c in circuits.all.values())


def image_ready(thumbnail: Path, digest: str, srs: Srs) -> bool:
    from noseprint.circuits.build import is_built
    from noseprint.circuits.image_circuit import cached_image_circuit, image_circuit_folder
    from noseprint.circuits.keys import has_verification_key

    if not is_built(image_circuit_folder(digest)):
        return False
    return has_verification_key(cached_image_circuit(thumbnail, digest), srs)


def derive_in_worker(job: dict[str, Any], budget: Budget, what: str) -> None:
    """Run `job` in a worker; OverBudget if it runs out of memory or time, with the staging cleaned up."""
    started = time.time()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "noseprint.circuits.worker"],
            input=json.dumps(job | {"max_memory_bytes": budget.max_memory_bytes}),
            capture_output=True,
            text=True,
            timeout=budget.max_seconds,
        )
    except subprocess.TimeoutExpired:
        _remove_staging_since(started)
        raise OverBudget(f"building {what} took longer than this verifier allows ({budget.max_seconds} s)") from None
    if result.returncode != 0:
        _remove_staging_since(started)
        memory = f"{budget.max_memory_bytes / GIB:.0f} GB"
        raise OverBudget(
            f"building {what} failed within this verifier's limits ({memory}, {budget.max_seconds} s): "
            f"{_last_line(result.stderr)}"
        )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def main() -> None:
    """The worker limits its own memory first (not through `preexec_fn`, which is unsafe in a threaded server
    such as the registry's), then imports torch and EZKL and runs the job."""
    job = json.loads(sys.stdin.read())
    _limit_memory(int(job["max_memory_bytes"]))
    run_job(job)


if __name__ == "__main__":
    main()
