"""Radioactivity (issue 22): does a student fine-tuned on a watermarked teacher's text carry the watermark?

    python -m bench.radioactivity [--zoo bench/zoo/cache] [--teacher base0] [--student base1]
                                  [--texts 512] [--new-tokens 96] [--steps 400] [--probes 1024] [--keys 200]
                                  [--max-pairs 10000] [--threads 1] [--smoke]

Teacher: a zoo base (LLaMA, hidden 64, 4 layers, the zoo's 2,048-token vocabulary). It writes answers to prompts,
watermarked with a fresh key (Kirchenbauer, k=2, γ=0.25, δ=3 unless told) and plain. Students: another zoo base
(same tokenizer, independent weights) fine-tuned, loss on the answer tokens, on a mix in which a fraction ρ of the
answers is watermarked and the rest plain, ρ ∈ {0, 1%, 5%, 10%, 100%}. Each student is tested:

    open, supervised      reading mode over the watermarked answers it was trained on (ρ=0: all of them)
    open, unsupervised    reading mode over fresh watermarked answers it never saw
    closed, supervised    its own answers to new prompts, windows filtered to those of its watermarked training text
    closed, unsupervised  the same, filtered to the most frequent windows of the teacher's fresh watermarked output
    closed, no filter     the same, unfiltered
    membership baseline   loss/zlib on its watermarked training answers against fresh ones, KS (Carlini et al.)

Controls: the ρ=0 student and the ρ=100% student, open mode, scored with --keys random other keys (one forward
pass, many keys): the p-values should be uniform (KS p > 0.01) and the rate of p ≤ 0.05 inside its binomial 99%
interval; with deduplication off the same rate shows the false positives repeats cause.

Writes OUT/radioactivity.json (every figure and curve, timings, peak memory), OUT/table.md and OUT/radioactivity.png
(log10 p against ρ and against scored tokens), after each student and each control, so a stopped run leaves figures.
The zoo must be built first (python -m bench.zoo.build). The zoo bases are small enough to fine-tune in minutes on
2 cores, so the real shapes are used.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time
from pathlib import Path

import noseprint.watermark.generate as gen
import noseprint.watermark.membership as membership
import noseprint.watermark.radioactive as radioactive
import numpy as np
import torch
from noseprint.watermark.detect import detect, first_occurrences, log10_p_of, pair_scores
from noseprint.watermark.prf import new_key
from noseprint.watermark.schemes import DEFAULT_DELTA, KIRCHENBAUER, SchemeParams, Watermark
from noseprint.watermark.texts import Text
from scipy import stats

from bench.zoo.train import lm_loss, train_steps

RHOS = (0.0, 0.01, 0.05, 0.10, 1.0)
DEFAULT_OUT = Path("bench/results/radioactivity")
PROMPT_TOKENS = 8
LEARNING_RATE = 1e-3
FPR_LEVEL = 0.05
CONFIDENCE = 0.99
UNIFORM_KS_MIN = 0.01
PASS_FULL = -10.0
PASS_OPEN_10 = -5.0
PROBE_TEMPERATURE = 0.7
"""The suspect answers the closed-mode prompts at this temperature: nearer its mode, where a learned bias shows."""


def make_prompts(teacher, count: int, seed: int, bos: int) -> list[list[int]]:
    """Prompts are the teacher's own plain openings (PROMPT_TOKENS from BOS): in-distribution, no corpus needed."""
    starts = [[bos]] * count
    return [[bos, *ids] for ids in gen.generate(teacher, starts, None, PROMPT_TOKENS - 1, 1.0, seed)]


def answers(model, prompts, watermark, new_tokens: int, seed: int, temperature: float = 1.0) -> list[Text]:
    generated = gen.generate(model, prompts, watermark, new_tokens, temperature, seed)
    return [Text(list(p), g) for p, g in zip(prompts, generated, strict=True)]


def fine_tune(base, texts: list[Text], steps: int, seed: int):
    """SFT on the answers (prompt as context, loss on the answer tokens), as the zoo's SFT derivatives are made."""
    width = max(len(t.context) for t in texts)
    rows = torch.tensor([t.context + [0] * (width - len(t.context)) for t in texts])
    masks = torch.tensor(
        [[0] * len(t.prompt_tokens) + [1] * len(t.tokens) + [0] * (width - len(t.context)) for t in texts]
    )
    student = copy.deepcopy(base)
    stacked = torch.cat([rows, masks], dim=1)
    loss = lambda b: lm_loss(student, b[:, :width], b[:, width:].bool())  # noqa: E731
    train_steps(student, loss, stacked, steps=steps, lr=LEARNING_RATE, seed=seed, desc="student")
    return student.eval()


def mix(watermarked: list[Text], plain: list[Text], rho: float, rng) -> tuple[list[Text], list[Text]]:
    """(training set, its watermarked part): a fraction rho of the answers watermarked, the rest plain."""
    n = len(watermarked)
    count = int(round(rho * n))
    chosen = rng.choice(n, size=count, replace=False) if count else np.array([], dtype=int)
    picked = set(chosen.tolist())
    marked = [watermarked[i] for i in sorted(picked)]
    rest = [plain[i] for i in range(n) if i not in picked]
    return marked + rest, marked


def test_student(student, wm: Watermark, marked: list[Text], all_marked, fresh, probe_prompts, args) -> dict:
    k = wm.params.k
    reference = marked or all_marked  # ρ = 0: nothing was trained on; read all, as a control
    out = {
        "open_supervised": radioactive.reading_mode(student, wm, reference),
        "open_unsupervised": radioactive.reading_mode(student, wm, fresh),
    }
    own = answers(student, probe_prompts, None, args.new_tokens, seed=args.seed + 7, temperature=args.probe_temperature)
    phi_sup = radioactive.supervised_filter(reference, k)
    phi_unsup = radioactive.unsupervised_filter(fresh, k, args.filter_top)
    out["closed_supervised"] = radioactive.closed_mode(wm, own, phi_sup)
    out["closed_unsupervised"] = radioactive.closed_mode(wm, own, phi_unsup)
    out["closed_none"] = radioactive.closed_mode(wm, own, None)
    # the precautions switched off (the true key): every position read, repeats scored again
    out["open_supervised_no_dedup"] = radioactive.reading_mode(student, wm, reference, dedup=False)
    out["closed_none_no_dedup"] = radioactive.closed_mode(wm, own, None, dedup=False)
    out["membership"] = membership.membership_test(student, reference, fresh, wm.params.vocab)
    return out


def null_keys(student, texts: list[Text], params: SchemeParams, keys: int, max_pairs: int) -> dict:
    """p-values of one student's reading-mode pairs under `keys` random keys, deduplicated and not. One forward
    pass; each key hashes each distinct window once for both pair sets (the scores are the tests' own)."""
    contexts = [t.context for t in texts]
    starts = [len(t.prompt_tokens) for t in texts]
    predicted = radioactive.predictions(student, contexts, params.vocab)
    sets = {}
    for dedup in (True, False):
        pairs, _ = radioactive.reading_pairs(contexts, starts, predicted, params.k, skip_repeats=dedup)
        pairs = pairs[:max_pairs]
        if dedup:
            pairs = [pair for pair, kept in zip(pairs, first_occurrences(pairs), strict=True) if kept]
        sets["dedup" if dedup else "no_dedup"] = pairs
    p_values: dict[str, list[float]] = {name: [] for name in sets}
    union = sets["dedup"] + sets["no_dedup"]
    split = len(sets["dedup"])
    for _ in range(keys):
        scores = pair_scores(Watermark(new_key(), params), union)
        for name, part in (("dedup", scores[:split]), ("no_dedup", scores[split:])):
            p_values[name].append(10 ** log10_p_of(params, float(part.sum()), len(part)))
    low, high = stats.binom.interval(CONFIDENCE, keys, FPR_LEVEL)
    result: dict[str, dict] = {}
    for name, values in p_values.items():
        array = np.asarray(values)
        positives = int((array <= FPR_LEVEL).sum())
        result[name] = {
            "keys": keys,
            "pairs": len(sets[name]),
            "ks_uniform_p": float(stats.kstest(array, "uniform").pvalue),
            "false_positives_at_0.05": positives,
            "binomial_99_interval": [int(low), int(high)],
            "fpr_inside_interval": bool(low <= positives <= high),
        }
    result["dedup"]["uniform"] = result["dedup"]["ks_uniform_p"] > UNIFORM_KS_MIN
    return result


NO_DEDUP = ("open_supervised_no_dedup", "closed_none_no_dedup")


def write_table(results: dict, path: Path) -> None:
    columns = ["open_supervised", "open_unsupervised", "closed_supervised", "closed_unsupervised", "closed_none"]
    lines = ["| ρ | " + " | ".join(c.replace("_", " ") for c in columns) + " | MI baseline (KS) |"]
    lines.append("|---" * (len(columns) + 2) + "|")
    for rho, row in results["students"].items():
        cells = [f"{row[c]['log10_p']:.1f} ({row[c]['scored']:,})" for c in columns]
        lines.append(f"| {float(rho):.0%} | " + " | ".join(cells) + f" | {row['membership']['log10_p']:.1f} |")
    lines.append("")
    lines.append("log10 p (scored tokens). Without deduplication (the true key; open: no window skipped either):")
    for rho, row in results["students"].items():
        cells = [f"{c.replace('_', ' ')} {row[c]['log10_p']:.1f} ({row[c]['scored']:,})" for c in NO_DEDUP if c in row]
        lines.append(f"- ρ {float(rho):.0%}: " + "; ".join(cells))
    lines.append("")
    lines.append("Controls (open mode, random keys):")
    for name, control in results["controls"].items():
        for kind, c in control.items():
            if isinstance(c, dict):
                lines.append(
                    f"- {name}, {kind}: KS-uniform p {c['ks_uniform_p']:.3f}; {c['false_positives_at_0.05']} of "
                    f"{c['keys']} at p ≤ 0.05 (99% interval {c['binomial_99_interval']}); {c['pairs']:,} pairs"
                )
    path.write_text("\n".join(lines) + "\n")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rhos = [float(r) for r in results["students"]]
    shown = [max(r, 0.001) for r in rhos]
    for column in ("open_supervised", "open_unsupervised", "closed_supervised", "closed_unsupervised"):
        left.plot(shown, [row[column]["log10_p"] for row in results["students"].values()], "o-", label=column)
    left.plot(shown, [row["membership"]["log10_p"] for row in results["students"].values()], "k--", label="MI (KS)")
    left.set_xscale("log")
    left.set_xlabel("ρ (watermarked share of fine-tuning answers; 0 drawn at 0.1%)")
    for rho, row in results["students"].items():
        colour = None
        for column, style, name in (("open_supervised", "-", "open"), ("closed_supervised", ":", "closed")):
            curve = np.array(row[column]["curve"])
            if len(curve):
                (line,) = right.plot(curve[:, 0], curve[:, 1], style, color=colour, label=f"ρ={float(rho):.0%} {name}")
                colour = line.get_color()
    right.set_xscale("log")
    right.set_xlabel("scored tokens (supervised filter)")
    for axis, size in ((left, 7), (right, 6)):
        axis.set_yscale("symlog", linthresh=10)  # linear down to 1e-10, logarithmic below
        axis.set_ylim(top=1)
        for bar, label in ((PASS_OPEN_10, "1e-5"), (PASS_FULL, "1e-10")):
            axis.axhline(bar, color="grey", lw=0.6, ls="--")
            axis.annotate(label, (0.01, bar), xycoords=("axes fraction", "data"), fontsize=6, color="grey")
        axis.set_ylabel("log10 p")
        axis.legend(fontsize=size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(args) -> dict:
    torch.manual_seed(args.seed)
    teacher, tokenizer = gen.load_model(args.zoo / args.teacher)
    base, _ = gen.load_model(args.zoo / args.student)
    params = SchemeParams(args.scheme, gen.logits_size(teacher), delta=args.delta)
    key = new_key()
    wm = Watermark(key, params)
    bos = tokenizer.bos_token_id if tokenizer is not None and tokenizer.bos_token_id is not None else 1
    timings: dict[str, float] = {}
    start = time.perf_counter()
    prompts = make_prompts(teacher, args.texts, args.seed, bos)
    fresh_prompts = make_prompts(teacher, args.texts // 2, args.seed + 1, bos)
    probe_prompts = make_prompts(teacher, args.probes, args.seed + 2, bos)
    watermarked = answers(teacher, prompts, wm, args.new_tokens, args.seed + 3)
    plain = answers(teacher, prompts, None, args.new_tokens, args.seed + 4)
    fresh = answers(teacher, fresh_prompts, wm, args.new_tokens, args.seed + 5)
    timings["teacher_generation_s"] = time.perf_counter() - start
    results: dict = {
        "setup": vars(args) | {"zoo": str(args.zoo), "out": str(args.out), "params": params.to_json()},
        "teacher_detection": {"watermarked": detect(wm, watermarked), "plain": detect(wm, plain)},
        "students": {},
        "controls": {},
    }
    results["timings"] = timings
    rng = np.random.default_rng(args.seed)
    for rho in args.rhos:
        start = time.perf_counter()
        training, marked = mix(watermarked, plain, rho, rng)
        student = fine_tune(base, training, args.steps, args.seed)
        timings[f"student_{rho}_train_s"] = time.perf_counter() - start
        start = time.perf_counter()
        row = test_student(student, wm, marked, watermarked, fresh, probe_prompts, args)
        results["students"][str(rho)] = row
        timings[f"student_{rho}_tests_s"] = time.perf_counter() - start
        print(f"ρ={rho:.0%}: " + ", ".join(f"{c} {v['log10_p']:.1f}" for c, v in row.items()), flush=True)
        save(results, args)
        if rho in (0.0, 1.0):
            start = time.perf_counter()
            reference = marked or watermarked
            results["controls"][f"rho={rho:.0%}"] = null_keys(student, reference, params, args.keys, args.max_pairs)
            timings[f"control_{rho}_s"] = time.perf_counter() - start
            save(results, args)
    full, ten = results["students"].get("1.0"), results["students"].get("0.1")
    results["pass"] = {
        "rho_100_open_p_below_1e-10": bool(full and full["open_supervised"]["log10_p"] < PASS_FULL),
        "rho_100_closed_p_below_1e-10": bool(full and full["closed_supervised"]["log10_p"] < PASS_FULL),
        "rho_10_open_p_below_1e-5": bool(ten and ten["open_supervised"]["log10_p"] < PASS_OPEN_10),
        "controls_uniform_and_fpr_inside_interval": bool(results["controls"])
        and all(c["dedup"]["uniform"] and c["dedup"]["fpr_inside_interval"] for c in results["controls"].values()),
    }
    return results


def save(results: dict, args) -> None:
    """Write what there is so far (a stopped run still leaves its figures): JSON, table, plot."""
    results["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "radioactivity.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    if results["students"]:
        write_table(results, args.out / "table.md")
        plot(results, args.out / "radioactivity.png")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", type=Path, default=Path("bench/zoo/cache"))
    parser.add_argument("--teacher", default="base0")
    parser.add_argument("--student", default="base1")
    parser.add_argument("--scheme", default=KIRCHENBAUER)
    parser.add_argument("--delta", type=float, default=DEFAULT_DELTA)
    parser.add_argument("--texts", type=int, default=512, help="teacher answers per set (watermarked, plain)")
    parser.add_argument("--probes", type=int, default=1024, help="new prompts for the closed-mode test")
    parser.add_argument(
        "--probe-temperature", type=float, default=PROBE_TEMPERATURE, help="the suspect's sampling temperature (closed)"
    )
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--max-pairs", type=int, default=10_000, help="pairs scored per control key")
    parser.add_argument("--filter-top", type=int, default=radioactive.DEFAULT_FILTER_TOP)
    parser.add_argument("--rhos", type=lambda s: [float(x) for x in s.split(",")], default=list(RHOS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--smoke", action="store_true", help="a few minutes: 64 answers, 100 steps, 1,000 pairs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.texts, args.probes, args.new_tokens, args.steps, args.max_pairs = 64, 32, 48, 100, 1000
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if not (args.zoo / args.teacher / "config.json").is_file():
        raise SystemExit(f"no zoo model at {args.zoo / args.teacher}: run python -m bench.zoo.build first")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = run(args)
    results["timings"]["total_s"] = time.perf_counter() - start
    save(results, args)
    print((args.out / "table.md").read_text())
    print(json.dumps(results["pass"], indent=1))


if __name__ == "__main__":
    main()
