"""Issue 21: `noseprint fingerprint` beside the floor (reading exactly the needed tensors with safetensors, no
arithmetic), in one run, on random fp16 checkpoints of real shapes, page cache warm.

    python -m bench.disk_speed --dir /tmp/np21 --shapes 7b 70b     # writes, measures, deletes

Each checkpoint is *partial*, as a download of only what the fingerprint reads would be: its index names every
shard of the real layout (embedding, one shard per layer, LM head), but only the shards holding the embedding
and the last two layers are written (the 70B shape: 5.5 GB on disk instead of 141 GB). The floor processes
import torch and safetensors and read every tensor of the last two layers plus the 16 embedding rows, no
arithmetic: `floor copied` clones each tensor out of the map into new memory (as last stop), `floor buffered`
copies its bytes through one reused 2 MB buffer (no fresh memory faulted in: the stricter floor);
`noseprint fingerprint` does everything (tokenizer, tokens, streamed terms, encoder, picture). Peak RSS and
private memory (RSS less the shared, file-backed pages: mapped pages count in RSS while mapped, but they
are page cache, not the process's) are sampled every 50 ms. Last, the streamed terms alone are timed inside
one process (wall and CPU seconds), to show how much of the command is reading and multiplying.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch
from noseprint.models.demo_model import build_tokenizer
from safetensors.torch import save_file

TOKENIZER_WORDS = 31_997
"""The bench tokenizer's words (a word-level tokenizer of 32,000 entries, as in bench/big_checkpoint.py)."""
WEIGHT_STD = 0.02
REPEATS = 3
FINGERPRINTED = 2
TOKENS = 16


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int

    def layer_tensors(self, index: int) -> dict[str, tuple[int, ...]]:
        head_dim = self.hidden // self.heads
        kv = self.kv_heads * head_dim
        p = f"model.layers.{index}."
        return {
            f"{p}self_attn.q_proj.weight": (self.hidden, self.hidden),
            f"{p}self_attn.k_proj.weight": (kv, self.hidden),
            f"{p}self_attn.v_proj.weight": (kv, self.hidden),
            f"{p}self_attn.o_proj.weight": (self.hidden, self.hidden),
            f"{p}mlp.gate_proj.weight": (self.ffn, self.hidden),
            f"{p}mlp.up_proj.weight": (self.ffn, self.hidden),
            f"{p}mlp.down_proj.weight": (self.hidden, self.ffn),
            f"{p}input_layernorm.weight": (self.hidden,),
            f"{p}post_attention_layernorm.weight": (self.hidden,),
        }


SHAPES = {
    "7b": Shape("LLaMA-2-7B", 4096, 11008, 32, 32, 32, 32_000),
    "70b": Shape("Llama-3-70B (GQA 64/8, vocab 128,256)", 8192, 28672, 80, 64, 8, 128_256),
}


def write_partial(folder: Path, shape: Shape) -> int:
    """Config, tokenizer, the full index, and only the needed shards; returns the bytes the fingerprint needs."""
    folder.mkdir(parents=True)
    build_tokenizer(TOKENIZER_WORDS).save_pretrained(str(folder))
    config = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": shape.hidden,
        "intermediate_size": shape.ffn, "num_hidden_layers": shape.layers, "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads, "vocab_size": shape.vocab, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": "float16",
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    count = shape.layers + 2
    shards: list[dict[str, tuple[int, ...]]] = [
        {"model.embed_tokens.weight": (shape.vocab, shape.hidden), "model.norm.weight": (shape.hidden,)}
    ]
    shards += [shape.layer_tensors(i) for i in range(shape.layers)]
    shards.append({"lm_head.weight": (shape.vocab, shape.hidden)})
    names = [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
    weight_map = {tensor: names[i] for i, shard in enumerate(shards) for tensor in shard}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    generator = torch.Generator().manual_seed(0)
    needed = 0
    for i in [0, *range(count - 1 - FINGERPRINTED, count - 1)]:
        tensors = {
            name: torch.empty(dims, dtype=torch.float16).normal_(0, WEIGHT_STD, generator=generator)
            for name, dims in shards[i].items()
        }
        save_file(tensors, str(folder / names[i]), metadata={"format": "pt"})
        if i:
            needed += sum(t.numel() * 2 for t in tensors.values())
        del tensors
    return needed


FLOOR = """
import json, sys
import torch
from safetensors import safe_open
folder, layers, tokens, buffered = sys.argv[1], json.loads(sys.argv[2]), {tokens}, sys.argv[3] == "buffered"
index = json.load(open(folder + "/model.safetensors.index.json"))["weight_map"]
wanted = [n for n in index if any(f"layers.{{i}}." in n for i in layers)]
chunk = 1 << 20
buffer = torch.empty(chunk, dtype=torch.float16)
if buffered:
    torch.set_num_threads(1)  # one copy per MB: no thread pool to wake (and wait for, on a busy machine) each time
total = 0
for name in wanted:
    with safe_open(folder + "/" + index[name], framework="pt") as handle:
        if not buffered:  # clone: the bytes are read, not only mapped, into new memory
            total += handle.get_tensor(name).clone().numel()
            continue
        flat = handle.get_tensor(name).view(-1)  # the bytes copied through one reused 2 MB buffer
        for start in range(0, flat.numel(), chunk):
            part = flat[start : start + chunk]
            buffer[: part.numel()].copy_(part)
        total += flat.numel()
with safe_open(folder + "/" + index["model.embed_tokens.weight"], framework="pt") as handle:
    view = handle.get_slice("model.embed_tokens.weight")
    rows = [view[i : i + 1].clone() for i in range(3, 3 + tokens)]
print(total)
"""
"""The floor: read the needed tensors, no arithmetic. `copied`: each tensor cloned out of the map into new
memory (last stop's floor); `buffered`: copied through one reused buffer, so no fresh memory is faulted in
(the stricter floor: what reading the bytes costs, as the fingerprint reads them)."""
FLOORS = ("copied", "buffered")


TERMS = """
import sys, time
from pathlib import Path
from noseprint.lineage.fingerprint import streamed_terms
from noseprint.models.weights import open_model
model = open_model(Path(sys.argv[1]), 16, None, False)
wall, cpu = time.perf_counter(), time.process_time()
streamed_terms(model, progress=False)
print(f"{time.perf_counter() - wall:.2f} {time.process_time() - cpu:.2f}")
"""


SAMPLE_S = 0.05


def run_sampled(command: list[str]) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """Wall seconds, peak RSS and peak private memory (RSS - shared) in GB of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = [0, 0]

    def sample() -> None:
        try:
            handle = psutil.Process(proc.pid)
            while proc.poll() is None:
                info = handle.memory_info()
                peaks[0], peaks[1] = max(peaks[0], info.rss), max(peaks[1], info.rss - info.shared)
                time.sleep(SAMPLE_S)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    seconds = time.perf_counter() - start
    return subprocess.CompletedProcess(command, proc.returncode, out, err), seconds, peaks[0] / 2**30, peaks[1] / 2**30


def measure(shape: Shape, folder: Path, out: Path, repeats: int) -> list[dict]:
    layers = list(range(shape.layers - FINGERPRINTED, shape.layers))
    floor = [sys.executable, "-c", FLOOR.format(tokens=TOKENS), str(folder), json.dumps(layers)]
    commands = {f"floor {kind}": [*floor, kind] for kind in FLOORS}
    commands["noseprint"] = [sys.executable, "-m", "noseprint.cli", "fingerprint", str(folder), "--out", str(out)]
    commands["noseprint"].append("--force")
    run_sampled(commands["floor copied"])  # warm the page cache
    rows = []
    for _ in range(repeats):
        for label, command in commands.items():
            result, seconds, peak, private = run_sampled(command)
            if result.returncode:
                raise SystemExit(f"{label} failed: {result.stderr[-2000:]}")
            rows.append(
                {"shape": shape.name, "what": label, "seconds": seconds, "peak_gb": peak, "private_gb": private}
            )
            print(f"  {label:15s} {seconds:6.2f} s  peak RSS {peak:5.2f} GB  private {private:5.2f} GB", flush=True)
    for kind in FLOORS:
        floors, ours = rows[FLOORS.index(kind) :: 3], rows[2::3]
        pairs = [mine["seconds"] / floor["seconds"] for floor, mine in zip(floors, ours, strict=True)]
        print(f"  noseprint / floor {kind}, repeat by repeat: {', '.join(f'{r:.2f}x' for r in pairs)}", flush=True)
    terms = subprocess.run([sys.executable, "-c", TERMS, str(folder)], capture_output=True, text=True, check=True)
    wall, cpu = terms.stdout.split()
    print(f"  in-process streamed terms: {wall} s wall, {cpu} s CPU", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["7b", "70b"])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--keep", action="store_true", help="Leave the checkpoints on disk.")
    args = parser.parse_args()
    summary = []
    for key in args.shapes:
        shape, folder = SHAPES[key], args.dir / f"partial-{key}"
        start = time.perf_counter()
        if not (folder / "config.json").is_file():
            needed = write_partial(folder, shape)
            print(f"{shape.name}: wrote the needed shards in {time.perf_counter() - start:.0f} s", flush=True)
        else:
            needed = sum(
                2 * _numel(d) for i in range(shape.layers - 2, shape.layers) for d in shape.layer_tensors(i).values()
            )
        on_disk = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
        print(f"{shape.name}: {needed / 1e9:.2f} GB needed, {on_disk / 1e9:.2f} GB on disk", flush=True)
        rows = measure(shape, folder, args.dir / f"fp-{key}", args.repeats)
        best = {
            what: min((r for r in rows if r["what"] == what), key=lambda r: r["seconds"])
            for what in ("floor copied", "floor buffered", "noseprint")
        }
        summary.append((shape.name, needed, best))
        if not args.keep:
            shutil.rmtree(folder)
    print(
        "\n| shape | needed | floor: copied / buffered | noseprint | ratio to copied / buffered "
        "| peak RSS (floors / noseprint) | peak private (floors / noseprint) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, needed, best in summary:
        copied, buffered, ours = best["floor copied"], best["floor buffered"], best["noseprint"]
        print(f"| {name} | {needed / 1e9:.2f} GB | {copied['seconds']:.2f} / {buffered['seconds']:.2f} s "
              f"| {ours['seconds']:.2f} s | {ours['seconds'] / copied['seconds']:.1f}x / "
              f"{ours['seconds'] / buffered['seconds']:.1f}x "
              f"| {copied['peak_gb']:.2f} / {buffered['peak_gb']:.2f} / {ours['peak_gb']:.2f} GB "
              f"| {copied['private_gb']:.2f} / {buffered['private_gb']:.2f} / {ours['private_gb']:.2f} GB "
              "|")  # fmt: skip


def _numel(dims: tuple[int, ...]) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


if __name__ == "__main__":
    main()
