"""The embedded default model: a small LLaMA-architecture checkpoint noseprint makes itself.

Nothing may be downloaded, so the README's first command fingerprints a model built
here: a `transformers` LlamaForCausalLM with grouped-query attention, random
weights from a fixed seed, saved as safetensors, with a word-level tokenizer over
the most frequent English words (`wordfreq`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
NORM_SPREAD = 0.2
"""Relative spread of the demo's norm scales (trained LLaMA norms spread far more; any spread shows they count)."""


@dataclass(frozen=True)
class DemoShape:
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 128
    layers: int = 4
    vocab_words: int = 2000


def build_tokenizer(words: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from wordfreq import top_n_list

    vocab_list = SPECIAL_TOKENS + [w for w in top_n_list("en", words * 2) if w.isalpha()][:words]
    vocab = {word: index for index, word in enumerate(vocab_list)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def write_demo_model(folder: Path, shape: DemoShape = DemoShape(), seed: int = 0) -> Path:
    """Write config.json, model.safetensors and tokenizer files into `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(shape.vocab_words)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # norm scales as a trained model has them, not the initial ones: the fingerprint reads them
        for name, weight in model.named_parameters():
            if name.endswith("norm.weight"):
                weight.mul_(1.0 + NORM_SPREAD * torch.randn_like(weight)).abs_()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder
