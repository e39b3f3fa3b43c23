"""Perceptual hashes for the generator benches: imagehash's pHash on grey levels, and a colour-aware variant.

pHash sees only grey levels, so two dogs that differ in fur or background colour
can hash alike (the first generator's closest pair was 0 bits apart at z-cosine
0.09). Two colour-aware variants:

- `colour_phash`: pHash on each channel of YCbCr, 64 bits of luma layout plus 64
  bits each of where the blue and red chroma sit (192 bits). Like pHash it encodes
  each channel relative to its own median, so it sees colour *layout*, not which colour.
- `phash_colorhash`: pHash beside imagehash's colorhash (the share of the picture
  in each hue and in black/grey, 3 bits per bin, 42 bits): layout plus absolute colour.
"""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image


def grey_phash(picture: np.ndarray) -> np.ndarray:
    """64 bits: imagehash.phash of the picture (H, W, 3) uint8."""
    return imagehash.phash(Image.fromarray(picture)).hash.flatten()


def colour_phash(picture: np.ndarray) -> np.ndarray:
    """192 bits: imagehash.phash of the Y, Cb and Cr channels."""
    channels = Image.fromarray(picture).convert("YCbCr").split()
    return np.concatenate([imagehash.phash(channel).hash.flatten() for channel in channels])


def phash_colorhash(picture: np.ndarray) -> np.ndarray:
    """106 bits: imagehash.phash (64) and imagehash.colorhash with 3 bits per bin (42)."""
    image = Image.fromarray(picture)
    return np.concatenate([imagehash.phash(image).hash.flatten(), imagehash.colorhash(image, binbits=3).hash.flatten()])


def lab_thumbnail(picture: np.ndarray, size: int = 16) -> np.ndarray:
    """Not a hash: the picture box-shrunk to size x size in CIELAB, compared by mean |difference| (`lab_distance`).

    A proxy for a glance: colour and layout at the scale a person takes in at once."""
    from PIL import ImageCms

    image = Image.fromarray(picture).resize((size, size), Image.BOX)
    to_lab = ImageCms.buildTransformFromOpenProfiles(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    return np.asarray(ImageCms.applyTransform(image, to_lab)).astype(np.float64)


def lab_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(a != b))
