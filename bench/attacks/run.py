"""Attacks on the fingerprint, measured on the model zoo: what each costs and what `compare` then says.

    python -m bench.attacks.run [--zoo bench/zoo/cache] [--quick]

- degrade: int8 and group-wise int4 round trips, magnitude pruning, merges, dropping or repeating the
  last layer, on every zoo base and the real all-MiniLM-L6-v2 (`bench/attacks/degrade.py`);
- function-preserving transforms (`bench/attacks/transforms.py`), through `add_function_preserving_rows`;
- adaptive: fine-tuning against the differentiable fingerprint, swept over λ and steps, with the honest
  λ = 0 control (`bench/attacks/adaptive.py`); where the verdict turns "unrelated" and at what loss;
- impersonate: an independent base pulled onto another's z (`bench/attacks/impersonate.py`);
- distill: a fresh student trained on a base's logits (`bench/attacks/distill.py`).

Prints markdown tables, writes bench/results/attacks.json and docs/figures/adaptive_attack.png.
`--quick` runs a few minutes (one base for the curves, few steps).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import noseprint.lineage.verdict as bands
import torch
from noseprint.core.fileio import write_json_atomic
from tqdm import tqdm

from bench.attacks import adaptive, degrade, distill, impersonate, transforms

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "bench" / "zoo" / "cache"
RESULTS = ROOT / "bench" / "results" / "attacks.json"
FIGURE = ROOT / "docs" / "figures" / "adaptive_attack.png"
RESULTS_MODE = 0o644
"""A results file others read (the atomic writer's temporary file would otherwise keep mode 600)."""
MINILM = "minilm"
MINILM_DERIVATIVE = "minilm-sft"
CURVE_BASES = 2
"""Bases the adaptive, impersonation and distillation curves run on (the degrade rows use every base)."""
PROBE_ROWS, PROBE_TOKENS = 4, 64
FUNCTION_PROBE = torch.arange(3, 3 + PROBE_TOKENS).reshape(2, PROBE_TOKENS // 2)
"""Token ids the float64 check of a function-preserving transform runs on (any ids in every vocabulary)."""
"""The slice of held-out text on which the largest logit change is measured."""
MINILM_PROBE = (
    "The fingerprint survives quantisation.",
    "A sentence embedding model maps text to vectors.",
    "Debian ships documentation for every package.",
    "what is python ?",
)
MERGE_ALPHA = 0.5
PRUNE_FRACTIONS = (0.2, 0.5)
DROPPED_LAYERS = 1
MERGED_DERIVATIVES = ("sft", "cpt")
"""The two fine-tunes of one base the merge row averages (both exist for every zoo base)."""


@dataclass
class Plan:
    """How much of each attack to run: the full sweep or `--quick`."""

    quick: bool
    curve_bases: int
    adaptive_lambdas: tuple[float, ...]
    adaptive_steps: tuple[int, ...]
    impersonate_lambdas: tuple[float, ...]
    impersonate_steps: int
    distill_steps: int
    degrade_bases: int | None
    """None: every base."""


def plan_for(quick: bool) -> Plan:
    if quick:
        return Plan(True, 1, adaptive.QUICK_LAMBDAS, adaptive.QUICK_STEPS, impersonate.QUICK_LAMBDAS,
                    impersonate.QUICK_STEPS, distill.QUICK_STEPS, 1)  # fmt: skip
    return Plan(False, CURVE_BASES, adaptive.LAMBDAS, adaptive.STEPS, impersonate.LAMBDAS,
                impersonate.STEPS, distill.STEPS, None)  # fmt: skip


@dataclass
class Setup:
    """What every section (and the function-preserving hook) works from."""

    zoo: Path
    workdir: Path
    corpus: adaptive.Corpus
    plan: Plan
    bases: list[str]
    members: dict[str, dict[str, Any]] = field(default_factory=dict)

    def folder(self, name: str) -> Path:
        return self.zoo / name


# --------------------------------------------------------------------------------------------- degrade


Degradation = Callable[[Path, Path], Path]


def degradations() -> dict[str, Degradation]:
    """The single-model degradations, by row name (the merge rows need a second model, see `merge_rows`)."""
    named: dict[str, Degradation] = {
        "int8 (per-channel)": degrade.quantise_int8,
        f"int4 (groups of {degrade.DEFAULT_INT4_GROUP})": degrade.quantise_int4_grouped,
    }
    for fraction in PRUNE_FRACTIONS:
        named[f"prune {fraction:.0%}"] = lambda s, t, f=fraction: degrade.prune(s, t, f)
    named[f"drop last {DROPPED_LAYERS} layer"] = lambda s, t: degrade.drop_last_layers(s, t, DROPPED_LAYERS)
    named["duplicate last layer"] = degrade.duplicate_last_layer
    return named


def function_change(setup: Setup, base: Path, changed: Path, causal: bool) -> dict[str, Any]:
    """Largest output change on a probe; for the zoo's LMs also the held-out and Debian-text loss change."""
    if not causal:
        probe = minilm_probe(base)
        return {
            "max_output_change": degrade.max_output_change(base, changed, probe),
            "embedding_cosine": sentence_embedding_cosine(base, changed, probe),
        }
    probe = setup.corpus.held_out[:PROBE_ROWS, :PROBE_TOKENS]
    before, after = adaptive.load_causal(base), adaptive.load_causal(changed)
    return {
        "max_output_change": degrade.max_output_change(base, changed, probe),
        "loss_change": adaptive.held_out_loss(after, setup.corpus) - adaptive.held_out_loss(before, setup.corpus),
        "other_loss_change": adaptive.other_loss(after, setup.corpus) - adaptive.other_loss(before, setup.corpus),
    }


def sentence_embedding_cosine(base: Path, changed: Path, probe: torch.Tensor) -> float:
    """Mean cosine between the two models' sentence embeddings (mean-pooled, as all-MiniLM-L6-v2 pools)."""
    pooled = [degrade.outputs(degrade.load_network(folder), probe).mean(dim=1) for folder in (base, changed)]
    return float(torch.nn.functional.cosine_similarity(*pooled, dim=-1).mean())


def minilm_probe(folder: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return tokenizer(list(MINILM_PROBE), padding=True, return_tensors="pt")["input_ids"]


def degrade_row(setup: Setup, model: str, attack: str, changed: Path, causal: bool) -> dict[str, Any]:
    base = setup.folder(model)
    reference = fingerprint_of(setup, model)
    row = {"table": "degrade", "model": model, "attack": attack}
    return row | function_change(setup, base, changed, causal) | degrade.similarity(reference, changed)


def fingerprint_of(setup: Setup, model: str) -> Path:
    """Each zoo model is fingerprinted once per run; every row compares against that folder."""
    target = setup.workdir / "fingerprints" / model
    if not target.exists():
        degrade.fingerprint_once(setup.folder(model), target)
    return target


def merge_rows(setup: Setup, model: str, causal: bool) -> list[dict[str, Any]]:
    """Two fine-tunes of one base averaged; for the zoo also two unrelated bases averaged (a contrast)."""
    rows = []
    if causal:
        a, b = (f"{model}-{kind}" for kind in MERGED_DERIVATIVES)
        pairs = [(a, b, f"merge {MERGED_DERIVATIVES[0]}+{MERGED_DERIVATIVES[1]} (α {MERGE_ALPHA})")]
        others = [name for name in setup.bases if name != model]
        if others:
            pairs.append((model, others[0], f"merge with unrelated {others[0]} (α {MERGE_ALPHA})"))
    else:
        pairs = [(model, MINILM_DERIVATIVE, f"merge base+sft (α {MERGE_ALPHA})")]
    for a, b, attack in pairs:
        if not (setup.folder(a).exists() and setup.folder(b).exists()):
            continue
        target = setup.workdir / "degrade" / f"{model}-{attack.split()[0]}-{b}"
        degrade.merge(setup.folder(a), setup.folder(b), target, MERGE_ALPHA)
        rows.append(degrade_row(setup, model, attack, target, causal))
    return rows


def degrade_model(setup: Setup, model: str, causal: bool) -> list[dict[str, Any]]:
    rows = []
    for attack, transform in tqdm(degradations().items(), desc=f"degrade {model}", leave=False):
        target = setup.workdir / "degrade" / f"{model}-{len(rows)}"
        transform(setup.folder(model), target)
        rows.append(degrade_row(setup, model, attack, target, causal))
        shutil.rmtree(target)
    return rows + merge_rows(setup, model, causal)


def run_degrade(setup: Setup) -> list[dict[str, Any]]:
    chosen = setup.bases[: setup.plan.degrade_bases] if setup.plan.degrade_bases else setup.bases
    rows = []
    for model in tqdm(chosen, desc="degrade (zoo bases)"):
        rows += degrade_model(setup, model, causal=True)
    if setup.folder(MINILM).exists():
        rows += degrade_model(setup, MINILM, causal=False)
    return rows


FUNCTION_PRESERVING_CHAINS: dict[str, tuple[str, ...]] = {
    "fold norms": ("fold_norms",),
    "fold norms + rotate residual": ("fold_norms", "rotate_residual"),
    "permute residual": ("permute_residual",),
    "shift along ones": ("shift_along_ones",),
    "scale residual": ("scale_residual",),
}
"""Rows of the function-preserving table; the last row composes every transform that applies."""


def function_preserving_chains(model: torch.nn.Module) -> dict[str, tuple[str, ...]]:
    """The chains that apply to this model, plus "all composed" (every applicable transform, in order)."""
    chains = {
        label: names
        for label, names in FUNCTION_PRESERVING_CHAINS.items()
        if transforms.compose(*names).applies_to(model)
    }
    everything = tuple(name for name in transforms.FUNCTION_PRESERVING if name in transforms.applicable(model))
    chains["all composed: " + " > ".join(everything)] = everything
    return chains


def add_function_preserving_rows(rows: list[dict[str, Any]], setup: Setup) -> None:
    """Every function-preserving transform (`bench/attacks/transforms.py`), alone and composed, on every zoo
    base and on MiniLM: the output change, ICS, z-cosine and verdict against the untouched model."""
    chosen = [*setup.bases, MINILM] if setup.folder(MINILM).exists() else list(setup.bases)
    for model_name in tqdm(chosen, desc="function-preserving"):
        folder = setup.folder(model_name)
        network = degrade.load_network(folder).double()
        for seed, (label, names) in enumerate(function_preserving_chains(network).items()):
            target = setup.workdir / "function-preserving" / f"{model_name}-{seed}"
            changed = transforms.compose(*names)(network, seed)
            adaptive.save_like(changed.float(), folder, target)
            row = degrade_row(setup, model_name, label, target, causal=model_name != MINILM)
            row["table"] = "function-preserving"
            row["max_output_change_float64"] = transforms.max_logit_change(network, changed, FUNCTION_PROBE)
            rows.append(row)
            shutil.rmtree(target)


# --------------------------------------------------------------------------------------------- curves


def run_adaptive(setup: Setup) -> list[dict[str, Any]]:
    rows = []
    for model in setup.bases[: setup.plan.curve_bases]:
        rows += adaptive.sweep(
            setup.folder(model),
            setup.corpus,
            setup.workdir / "adaptive",
            weights=setup.plan.adaptive_lambdas,
            step_counts=setup.plan.adaptive_steps,
        )
    return rows


def run_impersonate(setup: Setup) -> list[dict[str, Any]]:
    """Each curve base impersonated by the next base (base1 as base0, base0 as base1)."""
    chosen = setup.bases[: max(2, setup.plan.curve_bases)]
    if len(chosen) < 2:
        return []
    rows = []
    for index, target in enumerate(chosen[: setup.plan.curve_bases]):
        source = chosen[(index + 1) % len(chosen)]
        rows += impersonate.sweep(
            setup.folder(source),
            setup.folder(target),
            setup.corpus,
            setup.workdir / "impersonate",
            weights=setup.plan.impersonate_lambdas,
            steps=setup.plan.impersonate_steps,
        )
    return rows


def run_distill(setup: Setup) -> list[dict[str, Any]]:
    return [
        distill.distill(setup.folder(model), setup.corpus, setup.workdir / "distill", steps=setup.plan.distill_steps)
        for model in setup.bases[: setup.plan.curve_bases]
    ]


# --------------------------------------------------------------------------------------------- reporting


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def weight_text(value: float) -> str:
    """λ as written in the sweep (0.1, 10, 1000, ∞)."""
    return "∞" if math.isinf(value) else f"{value:g}"


def cell(key: str, value: Any) -> str:
    return weight_text(value) if key == "lambda" else number(value)


def markdown(title: str, columns: list[tuple[str, str]], rows: Iterable[dict[str, Any]]) -> str:
    """A markdown table: `columns` are (header, row key)."""
    lines = [f"### {title}", "", "| " + " | ".join(h for h, _ in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(cell(key, row.get(key)) for _, key in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


SIMILARITY_COLUMNS = [
    ("ICS", "ics"),
    ("z-cosine", "z_cosine"),
    ("verdict", "verdict"),
    ("verdict (z only)", "verdict_z"),
]
DEGRADE_COLUMNS = [("model", "model"), ("attack", "attack"), ("max output change", "max_output_change"),
                   ("held-out loss change", "loss_change"), ("Debian-text loss change", "other_loss_change"),
                   ("sentence-embedding cosine", "embedding_cosine"),
                   *SIMILARITY_COLUMNS]  # fmt: skip
ADAPTIVE_COLUMNS = [("base", "base"), ("λ", "lambda"), ("steps", "steps"), ("held-out loss", "held_out_loss"),
                    ("Δ vs base", "loss_vs_base"), ("Δ vs λ=0 control", "loss_vs_control"),
                    ("Debian-text Δ vs base", "other_vs_base"), *SIMILARITY_COLUMNS]  # fmt: skip
IMPERSONATE_COLUMNS = [("source", "source"), ("target", "target"), ("λ", "lambda"), ("pulls", "aim"),
                       ("steps", "steps"),
                       ("held-out loss paid", "loss_vs_source"), ("Δ vs λ=0 control", "loss_vs_control"),
                       ("z-cos before", "start_z_cosine"),
                       ("z-cos to own base", "z_cosine_to_source"), ("verdict to own base", "verdict_to_source"),
                       *SIMILARITY_COLUMNS]  # fmt: skip
DISTILL_COLUMNS = [("teacher", "teacher"), ("steps", "steps"), ("final KL", "final_kl"),
                   ("teacher held-out loss", "teacher_held_out_loss"),
                   ("student held-out loss", "student_held_out_loss"),
                   ("ICS at init", "ics_at_init"), *SIMILARITY_COLUMNS]  # fmt: skip


def onsets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per base and per verdict kind, the cheapest adaptive point called unrelated (None: never reached)."""
    found: dict[str, Any] = {}
    for base in sorted({r["base"] for r in rows}):
        mine = [r for r in rows if r["base"] == base]
        found[base] = {key: adaptive.unrelated_onset(mine, key) for key in ("verdict", "verdict_z")}
    return found


def onset_lines(found: dict[str, Any]) -> str:
    lines = []
    for base, kinds in found.items():
        for key, point in kinds.items():
            what = "ICS verdict (model folders)" if key == "verdict" else "z-only verdict (bundles)"
            if point is None:
                lines.append(f'- {base}, {what}: never "unrelated" on this sweep')
            else:
                lines.append(
                    f'- {base}, {what}: "unrelated" from λ = {weight_text(point["lambda"])}, {point["steps"]} steps, '
                    f"held-out loss +{point['loss_vs_control']:.3f} nats over the λ = 0 control "
                    f"(+{point['loss_vs_base']:.3f} over the base; "
                    f"ICS {point['ics']:.3f}, z-cosine {point['z_cosine']:.3f})"
                )
    return "\n".join(lines) + "\n"


def forgery_successes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (source, target) and verdict kind, the cheapest forgery that reads as "same base model" as the target."""
    found: dict[str, Any] = {}
    for pair in sorted({(r["source"], r["target"]) for r in rows}):
        mine = [r for r in rows if (r["source"], r["target"]) == pair]
        found["→".join(pair)] = {
            key: min((r for r in mine if r[key] == bands.SAME), key=lambda r: r["loss_vs_source"], default=None)
            for key in ("verdict", "verdict_z")
        }
    return found


def forgery_lines(found: dict[str, Any]) -> str:
    lines = []
    for pair, kinds in found.items():
        for key, point in kinds.items():
            what = "ICS verdict (model folders)" if key == "verdict" else "z-only verdict (bundles)"
            if point is None:
                lines.append(f'- {pair}, {what}: never "same base model" as the target')
            else:
                lines.append(
                    f'- {pair}, {what}: "same base model" at λ = {weight_text(point["lambda"])} '
                    f"(pulling {point['aim']}), held-out loss +{point['loss_vs_source']:.3f} nats "
                    f"(ICS {point['ics']:.3f}, z-cosine {point['z_cosine']:.3f})"
                )
    return "\n".join(lines) + "\n"


def with_forgery_control(forgeries: list[dict[str, Any]], adaptive_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`loss_vs_control`: a forgery's held-out loss over the honest (λ = 0) fine-tune of its own base for as
    many steps: the adaptive sweep's control, the same loop, seed and rate. Most of `loss_vs_source` is
    that fine-tune's drift, not the forgery's price."""
    control = {(r["base"], r["steps"]): r["held_out_loss"] for r in adaptive_rows if r["lambda"] == 0}
    return [
        r | {"loss_vs_control": r["held_out_loss"] - control[(r["source"], r["steps"])]}
        if (r["source"], r["steps"]) in control
        else r
        for r in forgeries
    ]


def json_safe(value: Any) -> Any:
    """λ = ∞ as the string "inf": strict JSON has no infinity."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def report(results: dict[str, Any]) -> str:
    parts = [
        markdown("Degrading transforms (similarity to the untouched model)", DEGRADE_COLUMNS, results["degrade"]),
        markdown("Function-preserving transforms", DEGRADE_COLUMNS, results["function_preserving"]),
        markdown("Adaptive attacker (LM loss + λ·similarity to the original)", ADAPTIVE_COLUMNS, results["adaptive"]),
        'Where "unrelated" starts on the adaptive curve:\n\n' + onset_lines(results["adaptive_onset"]),
        markdown("Impersonator (LM loss − λ·similarity to the target)", IMPERSONATE_COLUMNS, results["impersonate"]),
        "Cheapest forgery that reads as the target's lineage:\n\n" + forgery_lines(results["forgery_success"]),
        markdown("Distillation into fresh weights", DISTILL_COLUMNS, results["distill"]),
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------- the figure


BAND_COLOURS = {bands.UNRELATED: "#f4cccc", bands.UNSURE: "#fff2cc", bands.SAME: "#d9ead3"}
AXES = (("z_cosine", "z-cosine (evade: to the original)", bands.Z_SAME, bands.Z_UNRELATED),
        ("ics", "ICS (evade: to the original)", bands.ICS_SAME, bands.ICS_UNRELATED))  # fmt: skip
MARKERS = ("o", "s", "^", "D")


def shade_bands(axis, same: float, unrelated: float) -> None:
    low = -1.0
    axis.axvspan(low, unrelated, color=BAND_COLOURS[bands.UNRELATED], label=bands.UNRELATED)
    axis.axvspan(unrelated, same, color=BAND_COLOURS[bands.UNSURE], label=bands.UNSURE)
    axis.axvspan(same, 1.0, color=BAND_COLOURS[bands.SAME], label=bands.SAME)


def plot_adaptive(axis, rows: list[dict[str, Any]], key: str) -> None:
    """One line per (base, steps): the λ sweep from the honest fine-tune to the strongest attack. Only the
    longest series get λ labels (the shorter ones share the λ values and would overprint them)."""
    longest = max((r["steps"] for r in rows), default=0)
    for index, (base, steps) in enumerate(sorted({(r["base"], r["steps"]) for r in rows})):
        points = sorted((r for r in rows if (r["base"], r["steps"]) == (base, steps)), key=lambda r: r["lambda"])
        xs, ys = [r[key] for r in points], [r["loss_vs_control"] for r in points]
        axis.plot(xs, ys, marker=MARKERS[index % len(MARKERS)], label=f"evade {base}, {steps} steps")
        if steps != longest:
            continue
        for r in points[1:]:
            axis.annotate(f"λ={weight_text(r['lambda'])}", (r[key], r["loss_vs_control"]), fontsize=6,
                          textcoords="offset points", xytext=(3, -8))  # fmt: skip


def plot_impersonation(axis, rows: list[dict[str, Any]], key: str) -> None:
    """Forgeries: similarity to the target they pull toward, held-out loss over their own base's λ = 0 fine-tune."""
    for r in rows:
        paid = r.get("loss_vs_control", r["loss_vs_source"])
        axis.scatter(r[key], paid, marker="x", color="black", zorder=3)
        if math.isinf(r["lambda"]):
            axis.annotate(f"λ=∞ ({r['aim']})", (r[key], paid), fontsize=6, textcoords="offset points", xytext=(-40, 4))
    if rows:
        axis.scatter([], [], marker="x", color="black", label="impersonate (x: similarity to the target)")


def plot(results: dict[str, Any], path: Path) -> None:
    """Held-out loss paid over the honest λ = 0 fine-tune against each similarity, verdict bands shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    for axis, (key, label, same, unrelated) in zip(panels, AXES, strict=True):
        shade_bands(axis, same, unrelated)
        plot_adaptive(axis, results["adaptive"], key)
        plot_impersonation(axis, results["impersonate"], key)
        axis.set_xlim(-1.0, 1.0)
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    panels[0].set_ylabel("held-out loss paid over the λ = 0 fine-tune (nats)")
    panels[0].legend(fontsize=7, loc="lower left")  # the empty corner: no attack lands there
    figure.suptitle("Fine-tuning against the fingerprint: loss paid for each similarity (verdict bands shaded)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --------------------------------------------------------------------------------------------- main


def zoo_setup(zoo: Path, workdir: Path, plan: Plan) -> Setup:
    record = zoo / "zoo.json"
    if not record.exists():
        raise SystemExit(f"{record} not found: build the zoo first (python -m bench.zoo.build)")
    members = {m["name"]: m for m in json.loads(record.read_text())}
    bases = [name for name, m in members.items() if m["kind"] == "base" and name != MINILM and (zoo / name).exists()]
    if not bases:
        raise SystemExit(f"{record} lists no zoo base")
    corpus = adaptive.load_corpus(zoo / bases[0])
    return Setup(zoo, workdir, corpus, plan, bases, members)


SECTIONS = (("degrade", run_degrade), ("adaptive", run_adaptive), ("impersonate", run_impersonate),
            ("distill", run_distill))  # fmt: skip


def run(setup: Setup) -> dict[str, Any]:
    started = time.time()
    results: dict[str, Any] = {"quick": setup.plan.quick, "zoo": str(setup.zoo), "bases": setup.bases, "seconds": {}}
    for name, section in SECTIONS:
        began = time.time()
        results[name] = section(setup)
        results["seconds"][name] = time.time() - began
        if name == "degrade":
            results["function_preserving"] = []
            add_function_preserving_rows(results["function_preserving"], setup)
    results["adaptive_onset"] = onsets(results["adaptive"])
    results["impersonate"] = with_forgery_control(results["impersonate"], results["adaptive"])
    results["forgery_success"] = forgery_successes(results["impersonate"])
    results["thresholds"] = {"ics": [bands.ICS_UNRELATED, bands.ICS_SAME], "z": [bands.Z_UNRELATED, bands.Z_SAME]}
    results["seconds"]["total"] = time.time() - started
    return results


def function_preserving_only(args: argparse.Namespace) -> None:
    """The function-preserving table alone, written beside the full results."""
    workdir = degrade.scratch_dir("attacks")
    rows: list[dict[str, Any]] = []
    try:
        add_function_preserving_rows(rows, zoo_setup(args.zoo, workdir, plan_for(args.quick)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for row in rows:
        change = row.get("max_output_change_float64", float("nan"))
        print(f"| {row['model']} | {row['attack']} | {change:.1e} | {row['ics']:.4f} | {row['z_cosine']:.4f} | "
              f"{row['verdict']} |")  # fmt: skip
    target = args.results.with_name("attacks-function-preserving.json")
    write_json_atomic(target, json_safe({"function_preserving": rows}), mode=RESULTS_MODE)
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=ZOO)
    parser.add_argument("--quick", action="store_true", help="one base for the curves, few steps (a few minutes)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument(
        "--function-preserving-only", action="store_true", help="only the function-preserving table (minutes)"
    )
    args = parser.parse_args()
    if args.function_preserving_only:
        function_preserving_only(args)
        return
    warnings.filterwarnings("ignore", message=".*requires_grad.*")  # the zoo loop logs float(loss)
    workdir = degrade.scratch_dir("attacks")
    try:
        results = run(zoo_setup(args.zoo, workdir, plan_for(args.quick)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(results))
    print(f"total {results['seconds']['total']:.0f} s; sections: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in results["seconds"].items() if k != "total"))  # fmt: skip
    write_json_atomic(args.results, json_safe(results), mode=RESULTS_MODE)
    plot(results, args.figure)
    print(f"wrote {args.results} and {args.figure}")


if __name__ == "__main__":
    main()
