"""Score the zoo: which similarity tells a derived model from an independent one, and at what proof cost.

    python -m bench.zoo.evaluate [--zoo bench/zoo/cache] [--figures docs/figures]

For every pair of zoo models (derived: same `base` in zoo.json; independent:
otherwise) it computes
- PCS: raw parameter cosine (HuRef's baseline), where the two share tensor names;
- ICS: HuRef's invariant cosine on the float invariant terms;
- z-cosine for each encoder candidate, from the circuit's own (quantised) terms;
and reports ROC AUC (derived vs independent) and the margin (smallest derived
similarity minus largest independent one). Then it sweeps the token count n and
the layers used (ICS and projection z). A heat map of all pairs goes to
`--figures`, the full table to `bench/results/zoo.json`.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from noseprint.encoder.network import EncoderConfig, InvariantEncoder, load_encoder
from noseprint.lineage.fingerprint import dequantised, z_from_raw_float
from noseprint.models.invariants import invariant_cosine, layer_terms, standardise
from noseprint.models.weights import open_model
from safetensors import safe_open
from tqdm import tqdm

ZOO = Path(__file__).parent / "cache"
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures"
TOKEN_SWEEP = (4, 8, 16, 32, 64)
PROJECTION_DIMS = (32, 64, 128, 256)
SWEEP_LAYERS = (("last 1", slice(-1, None)), ("last 2", slice(-2, None)), ("last 4", slice(-4, None)))
"""The layer choices the sweep compares, as (label, slice over the per-layer terms)."""


def terms_of(folder: Path, n: int) -> dict[str, np.ndarray]:
    """Raw float terms and the circuit's quantised terms of every layer (the released z uses the last two)."""
    model = open_model(folder, n, None, allow_pickle=False)
    shape = model.layout.layers[0]
    unit = dequantised(model.embedding)
    raw, circuit = [], []
    for index in range(model.layer_count):
        weights = model.adapter.load_layer(model.checkpoint, index)
        raw.append(layer_terms(model.embedding, weights, shape))
        circuit.append(layer_terms(unit, {k: dequantised(v) for k, v in weights.items()}, shape))
    return {
        "raw": np.stack(raw),
        "circuit": standardise(np.concatenate(circuit[-2:])),
        "circuit_layers": np.stack(circuit),
        "tokens": [t.string for t in model.tokens],
    }


def z_of(encoder, circuit_terms: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        z_raw = encoder.double()(torch.from_numpy(circuit_terms).unsqueeze(0)).squeeze(0).numpy()
    return np.asarray(z_from_raw_float(z_raw), dtype=np.float64)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def parameter_cosine(a: Path, b: Path) -> float | None:
    """Cosine of all shared tensors, flattened (rows cropped to the smaller vocabulary); None across families."""
    with safe_open(a / "model.safetensors", "np") as fa, safe_open(b / "model.safetensors", "np") as fb:
        names = sorted(set(fa.keys()) & set(fb.keys()))
        if not names:
            return None
        dot = na = nb = 0.0
        for name in names:
            x, y = fa.get_tensor(name).astype(np.float64), fb.get_tensor(name).astype(np.float64)
            if x.ndim != y.ndim or x.shape[1:] != y.shape[1:]:
                return None
            rows = min(x.shape[0], y.shape[0]) if x.ndim else None
            x, y = (x[:rows], y[:rows]) if rows is not None else (x, y)
            dot, na, nb = dot + float((x * y).sum()), na + float((x * x).sum()), nb + float((y * y).sum())
        return dot / np.sqrt(na * nb)


def auc(derived: list[float], independent: list[float]) -> float:
    """Probability that a derived pair scores above an independent one (ties count one half)."""
    d, i = np.asarray(derived)[:, None], np.asarray(independent)[None, :]
    return float(((d > i).sum() + 0.5 * (d == i).sum()) / (d.size * i.size))


def summary(pairs: list[dict], key: str) -> dict:
    derived = [p[key] for p in pairs if p["derived"] and p.get(key) is not None]
    independent = [p[key] for p in pairs if not p["derived"] and p.get(key) is not None]
    if not derived or not independent:
        return {}
    worst_d = min((p for p in pairs if p["derived"] and p.get(key) is not None), key=lambda p: p[key])
    worst_i = max((p for p in pairs if not p["derived"] and p.get(key) is not None), key=lambda p: p[key])
    return {
        "auc": auc(derived, independent),
        "margin": min(derived) - max(independent),
        "derived_min": min(derived),
        "derived_mean": float(np.mean(derived)),
        "independent_max": max(independent),
        "independent_mean_abs": float(np.mean(np.abs(independent))),
        "worst_derived": f"{worst_d['a']} ~ {worst_d['b']}",
        "worst_independent": f"{worst_i['a']} ~ {worst_i['b']}",
    }


def heat_map(names: list[str], matrices: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(matrices), figsize=(9 * len(matrices), 9))
    for ax, (title, matrix) in zip(np.atleast_1d(axes), matrices.items(), strict=True):
        image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
        ax.set_yticks(range(len(names)), names, fontsize=5)
        ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def load_candidates(folder: Path) -> dict:
    encoders = {f"projection{d}": InvariantEncoder(EncoderConfig(kind="projection", z_dim=d)) for d in PROJECTION_DIMS}
    for weights in sorted(folder.glob("*.safetensors")):
        encoders[weights.stem] = load_encoder(weights)
    return encoders


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=ZOO)
    parser.add_argument("--candidates", type=Path, default=Path("encoder/weights/candidates"))
    parser.add_argument("--figures", type=Path, default=FIGURES)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--sweep-z-dim", type=int, default=128, choices=PROJECTION_DIMS)
    return parser.parse_args()


def _score_pairs(zoo: Path, names: list[str], base_of: dict[str, str], terms: dict, encoders: dict) -> list[dict]:
    """Every pair's PCS, ICS and z-cosine per encoder, labelled derived (same base) or independent."""
    zs = {e: {name: z_of(enc, terms[name]["circuit"]) for name in names} for e, enc in encoders.items()}
    pairs = []
    for a, b in tqdm(list(itertools.combinations(names, 2)), desc="pairs"):
        ta, tb = terms[a], terms[b]
        pair = {
            "a": a,
            "b": b,
            "derived": base_of[a] == base_of[b],
            "pcs": parameter_cosine(zoo / a, zoo / b),
        }
        pair["ics"] = invariant_cosine(
            ta["raw"][-2:].reshape(-1, *ta["raw"].shape[-2:]), tb["raw"][-2:].reshape(-1, *tb["raw"].shape[-2:])
        )
        for e in encoders:
            pair[f"z:{e}"] = cosine(zs[e][a], zs[e][b])
        pairs.append(pair)
    return pairs


def _print_table(names: list[str], pairs: list[dict], table: dict, tokens: int) -> None:
    """AUC and margin of each measure: the headline of the zoo."""
    print(
        f"\n{len(names)} models, {sum(p['derived'] for p in pairs)} derived pairs, "
        f"{sum(not p['derived'] for p in pairs)} independent pairs, n = {tokens}"
    )
    print(f"{'measure':<16} {'AUC':>6} {'margin':>7} {'derived min':>11} {'indep. max':>10} {'|indep.| mean':>13}")
    for key, row in table.items():
        if row:
            print(
                f"{key:<16} {row['auc']:6.3f} {row['margin']:7.3f} {row['derived_min']:11.3f} "
                f"{row['independent_max']:10.3f} {row['independent_mean_abs']:13.3f}"
            )


def _print_thresholds(table: dict) -> None:
    """The verdict thresholds each measure would give registry/compare.py."""
    print(
        "\nverdict thresholds (registry/compare.py): unrelated <= max independent + 0.05, "
        "same base >= min derived - 0.05, unsure between"
    )
    for key, row in table.items():
        if row:
            unrelated, same = calibrated_thresholds(row)
            print(f"{key:<16} unrelated <= {unrelated:.2f}   same base >= {same:.2f}")


def _print_by_kind(members: list[dict], names: list[str], pairs: list[dict], encoders: dict) -> None:
    """By derivative kind: the lowest similarity each kind keeps with its base (which edits hurt which measure)."""
    kinds = {m["name"]: m["kind"] for m in members}
    print(f"\n{'derivative':<26} {'PCS min':>8} {'ICS min':>8} " + " ".join(f"{'z:' + e:>14}" for e in encoders))
    for kind in sorted({kinds[n] for n in names if kinds[n] != "base"}):
        rows = [p for p in pairs if p["derived"] and {kinds[p["a"]], kinds[p["b"]]} == {"base", kind}]
        if rows:
            pcs = [p["pcs"] for p in rows if p["pcs"] is not None]
            print(
                f"{kind:<26} {min(pcs) if pcs else float('nan'):8.3f} {min(p['ics'] for p in rows):8.3f} "
                + " ".join(f"{min(p[f'z:{e}'] for p in rows):14.3f}" for e in encoders)
            )


def _sweep_rows(
    n: int, chosen: slice, names: list[str], base_of: dict[str, str], sweep_terms: dict, projection: torch.nn.Module
) -> list[dict]:
    """Every pair's ICS and projection-z cosine for n tokens and the chosen layers."""
    zproj = {
        name: z_of(projection, standardise(np.concatenate(sweep_terms[n][name]["circuit_layers"][chosen])))
        for name in names
    }
    rows = []
    for a, b in itertools.combinations(names, 2):
        ra, rb = sweep_terms[n][a]["raw"][chosen], sweep_terms[n][b]["raw"][chosen]
        rows.append(
            {
                "derived": base_of[a] == base_of[b],
                "a": a,
                "b": b,
                "ics": invariant_cosine(ra.reshape(-1, n, n), rb.reshape(-1, n, n)),
                "z": cosine(zproj[a], zproj[b]),
            }
        )
    return rows


def _sweep(names: list[str], base_of: dict[str, str], sweep_terms: dict, encoders: dict, z_dim: int) -> list[dict]:
    """The sweep: tokens x layers, ICS and projection z; printed as it goes, returned for the results file."""
    sweep = []
    print(f"\n{'n':>4} {'layers':<8} {'ICS AUC':>8} {'ICS margin':>10} {'z:proj AUC':>10} {'z:proj margin':>13}")
    for n in TOKEN_SWEEP:
        projection = encoders[f"projection{z_dim}"]
        for label, chosen in SWEEP_LAYERS:
            rows = _sweep_rows(n, chosen, names, base_of, sweep_terms, projection)
            s_ics, s_z = summary(rows, "ics"), summary(rows, "z")
            sweep.append({"n": n, "layers": label, "ics": s_ics, "z_projection": s_z})
            z_text = f"{s_z['auc']:10.3f} {s_z['margin']:13.3f}" if s_z else f"{'':>10} {'':>13}"
            print(f"{n:>4} {label:<8} {s_ics['auc']:8.3f} {s_ics['margin']:10.3f} {z_text}")
    return sweep


def _similarity_matrices(names: list[str], pairs: list[dict], table: dict, encoders: dict) -> dict[str, np.ndarray]:
    """Symmetric all-pairs matrices for PCS, ICS and the best encoder's z-cosine (NaN where PCS has no value)."""
    index = {name: i for i, name in enumerate(names)}
    matrices = {}
    for key, title in (
        ("pcs", "parameter cosine (PCS)"),
        ("ics", "invariant cosine (ICS)"),
        ("z:" + best_encoder(table, encoders), "z cosine"),
    ):
        matrix = np.eye(len(names))
        for p in pairs:
            value = p.get(key)
            matrix[index[p["a"]], index[p["b"]]] = matrix[index[p["b"]], index[p["a"]]] = (
                np.nan if value is None else value
            )
        matrices[f"{title} [{key}]"] = matrix
    return matrices


def main() -> None:
    args = _parse_args()
    members = json.loads((args.zoo / "zoo.json").read_text())
    names = [m["name"] for m in members]
    base_of = {m["name"]: m["base"] for m in members}
    encoders = load_candidates(args.candidates)

    sweep_terms = {n: {} for n in TOKEN_SWEEP}
    for name in tqdm(names, desc="invariants"):
        for n in TOKEN_SWEEP:
            sweep_terms[n][name] = terms_of(args.zoo / name, n)
    terms = sweep_terms[args.tokens]
    pairs = _score_pairs(args.zoo, names, base_of, terms, encoders)

    keys = ["pcs", "ics", *[f"z:{e}" for e in encoders]]
    table = {key: summary(pairs, key) for key in keys}
    _print_table(names, pairs, table, args.tokens)
    _print_thresholds(table)
    _print_by_kind(members, names, pairs, encoders)
    sweep = _sweep(names, base_of, sweep_terms, encoders, args.sweep_z_dim)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "zoo.json").write_text(json.dumps({"table": table, "pairs": pairs, "sweep": sweep}, indent=1))
    heat_map(names, _similarity_matrices(names, pairs, table, encoders), args.figures / "zoo_similarity.png")
    print(f"\nheat map: {args.figures / 'zoo_similarity.png'}; table: {RESULTS / 'zoo.json'}")


def calibrated_thresholds(row: dict, slack: float = 0.05) -> tuple[float, float]:
    """(unrelated at or below, same base at or above), `slack` inside the zoo's gap.

    Where derived and independent pairs overlap (no gap), the overlap itself, widened by
    `slack`, is the "unsure" band: neither verdict is given where the zoo saw both.
    """
    unrelated, same = row["independent_max"] + slack, row["derived_min"] - slack
    if same <= unrelated:
        unrelated, same = row["derived_min"] - slack, row["independent_max"] + slack
    return round(unrelated, 2), round(same, 2)


def best_encoder(table: dict, encoders: dict) -> str:
    return max(encoders, key=lambda e: (table[f"z:{e}"].get("auc", 0), table[f"z:{e}"].get("margin", -9)))


if __name__ == "__main__":
    main()
