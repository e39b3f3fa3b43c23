"""A real pretrained transformer: all-MiniLM-L6-v2, read by the BERT adapter, against its transformers module."""

from __future__ import annotations

import numpy as np
import torch
from noseprint.models.invariants import invariant_terms
from noseprint.models.weights import read_model
from transformers import AutoModel

from tests.test_architectures import direct_bert


def test_minilm_invariants_match_the_module(minilm_dir):
    read = read_model(minilm_dir, 16, None, allow_pickle=False)
    assert read.model_type == "bert" and read.layer_count == 6 and read.layer_indices == [4, 5]
    assert read.layout.layers[0].hidden == 384 and read.layout.layers[0].ffn == 1536
    assert [t.string for t in read.tokens.tokens[:4]] == ["the", "to", "and", "of"]
    model = AutoModel.from_pretrained(str(minilm_dir), local_files_only=True).eval()
    with torch.no_grad():
        e = model.get_input_embeddings().weight[[t.id for t in read.tokens]].double()
        expected = np.concatenate([direct_bert(model, e, i) for i in read.layer_indices])
    ours = invariant_terms(read.embedding, read.layers, list(read.layout.layers))
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9)
