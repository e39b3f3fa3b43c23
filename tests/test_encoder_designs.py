"""The encoder candidates: one interface, any token count, exported graphs equal to torch, reproducible training."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime
import pytest
import torch
from noseprint.encoder.network import (
    DESIGNS,
    EncoderConfig,
    InvariantEncoder,
    load_encoder,
    rademacher_matrix,
    save_encoder,
)

from training.train import train


def config_for(kind: str) -> EncoderConfig:
    return EncoderConfig(kind=kind, channels=4, grid=4 if kind == "meanpool" else 2, z_dim=16)


def test_projection_matrix_is_pinned() -> None:
    """The released projection is a seed, so its matrix must never change between machines or versions."""
    matrix = rademacher_matrix(32, 1536, 0)
    assert set(np.unique(matrix)) == {-1.0, 1.0}
    assert hashlib.sha256(matrix.astype(np.int8).tobytes()).hexdigest() == (
        "ffba9796ab527186f64dd13386924c2deddf7c4ac93a4e7d8cc13aebefed69c6"
    )
    assert not np.array_equal(matrix, rademacher_matrix(32, 1536, 1))


@pytest.mark.parametrize("kind", sorted(DESIGNS))
@pytest.mark.parametrize("tokens", [8, 16])
def test_design_exports_to_an_equal_onnx_graph(kind: str, tokens: int, tmp_path) -> None:
    torch.manual_seed(0)
    encoder = InvariantEncoder(config_for(kind)).eval()
    terms = torch.randn(1, 6, tokens, tokens)
    with torch.no_grad():
        expected = encoder(terms).numpy()
    path = tmp_path / "encoder.onnx"
    torch.onnx.export(encoder, (terms,), str(path), opset_version=17, dynamo=False)
    session = onnxruntime.InferenceSession(str(path))
    (got,) = session.run(None, {session.get_inputs()[0].name: terms.numpy()})
    assert got.shape == (1, 16)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_projection_tracks_the_invariant_cosine() -> None:
    """Johnson-Lindenstrauss: z's cosine follows the input cosine, so ICS separation carries over to z."""
    encoder = InvariantEncoder(EncoderConfig(kind="projection", z_dim=256))
    g = torch.Generator().manual_seed(1)
    a, noise, other = (torch.randn(1, 6, 16, 16, generator=g, dtype=torch.float64) for _ in range(3))
    near = 0.9 * a + np.sqrt(1 - 0.81) * noise
    za, zn, zo = (encoder(t).squeeze(0) for t in (a, near, other))
    cos = lambda x, y: float(x @ y / (x.norm() * y.norm()))  # noqa: E731
    assert cos(za, zn) > 0.8
    assert abs(cos(za, zo)) < 0.25


def test_saved_design_round_trips_and_legacy_config_loads(tmp_path) -> None:
    encoder = InvariantEncoder(config_for("cnn"))
    save_encoder(encoder, tmp_path, "e")
    loaded = load_encoder(tmp_path / "e.safetensors")
    terms = torch.randn(1, 6, 16, 16)
    assert torch.equal(loaded(terms), encoder.eval()(terms))
    legacy = json.loads((tmp_path / "e.json").read_text())
    patch = InvariantEncoder(EncoderConfig(kind="patch"))
    save_encoder(patch, tmp_path, "old")
    config = json.loads((tmp_path / "old.json").read_text())
    del config["kind"], config["seed"]  # the first release's config had neither field
    (tmp_path / "old.json").write_text(json.dumps(config))
    assert load_encoder(tmp_path / "old.safetensors").config.kind == "patch"
    assert legacy["kind"] == "cnn"


def test_unknown_design_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown encoder design"):
        InvariantEncoder(EncoderConfig(kind="transformer"))


def test_training_is_reproducible_from_its_seed() -> None:
    torch.set_num_threads(1)
    first, history = train(config_for("meanpool"), steps=30, seed=5, batch=8)
    second, _ = train(config_for("meanpool"), steps=30, seed=5, batch=8)
    other, _ = train(config_for("meanpool"), steps=30, seed=6, batch=8)
    for (name, p), q, _r in zip(
        first.state_dict().items(), second.state_dict().values(), other.state_dict().values(), strict=False
    ):
        assert torch.equal(p, q), name
    assert any(
        not torch.equal(p, r) for p, r in zip(first.state_dict().values(), other.state_dict().values(), strict=False)
    )
    assert len(history) == 30 and all(np.isfinite(h).all() for h in history)
