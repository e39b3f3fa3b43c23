"""The fast fingerprint and `compare`: a re-parametrised model reads as the same, an independent one does not."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
from noseprint.lineage.compare import compare
from PIL import Image

from tests.conftest import save_tiny, tiny_llama


def permuted_copy(model, seed: int = 5):
    """FFN neurons permuted and Q/K of each head rotated by the same orthogonal map: outputs unchanged."""
    rng = np.random.default_rng(seed)
    cfg = model.config
    hd = cfg.hidden_size // cfg.num_attention_heads
    with torch.no_grad():
        for layer in model.model.layers:
            p = torch.from_numpy(rng.permutation(cfg.intermediate_size))
            layer.mlp.gate_proj.weight.copy_(layer.mlp.gate_proj.weight[p])
            layer.mlp.up_proj.weight.copy_(layer.mlp.up_proj.weight[p])
            layer.mlp.down_proj.weight.copy_(layer.mlp.down_proj.weight[:, p])
            # Swap the two halves of the V/O inner space of each head (a permutation, function-preserving).
            for h in range(cfg.num_key_value_heads):
                idx = torch.arange(h * hd, (h + 1) * hd)
                perm = idx[torch.from_numpy(rng.permutation(hd))]
                layer.self_attn.v_proj.weight[idx] = layer.self_attn.v_proj.weight[perm].clone()
                group = cfg.num_attention_heads // cfg.num_key_value_heads
                for g in range(group):
                    q_idx = torch.arange((h * group + g) * hd, (h * group + g + 1) * hd)
                    q_perm = q_idx[perm - h * hd]
                    layer.self_attn.o_proj.weight[:, q_idx] = layer.self_attn.o_proj.weight[:, q_perm].clone()
    return model


def test_reparametrised_model_is_the_same_and_an_independent_one_is_not(tmp_path):
    base = tiny_llama(seed=0, hidden=32, heads=4, kv_heads=2, ffn=64)
    ids = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        before = base(ids).logits
    a = save_tiny(base, tmp_path / "a")
    b = save_tiny(permuted_copy(base), tmp_path / "b")
    with torch.no_grad():
        torch.testing.assert_close(base(ids).logits, before, rtol=1e-4, atol=1e-5)  # function preserved
    c = save_tiny(tiny_llama(seed=1, hidden=32, heads=4, kv_heads=2, ffn=64), tmp_path / "c")

    same = compare(a, b, image_out=tmp_path / "ab.png")
    assert same["ics"] > 0.999 and same["z_cosine"] > 0.99, same
    assert same["verdict"] == "same base model"
    other = compare(a, c, image_out=tmp_path / "ac.png")
    assert other["ics"] < 0.3, other
    assert other["verdict"] == "unrelated"
    with Image.open(tmp_path / "ab.png") as picture:
        assert picture.size[0] > 2 * picture.size[1] - 200


def test_fingerprint_command_writes_the_folder(tmp_path):
    model = save_tiny(tiny_llama(), tmp_path / "m")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "noseprint.cli",
            "fingerprint",
            str(model),
            "--out",
            str(tmp_path / "fp"),
            "--n-tokens",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "fp" / "fingerprint.json").read_text())
    assert len(record["z"]) == 128 and record["model_type"] == "llama"
    assert np.load(tmp_path / "fp" / "invariants.npy").shape == (6, 8, 8)
    again = subprocess.run(
        [sys.executable, "-m", "noseprint.cli", "compare", str(tmp_path / "fp"), str(model), "--json",
         "--image", str(tmp_path / "c.png")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["ics"] > 0.9999 and data["z_cosine"] > 0.9999 and data["verdict"] == "same base model"


def test_gallery_draws_a_labelled_grid(tmp_path):
    from noseprint.lineage.gallery import grid

    pictures = []
    for seed in range(5):
        folder = tmp_path / f"fp{seed}"
        folder.mkdir()
        Image.new("RGB", (64, 64), (seed * 50, 0, 0)).save(folder / "fingerprint.png")
        pictures.append((f"model-{seed}", folder / "fingerprint.png"))
    out = grid(pictures, tmp_path / "g.png", columns=2, size=64)
    with Image.open(out) as image:
        assert image.size == (10 + 2 * 74, 10 + 3 * 94)
        assert image.getpixel((10 + 74 + 30, 10 + 20 + 30)) == (50, 0, 0)  # second picture, first row
    result = subprocess.run(
        [sys.executable, "-m", "noseprint.cli", "gallery", str(tmp_path / "fp0"), str(tmp_path / "fp1"),
         "--out", str(tmp_path / "g.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "already exists" in result.stderr
