"""Bad input to `noseprint prove`: a clear message, exit 2, no traceback, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import save_tiny, tiny_llama


def prove(model: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "noseprint.cli", "prove", str(model), "--out", str(out), "--n-tokens", "8", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Warning:" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny(tiny_llama(), tmp_path_factory.mktemp("m") / "model")


def clone(model: Path, target: Path) -> Path:
    target.mkdir()
    for item in model.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


def assert_refused(result: subprocess.CompletedProcess, words: str, out: Path) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in " ".join(result.stderr.split()), result.stderr
    assert not out.exists()


def test_missing_model_folder(tmp_path):
    assert_refused(prove(tmp_path / "absent", tmp_path / "out"), "model folder not found", tmp_path / "out")


def test_missing_safetensors(model, tmp_path):
    broken = clone(model, tmp_path / "m")
    (broken / "model.safetensors").unlink()
    assert_refused(prove(broken, tmp_path / "out"), "holds no *.safetensors weights", tmp_path / "out")


def test_corrupt_safetensors(model, tmp_path):
    broken = clone(model, tmp_path / "m")
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 3])
    assert_refused(prove(broken, tmp_path / "out"), "cannot read safetensors file", tmp_path / "out")


def test_pickle_checkpoint_refused(model, tmp_path):
    broken = clone(model, tmp_path / "m")
    (broken / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(2)}, broken / "pytorch_model.bin")
    assert_refused(prove(broken, tmp_path / "out"), "pickle weights", tmp_path / "out")


@pytest.mark.parametrize("field", ["hidden_size", "num_attention_heads", "intermediate_size"])
def test_config_without_needed_fields(model, tmp_path, field):
    broken = clone(model, tmp_path / "m")
    config = json.loads((broken / "config.json").read_text())
    del config[field]
    (broken / "config.json").write_text(json.dumps(config))
    assert_refused(prove(broken, tmp_path / "out"), f"config.json lacks {field}", tmp_path / "out")


def test_config_not_json(model, tmp_path):
    broken = clone(model, tmp_path / "m")
    (broken / "config.json").write_text("{")
    assert_refused(prove(broken, tmp_path / "out"), "not valid JSON", tmp_path / "out")


def test_unsupported_architecture(model, tmp_path):
    broken = clone(model, tmp_path / "m")
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "mamba"
    (broken / "config.json").write_text(json.dumps(config))
    result = prove(broken, tmp_path / "out")
    assert_refused(result, "unsupported architecture model_type='mamba'", tmp_path / "out")
    assert "gpt2" in result.stderr and "llama" in result.stderr


def test_shape_disagrees_with_config(model, tmp_path):
    broken = clone(model, tmp_path / "m")
    config = json.loads((broken / "config.json").read_text())
    config["intermediate_size"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    assert_refused(prove(broken, tmp_path / "out"), "config.json implies", tmp_path / "out")


def test_output_folder_exists(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = prove(model, out)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_no_srs(model, tmp_path, monkeypatch):
    result = prove(model, tmp_path / "out")
    assert_refused(result, "no SRS for logrows", tmp_path / "out")


def test_prove_image_without_an_srs_for_its_circuit_fails_before_proving(model, tmp_path):
    """The image circuit has its own size; a missing SRS for it is reported in seconds, before the main proof."""
    out = tmp_path / "bundle"
    result = prove(model, out, "--prove-image")
    assert_refused(result, "no SRS for logrows", out)


def test_prove_image_with_a_thumbnail_of_another_z_width(model, tmp_path):
    from noseprint.encoder.generator import GeneratorConfig, save_generator
    from noseprint.encoder.stylegan import StyleGenerator, quantised_weights

    config = GeneratorConfig(z_dim=16, w_dim=8, mapping_layers=1, channels=(4, 4), frac_bits=16)
    thumbnail = tmp_path / "thumb.safetensors"
    save_generator(config, quantised_weights(StyleGenerator(config)), thumbnail)
    out = tmp_path / "bundle"
    result = prove(model, out, "--prove-image", "--thumbnail", str(thumbnail))
    assert_refused(result, "takes z of 16", out)


def test_hidden_size_too_small_to_blind(tmp_path):
    """Every blinding line is as long as the hidden size; under 16 values it would not hide the weights."""
    narrow = save_tiny(tiny_llama(hidden=8, heads=2, kv_heads=1), tmp_path / "narrow")
    out = tmp_path / "bundle"
    result = prove(narrow, out, "--init-dev-srs")
    assert_refused(result, "blinding line of fewer than 16 values", out)
