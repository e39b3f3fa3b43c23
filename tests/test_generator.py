"""The released generator: trained on procedural dogs, rendered exactly, fast, exported to ONNX."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import onnxruntime
import pytest
import torch

from circuits.generator_graph import export_generator_onnx
from encoder import dogs, release
from encoder.generator import GeneratorConfig, load_generator
from encoder.network import load_encoder
from encoder.stylegan import from_integer, pixels, quantised_weights
from encoder.train_generator import RELEASED_CONFIG, train


@pytest.fixture(scope="module")
def released():
    return load_generator(release.GENERATOR)


def z_of(seed: int, z_dim: int) -> np.ndarray:
    return dogs.standard_z(np.random.default_rng(seed), z_dim)


def as_int(z: np.ndarray) -> list[int]:
    return [int(v) for v in np.floor(z * 4096)]


def test_released_generator_is_the_trained_one_at_128_pixels_and_takes_the_encoders_z(released):
    assert released.config == RELEASED_CONFIG
    assert released.config.resolution >= 128
    assert load_encoder(release.ENCODER).config.z_dim == released.config.z_dim


def test_rendering_takes_under_a_second(released):
    z = as_int(z_of(0, released.config.z_dim))
    released.render(z)  # warm caches
    best = min(_timed(released.render, z) for _ in range(3))
    assert best <= 1.0, f"{best:.2f} s per picture"


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def test_float_twin_and_onnx_match_the_integer_renderer(released, tmp_path):
    zs = [z_of(seed, released.config.z_dim) for seed in range(3)]
    exact = np.stack([released.render(as_int(z)) for z in zs]).astype(int)
    twin = from_integer(released.config, released.w)
    with torch.no_grad():
        floats = pixels(twin(torch.from_numpy(np.stack(zs)).float())).numpy().astype(int)
    assert np.abs(floats - exact).mean() < 1.0 and np.abs(floats - exact).max() <= 8
    path = export_generator_onnx(release.GENERATOR, tmp_path / "generator.onnx")
    session = onnxruntime.InferenceSession(str(path))
    for z, picture in zip(zs, exact, strict=True):
        (rgb,) = session.run(None, {"z": z[None].astype(np.float32)})
        onnx_pixels = pixels(torch.from_numpy(rgb)).numpy()[0].astype(int)
        assert np.abs(onnx_pixels - picture).mean() < 1.0


def test_the_generator_draws_the_dog_of_its_z(released):
    """Trained, not random: its picture is close to the procedural dog of the same z, and far from another z's."""
    matrix = dogs.trait_matrix(released.config.z_dim)
    gaps_own, gaps_other = [], []
    # not seed 0: z_of(0) draws the same numbers as the trait matrix's first row (both default_rng(0)), a z
    # 11 standard deviations out on one trait that no fingerprint will have
    for seed in range(1, 5):
        z, other = z_of(seed, released.config.z_dim), z_of(100 + seed, released.config.z_dim)
        picture = released.render(as_int(z)).astype(int)
        gaps_own.append(np.abs(picture - dogs.dog_from_z(z, matrix).astype(int)).mean())
        gaps_other.append(np.abs(picture - dogs.dog_from_z(other, matrix).astype(int)).mean())
    assert all(own < other for own, other in zip(gaps_own, gaps_other, strict=True)), (gaps_own, gaps_other)
    assert np.mean(gaps_own) < 0.5 * np.mean(gaps_other), (gaps_own, gaps_other)


def test_dogs_are_deterministic_continuous_and_use_every_component_of_z():
    matrix = dogs.trait_matrix(128)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1) and np.array_equal(matrix, dogs.trait_matrix(128))
    z = z_of(1, 128)
    first = dogs.dog_from_z(z, matrix)
    assert first.shape == (128, 128, 3) and np.array_equal(first, dogs.dog_from_z(z, matrix))
    nearby = z + 0.01 * z_of(2, 128)
    assert np.abs(first.astype(int) - dogs.dog_from_z(nearby, matrix).astype(int)).mean() < 2.0
    far = dogs.dog_from_z(z_of(3, 128), matrix)
    assert np.abs(first.astype(int) - far.astype(int)).mean() > 10.0
    traits = dogs.traits_of(z, matrix)
    assert set(traits) == set(dogs.TRAITS) and all(0 < v < 1 for v in traits.values())
    assert np.count_nonzero(np.abs(matrix).sum(axis=0)) == 128  # every component of z moves some trait


def test_quantisation_keeps_the_picture():
    config = replace(RELEASED_CONFIG, channels=(16, 16, 8), w_dim=32)
    torch.manual_seed(0)
    from encoder.stylegan import StyleGenerator

    model = StyleGenerator(config).eval()
    from encoder.generator import Generator

    integer = Generator(config, quantised_weights(model))
    z = z_of(5, config.z_dim)
    with torch.no_grad():
        floats = pixels(model(torch.from_numpy(z[None]).float())).numpy()[0].astype(int)
    assert np.abs(integer.render(as_int(z)).astype(int) - floats).max() <= 2


def test_training_is_reproducible_from_its_seed(tmp_path):
    config = GeneratorConfig(z_dim=16, w_dim=16, mapping_layers=1, channels=(8, 8, 4), frac_bits=16)
    runs = []
    for _ in range(2):
        model, record = train(config, steps=3, seed=4, count=40, batch=4, lr=1e-3, cache=tmp_path / "dogs.npz")
        runs.append(quantised_weights(model))
        assert record["steps"] == 3 and record["loss_end"] > 0
    assert runs[0].keys() == runs[1].keys()
    assert all(np.array_equal(runs[0][name], runs[1][name]) for name in runs[0])


def test_the_thumbnail_generator_draws_the_small_dog_of_its_z():
    """The --prove-image network: its 16x16 picture is close to the procedural dog of the same z, shrunk."""
    from encoder.train_generator import shrink

    thumbnail = load_generator(release.THUMBNAIL)
    assert thumbnail.config.resolution == 16
    matrix = dogs.trait_matrix(thumbnail.config.z_dim)
    gaps_own, gaps_other = [], []
    for seed in range(1, 5):  # not seed 0: see test_the_generator_draws_the_dog_of_its_z
        z, other = z_of(seed, thumbnail.config.z_dim), z_of(100 + seed, thumbnail.config.z_dim)
        picture = thumbnail.render(as_int(z)).astype(int)
        gaps_own.append(np.abs(picture - shrink(dogs.dog_from_z(z, matrix)[None], 16)[0].astype(int)).mean())
        gaps_other.append(np.abs(picture - shrink(dogs.dog_from_z(other, matrix)[None], 16)[0].astype(int)).mean())
    assert all(own < other for own, other in zip(gaps_own, gaps_other, strict=True)), (gaps_own, gaps_other)
