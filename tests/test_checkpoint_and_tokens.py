"""Checkpoint reading (lazy, sharded, dtypes) and token selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from noseprint.core.errors import UsageError
from noseprint.core.tokens import RULE, NotTheRule, TokenList, select, select_from_encodings
from noseprint.models.checkpoint import open_checkpoint
from noseprint.models.tokens import load_tokenizer, read_token_file
from safetensors.torch import save_file

from tests.conftest import save_tiny, tiny_llama


def test_sharded_bf16_checkpoint_reads_rows_and_tensors(tmp_path):
    emb = torch.randn(50, 8)
    w = torch.randn(8, 8)
    save_file({"model.embed_tokens.weight": emb.to(torch.bfloat16)}, tmp_path / "a.safetensors")
    save_file({"model.layers.0.self_attn.q_proj.weight": w.half()}, tmp_path / "b.safetensors")
    index = {
        "weight_map": {
            "model.embed_tokens.weight": "a.safetensors",
            "model.layers.0.self_attn.q_proj.weight": "b.safetensors",
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    ck = open_checkpoint(tmp_path)
    rows = ck.rows("model.embed_tokens.weight", [3, 17, 42])
    np.testing.assert_array_equal(rows, emb.to(torch.bfloat16).double().numpy()[[3, 17, 42]])
    np.testing.assert_array_equal(ck.tensor("model.layers.0.self_attn.q_proj.weight"), w.half().double().numpy())
    with pytest.raises(UsageError, match="outside the embedding"):
        ck.rows("model.embed_tokens.weight", [50])
    with pytest.raises(UsageError, match="missing from the checkpoint"):
        ck.tensor("model.layers.9.self_attn.q_proj.weight")


def test_missing_shard_named_by_index(tmp_path):
    """A partial download opens; reading a tensor of an absent shard is refused, naming the shard."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}}))
    checkpoint = open_checkpoint(tmp_path)
    with pytest.raises(UsageError, match="gone.safetensors"):
        checkpoint.tensor("x")


def test_tokens_are_frequent_single_token_words_in_order(tmp_path):
    folder = save_tiny(tiny_llama(), tmp_path / "m")
    tokens = select(load_tokenizer(folder), 12)
    assert [t.string for t in tokens.tokens[:3]] == ["the", "to", "and"]
    assert len({t.id for t in tokens}) == 12
    encode = load_tokenizer(folder)
    assert all(encode(t.string) == [t.id] for t in tokens)


def test_token_file_formats(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"id": 5, "string": "x"}, {"id": 9, "string": "y"}]))
    (tmp_path / "b.txt").write_text("5\tx\n9\ty\n")
    (tmp_path / "c.json").write_text(json.dumps([5, 5]))
    assert [t.id for t in read_token_file(tmp_path / "a.json", 2)] == [5, 9]
    assert [t.string for t in read_token_file(tmp_path / "b.txt", 2)] == ["x", "y"]
    with pytest.raises(UsageError, match="repeats"):
        read_token_file(tmp_path / "c.json", 2)
    with pytest.raises(UsageError, match="3 are needed"):
        read_token_file(tmp_path / "a.json", 3)


def test_the_rule_recomputes_its_selection_from_the_evidence(tmp_path):
    """The evidence (each rule word's encoding up to the last chosen) gives back the selection and its order;
    a reordered, re-chosen or over-long list is refused by `rule_error`, and the file round-trips strictly."""
    folder = save_tiny(tiny_llama(), tmp_path / "m")
    chosen = select(load_tokenizer(folder), 8)
    assert chosen.rule == RULE and chosen.rule_error() is None
    assert select_from_encodings(chosen.encodings, 8) == chosen.tokens
    again = TokenList.from_json(json.dumps(chosen.to_json()).encode())
    assert again == chosen and again.rule_error() is None
    redacted = TokenList.from_json(json.dumps(chosen.to_json(with_strings=False)).encode())
    assert redacted.rule_error() is None and redacted.ids == chosen.ids
    reversed_list = TokenList(chosen.tokens[::-1], RULE, chosen.encodings)
    assert "order" in reversed_list.rule_error()
    others = TokenList([type(t)(t.id + 100, t.string) for t in chosen.tokens], RULE, chosen.encodings)
    assert others.rule_error() is not None
    assert "runs past" in TokenList(chosen.tokens, RULE, [*chosen.encodings, [1]]).rule_error()
    assert "owner's own list" in TokenList(chosen.tokens).rule_error()
    for forged in ({**chosen.to_json(), "rule": "mine/v9"}, {**chosen.to_json(), "encodings": [["x"]]}):
        with pytest.raises(ValueError):
            TokenList.from_json(json.dumps(forged).encode())


def test_a_token_file_must_be_the_rules_selection_where_the_model_has_a_tokenizer(tmp_path):
    """`--tokens` cannot reorder or re-choose a tokenizer's tokens (issue 33: the same weights re-proven at
    reversed tokens read 'unrelated' to themselves); for a model without a tokenizer it is the owner's list."""
    from noseprint.models.weights import open_model

    folder = save_tiny(tiny_llama(), tmp_path / "m")
    chosen = select(load_tokenizer(folder), 8)
    for forged in (chosen.ids[::-1], [i + 1 for i in chosen.ids]):
        (tmp_path / "t.json").write_text(json.dumps(forged))
        with pytest.raises(NotTheRule, match="token rule"):
            open_model(folder, 8, tmp_path / "t.json", allow_pickle=False)
    (tmp_path / "t.json").write_text(json.dumps(chosen.ids))
    assert open_model(folder, 8, tmp_path / "t.json", allow_pickle=False).tokens == chosen
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json"):
        (folder / name).unlink(missing_ok=True)
    (tmp_path / "t.json").write_text(json.dumps(chosen.ids[::-1]))
    owners = open_model(folder, 8, tmp_path / "t.json", allow_pickle=False).tokens
    assert owners.rule is None and owners.ids == chosen.ids[::-1]
