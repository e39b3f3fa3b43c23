"""z from the proven output, and the picture from z: exact, deterministic, and close for close z."""

from __future__ import annotations

import hashlib

import noseprint.encoder.release as release
import numpy as np
from noseprint.core.fileio import sha256_file
from noseprint.encoder.generator import load_generator
from noseprint.encoder.zvector import Z_FRAC_BITS, as_floats, standardise_exact


def test_exact_standardisation_matches_float():
    rng = np.random.default_rng(3)
    raw = [int(v) for v in rng.integers(-(10**9), 10**9, 32)]
    z = np.array(as_floats(standardise_exact(raw)))
    expected = (np.array(raw) - np.mean(raw)) / np.std(raw)
    np.testing.assert_allclose(z, expected, atol=2.0 / (1 << Z_FRAC_BITS))
    assert standardise_exact([7] * 4) == [0] * 4


def test_rendering_is_bit_exact_and_pinned():
    """The pixels of a fixed z are pinned: a change of arithmetic anywhere shows up here, on every machine."""
    generator = load_generator(release.GENERATOR)
    z = standardise_exact(list(range(-64, 64)))
    image = generator.render(z)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert np.array_equal(image, generator.render(z))
    assert hashlib.sha256(image.tobytes()).hexdigest() == PINNED_RENDER


def test_nearby_z_give_nearby_pictures_and_far_z_differ():
    generator = load_generator(release.GENERATOR)
    rng = np.random.default_rng(0)
    base = standardise_exact([int(v) for v in rng.integers(-(10**6), 10**6, 128)])
    near = [v + int(rng.integers(-200, 200)) for v in base]
    far = standardise_exact([int(v) for v in rng.integers(-(10**6), 10**6, 128)])
    a, b, c = (generator.render(z).astype(float) for z in (base, near, far))
    assert np.abs(a - b).mean() < np.abs(a - c).mean() / 3


def test_shipped_networks_are_the_released_ones():
    assert release.network_digest(release.ENCODER) == release.RELEASED_ENCODER_DIGEST
    assert release.network_digest(release.GENERATOR) == release.RELEASED_GENERATOR_DIGEST
    assert release.network_digest(release.THUMBNAIL) == release.RELEASED_THUMBNAIL_DIGEST
    assert sha256_file(release.ENCODER) != sha256_file(release.GENERATOR)


PINNED_RENDER = "ca89fa36665a924524604e933c3bdce434752515d11971f92bf974402dc9522c"
