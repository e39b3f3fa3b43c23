"""How close the circuit's fixed-point output is to the float computation of the same graph.

    python bench/accuracy.py [--seeds 3]

For demo models of several seeds: commit (quantise + blind) as `prove` does, run EZKL's witness
generation (the values a proof would carry, no keys needed) and the float64 torch graph on the same
committed integers, and compare z_raw.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noseprint.circuits.commitment import committed_inputs  # noqa: E402
from noseprint.circuits.graph import FingerprintCircuit, choose_term_shifts  # noqa: E402
from noseprint.circuits.settings import INPUT_SCALE  # noqa: E402
from noseprint.core.layout import with_term_shifts  # noqa: E402
from noseprint.encoder import release  # noqa: E402
from noseprint.encoder.network import load_encoder  # noqa: E402
from noseprint.models.demo_model import write_demo_model  # noqa: E402
from noseprint.models.weights import read_model  # noqa: E402
from noseprint.prover.plan import circuit_input_terms  # noqa: E402

from bench.single_circuit import build_circuit, statement_inputs  # noqa: E402


def main() -> None:
    import ezkl

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'seed':>4} {'cosine':>9} {'max abs error':>14} {'max |z_raw|':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in range(args.seeds):
            model = read_model(write_demo_model(root / f"m{seed}", seed=seed), 16, None, False)
            committed, _ = committed_inputs(model.tensors(), model.layout)
            layout = with_term_shifts(model.layout, choose_term_shifts(circuit_input_terms(model.layout, committed)))
            circuit = build_circuit(layout, release.ENCODER, root / f"c{seed}")
            data = root / "input.json"
            data.write_text(json.dumps({"input_data": statement_inputs(committed, None)}))
            witness = ezkl.gen_witness(str(data), str(circuit.compiled), str(root / "w.json"), None, None)
            proven = np.array([ezkl.felt_to_float(v, circuit.output_scale) for v in witness["outputs"][0]])
            graph = FingerprintCircuit(layout, load_encoder(release.ENCODER)).double()
            with torch.no_grad():
                floats = graph(*[torch.from_numpy(c.astype(np.float64) / 2**INPUT_SCALE) for c in committed]).numpy()
            cosine = float(proven @ floats / (np.linalg.norm(proven) * np.linalg.norm(floats)))
            print(f"{seed:>4} {cosine:>9.5f} {np.abs(proven - floats).max():>14.4f} {np.abs(floats).max():>12.3f}")


if __name__ == "__main__":
    main()
