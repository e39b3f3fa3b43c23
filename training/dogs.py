"""Procedural cartoon dog faces: the generator's training data, made from z with Pillow alone.

HuRef renders z with a StyleGAN2 trained on AFHQ dogs; those weights and pictures
cannot be downloaded here. This module draws a dog face from a handful of
continuous traits (fur colours, head shape, ear length and carriage, eye size and
colour, a patch, a blaze, tan eyebrows, nose, tongue, tilt, turn, background), a
coat pattern and a background pattern, so the data set is rebuilt from the
registry's Pillow and nothing else, under this project's own license.

The traits are a fixed function of z: `traits = Φ(P·z)` with P a seeded Gaussian
matrix with unit rows, so every component of z moves the picture and nearby z
give nearby dogs. Every trait enters the drawing continuously (a patch grows from
nothing, ears swing from upright to hanging), so the map z -> picture is smooth
apart from anti-aliased pixel edges. The generator is then trained to reproduce
this map (`training.train_generator`).

Two parts of the picture are *linear* in z rather than traits: the background's
pattern (two shades of its colour, dark where an 8x8-grid field of blobs, each as
strong as one projection of z, is low, light where it is high) and the coat (patches
of the marking colour where a 6x6-grid field of z is high). Why: a cartoon face is
much the same layout for every dog, so small changes of a few traits flip many
perceptual-hash bits (pHash compares DCT coefficients with their median) while
independent dogs stay alike. A field that is linear in z behaves like random-
hyperplane hashing: the share of it that changes grows with the angle between two
z's (14 % at z-cosine 0.9, 50 % for independent z), which is what a fingerprint
picture wants. On the model zoo the second version's dogs put 6 of 61 derived
models nearest a wrong base by pHash; these put 1 (docs/history/BENCHMARKS-history.md, "Third version").
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageDraw

TRAITS = (
    "fur",
    "second_fur",
    "head_width",
    "head_height",
    "ear_length",
    "ear_width",
    "ear_carriage",
    "ear_colour",
    "eye_size",
    "eye_spacing",
    "eye_height",
    "iris",
    "patch",
    "blaze",
    "eyebrows",
    "muzzle",
    "nose_size",
    "nose_colour",
    "tongue",
    "tilt",
    "background",
    "cheeks",
    "turn",
    "coat_amount",
)
"""Each trait is a number in (0, 1); see `draw_dog` for what it does."""
PATTERN_GRID, PATTERN_WIDTH, PATTERN_SHARPNESS, PATTERN_CONTRAST = 8, 0.11, 3.0, 0.5
"""Background pattern: an 8x8-grid field of blobs 0.11 canvas wide, two shades 50 % darker and lighter."""
COAT_GRID, COAT_WIDTH, COAT_SHARPNESS = 6, 0.1, 4.0
"""Coat pattern: a 6x6-grid field, blobs 0.1 canvas wide, its edges a logistic of slope 4."""
TILT_DEGREES, TURN_SHIFT = 12.0, 6.0
"""Head tilt range, and how far (canvas units of 100) a turned face slides its features."""

FUR_PALETTE = np.array(
    [
        (244, 236, 220),  # white
        (218, 170, 100),  # golden
        (168, 96, 50),  # red
        (100, 66, 44),  # chocolate
        (44, 40, 38),  # black
    ],
    dtype=np.float64,
)
BACKGROUND_PALETTE = np.array(
    [(140, 176, 214), (150, 196, 140), (222, 192, 130), (214, 150, 170)],  # blue, green, sand, rose: mid-tones
    dtype=np.float64,
)
IRIS_PALETTE = np.array([(70, 40, 20), (140, 86, 30), (196, 150, 60), (90, 140, 190)], dtype=np.float64)
NOSE_PALETTE = np.array([(30, 26, 26), (92, 58, 40), (196, 120, 120)], dtype=np.float64)
SUPERSAMPLE = 2


def trait_matrix(z_dim: int, seed: int = 0) -> np.ndarray:
    """P: a Gaussian matrix with unit rows, the same on every machine for a seed.

    One row per trait, then one per background-pattern blob and one per coat blob."""
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((len(TRAITS) + PATTERN_GRID**2 + COAT_GRID**2, z_dim))
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def traits_of(z: np.ndarray, matrix: np.ndarray) -> dict[str, float]:
    """Φ(P·z) for the traits: for a standardised z (mean 0, std 1) each is uniform on (0, 1)."""
    projected = matrix[: len(TRAITS)] @ np.asarray(z, dtype=np.float64)
    uniform = 0.5 * (1.0 + np.vectorize(math.erf)(projected / math.sqrt(2.0)))
    return dict(zip(TRAITS, uniform.tolist(), strict=True))


def fields_of(z: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The background-pattern and coat amplitudes: plain projections P·z, standard Gaussian for a standardised z."""
    projected = matrix[len(TRAITS) :] @ np.asarray(z, dtype=np.float64)
    return projected[: PATTERN_GRID**2], projected[PATTERN_GRID**2 :]


def smooth_field(amplitudes: np.ndarray, grid: int, width: float, size: int) -> np.ndarray:
    """(size, size): Gaussian blobs on a grid x grid lattice, each scaled by its amplitude; unit peak variance."""
    coords = (np.arange(size) + 0.5) / size
    centres = (np.arange(grid) + 0.5) / grid
    bumps = np.exp(-((coords[None, :] - centres[:, None]) ** 2) / (2 * width**2))
    field = np.einsum("ij,iy,jx->yx", np.asarray(amplitudes).reshape(grid, grid), bumps, bumps)
    overlap = np.exp(-((centres[:, None] - centres[None, :]) ** 2) / (2 * width**2))
    return field / float(np.sqrt((overlap**2).sum(0).max()))


def patterned(image: Image.Image, amplitudes: np.ndarray) -> Image.Image:
    """The background in two shades of its colour, dark where the pattern field is low and light where high.

    A logistic of slope PATTERN_SHARPNESS keeps the map from z smooth; the two shades are
    the colour darkened by PATTERN_CONTRAST and lightened towards white by as much."""
    field = smooth_field(amplitudes, PATTERN_GRID, PATTERN_WIDTH, image.size[0])
    share = (1 / (1 + np.exp(-PATTERN_SHARPNESS * field)))[..., None]
    colour = np.asarray(image, dtype=np.float64)
    dark, bright = colour * (1 - PATTERN_CONTRAST), colour + (255 - colour) * PATTERN_CONTRAST
    return Image.fromarray((dark * (1 - share) + bright * share).round().clip(0, 255).astype(np.uint8), "RGB")


def coat(layer: Image.Image, mask: Image.Image, colour: np.ndarray, amplitudes: np.ndarray, amount: float):
    """Patches of `colour` over the masked fur where the coat field is high; `amount` sets 25-60 % coverage."""
    size = layer.size[0]
    field = smooth_field(amplitudes, COAT_GRID, COAT_WIDTH, size)
    bias = NormalDist().inv_cdf(0.25 + 0.35 * amount)
    share = 1 / (1 + np.exp(-COAT_SHARPNESS * (field + bias)))
    weight = (np.asarray(mask, dtype=np.float64) / 255 * share)[..., None]
    pixels = np.asarray(layer, dtype=np.float64)
    coloured = pixels[..., :3] * (1 - weight) + np.asarray(colour)[None, None, :] * weight
    return Image.fromarray(np.concatenate([coloured, pixels[..., 3:]], -1).round().clip(0, 255).astype(np.uint8))


def palette(colours: np.ndarray, t: float, plateau: float = 0.0) -> np.ndarray:
    """Colour ramp, continuous in t; with `plateau` > 0 it rests on each colour for that share of its segment.

    Colour is what a person sees first, and a derived model's z moves every trait a
    little (at z-cosine 0.93 a trait moves 0.37 standard deviations). Plateaus let
    such a move leave the colour as it was most of the time, while independent
    models still land on different colours; the transitions stay smooth (smoothstep)."""
    position = min(max(t, 0.0), 1.0) * (len(colours) - 1)
    low = min(int(position), len(colours) - 2)
    frac = position - low
    if plateau > 0:
        frac = min(max((frac - plateau / 2) / (1 - plateau), 0.0), 1.0)
        frac = frac * frac * (3 - 2 * frac)
    return colours[low] * (1 - frac) + colours[low + 1] * frac


def markings(fur: np.ndarray, strength: float) -> np.ndarray:
    """The marking colour contrasts with the fur: pulled towards near-black on a light dog, cream on a dark one.

    (The second version took the markings from the fur ramp itself; any continuous
    map from the ramp to itself has a fixed point, where the markings vanished.
    Pulling 55-85 % of the way to a target picked by lightness leaves a visible
    difference for every fur.)"""
    lightness = (0.299 * fur[0] + 0.587 * fur[1] + 0.114 * fur[2]) / 255
    target = mix((34, 28, 26), (248, 240, 226), min(max((0.62 - lightness) / 0.3 + 0.5, 0.0), 1.0))
    return mix(fur, target, 0.55 + 0.3 * strength)


def mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return np.asarray(a) * (1 - t) + np.asarray(b) * t


def rgb(colour: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(round(min(max(c, 0), 255))) for c in colour)


def ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill) -> None:
    if rx > 0.3 and ry > 0.3:
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)


def ear_polygon(cx: float, cy: float, length: float, width: float, angle: float) -> list[tuple[float, float]]:
    """A rounded leaf-shaped ear attached at (cx, cy), pointing along `angle` (radians, 0 = straight up)."""
    samples = [i / 24 for i in range(25)]
    half = [width * math.sin(math.pi * s) ** 0.8 * (1 - 0.35 * s) for s in samples]
    outline = [(s, -h) for s, h in zip(samples, half, strict=True)]
    outline += [(s, h) for s, h in zip(reversed(samples), reversed(half), strict=True)]
    dx, dy = math.sin(angle), -math.cos(angle)
    nx, ny = -dy, dx
    return [(cx + dx * s * length + nx * h, cy + dy * s * length + ny * h) for s, h in outline]


def draw_dog(
    traits: dict[str, float], pattern_field: np.ndarray, coat_field: np.ndarray, size: int = 128
) -> Image.Image:
    """Draw one dog face, size x size pixels (drawn at 2x and downsampled, for smooth edges).

    The dog is drawn on a transparent layer, tilted, and laid over the patterned background."""
    t = traits
    big = size * SUPERSAMPLE
    u = big / 100.0  # drawing units: the canvas is 100 x 100
    fur = palette(FUR_PALETTE, t["fur"], plateau=0.5)
    second = markings(fur, t["second_fur"])
    light = mix(fur, (250, 244, 232), 0.65)
    outline = mix(fur, (30, 24, 22), 0.45)
    background = Image.new("RGB", (big, big), rgb(palette(BACKGROUND_PALETTE, t["background"], plateau=0.5)))
    background = patterned(background, pattern_field).convert("RGBA")
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)

    head_w = (27 + 10 * t["head_width"]) * u
    head_h = (25 + 10 * t["head_height"]) * u
    cx, cy = 50 * u, 54 * u

    # ears, behind the head: carriage 0 = upright and pointed out, 1 = hanging down beside the face
    ear_length = (18 + 20 * t["ear_length"]) * u
    ear_width = (7 + 7 * t["ear_width"]) * u
    carriage = math.radians(18 + 150 * t["ear_carriage"])
    ear_colour = mix(fur, second, t["ear_colour"])
    for side in (-1, 1):
        base_x = cx + side * head_w * (0.55 + 0.35 * t["ear_carriage"])
        base_y = cy - head_h * (0.66 - 0.3 * t["ear_carriage"])
        draw.polygon(
            ear_polygon(base_x, base_y, ear_length, ear_width, side * carriage),
            fill=rgb(ear_colour),
            outline=rgb(outline),
            width=max(1, int(round(0.8 * u))),
        )
        inner = max(0.0, 1.0 - t["ear_carriage"] * 1.8)  # the pink inside shows on upright ears only
        if inner > 0:
            inner_colour = mix(ear_colour, (226, 150, 150), 0.7 * inner)
            polygon = ear_polygon(base_x, base_y, ear_length * 0.72, ear_width * 0.5, side * carriage)
            draw.polygon(polygon, fill=rgb(inner_colour))

    # head (with a darker rim, so a pale dog still stands out from a pale background), cheeks
    rim = 0.8 * u
    ellipse(draw, cx, cy, head_w + rim, head_h + rim, rgb(outline))
    ellipse(draw, cx, cy, head_w, head_h, rgb(fur))
    cheek = (4 + 8 * t["cheeks"]) * u
    for side in (-1, 1):
        ellipse(draw, cx + side * head_w * 0.62, cy + head_h * 0.35, cheek, cheek * 0.9, rgb(fur))
    fur_mask = Image.new("L", (big, big), 0)
    mask_draw = ImageDraw.Draw(fur_mask)
    ellipse(mask_draw, cx, cy, head_w, head_h, 255)
    for side in (-1, 1):
        ellipse(mask_draw, cx + side * head_w * 0.62, cy + head_h * 0.35, cheek, cheek * 0.9, 255)
    image = coat(image, fur_mask, second, coat_field, t["coat_amount"])
    draw = ImageDraw.Draw(image)

    # a turned face: the features slide across the head
    fx = cx + TURN_SHIFT * (2 * t["turn"] - 1) * u

    # patch over one eye: its side is the sign of (patch - 1/2), its size grows from nothing at 1/2
    eye_dx, eye_y, eye = eye_layout(t, u, cy)
    patch = 2 * t["patch"] - 1
    if abs(patch) > 0.05:
        side = 1 if patch > 0 else -1
        radius = (abs(patch) - 0.05) * 14 * u
        ellipse(draw, fx + side * eye_dx, eye_y, radius * 1.1, radius, rgb(second))

    # blaze: a light stripe from the forehead to the muzzle
    blaze = max(0.0, t["blaze"] - 0.3) / 0.7
    if blaze > 0:
        half = blaze * 5 * u
        top = cy - head_h * 0.95
        draw.polygon(
            [(fx - half * 0.6, top), (fx + half * 0.6, top), (fx + half, cy), (fx - half, cy)], fill=rgb(light)
        )

    # muzzle
    muzzle_w = (10 + 8 * t["muzzle"]) * u
    muzzle_h = (8 + 6 * t["muzzle"]) * u
    muzzle_y = cy + head_h * 0.42
    ellipse(draw, fx, muzzle_y, muzzle_w, muzzle_h, rgb(light))

    # tongue, under the mouth
    tongue = max(0.0, t["tongue"] - 0.45) / 0.55
    if tongue > 0:
        ellipse(draw, fx, muzzle_y + muzzle_h * 0.7, 4.5 * u, (2 + 7 * tongue) * u, rgb((222, 92, 110)))

    # mouth
    mouth_y = muzzle_y + muzzle_h * 0.35
    width = max(1, int(round(0.9 * u)))
    draw.line([(fx, muzzle_y - muzzle_h * 0.1), (fx, mouth_y)], fill=rgb((40, 30, 30)), width=width)
    for side in (-1, 1):
        draw.arc(
            (fx + (side - 1) * 3.5 * u, mouth_y - 3 * u, fx + (side + 1) * 3.5 * u, mouth_y + 3 * u),
            20,
            160,
            fill=rgb((40, 30, 30)),
            width=width,
        )

    # nose
    nose = (3 + 4 * t["nose_size"]) * u
    nose_y = muzzle_y - muzzle_h * 0.35
    ellipse(draw, fx, nose_y, nose * 1.3, nose, rgb(palette(NOSE_PALETTE, t["nose_colour"])))
    ellipse(draw, fx - nose * 0.45, nose_y - nose * 0.35, nose * 0.35, nose * 0.22, rgb((235, 235, 235)))

    # tan eyebrows
    if t["eyebrows"] > 0.5:
        strength = (t["eyebrows"] - 0.5) * 2
        brow = mix(fur, (200, 130, 60), strength)
        for side in (-1, 1):
            ellipse(draw, fx + side * eye_dx * 1.05, eye_y - 7 * u, 3.5 * u, 2.2 * u, rgb(brow))

    # eyes: white, iris, pupil, highlight
    iris = palette(IRIS_PALETTE, t["iris"])
    for side in (-1, 1):
        x = fx + side * eye_dx
        ellipse(draw, x, eye_y, eye * 1.05, eye, rgb((250, 250, 246)))
        ellipse(draw, x, eye_y + eye * 0.08, eye * 0.75, eye * 0.78, rgb(iris))
        ellipse(draw, x, eye_y + eye * 0.1, eye * 0.38, eye * 0.4, rgb((20, 16, 16)))
        ellipse(draw, x - eye * 0.3, eye_y - eye * 0.3, eye * 0.2, eye * 0.2, rgb((255, 255, 255)))

    tilt = (t["tilt"] - 0.5) * TILT_DEGREES
    image = image.rotate(tilt, resample=Image.BICUBIC, center=(cx, cy), fillcolor=(0, 0, 0, 0))
    background.alpha_composite(image)
    return background.convert("RGB").resize((size, size), Image.LANCZOS)


def eye_layout(t: dict[str, float], u: float, cy: float) -> tuple[float, float, float]:
    """(half the distance between the eyes, their height, their radius), in the units `u` of `draw_dog`."""
    return (8 + 7 * t["eye_spacing"]) * u, cy - (2 + 9 * t["eye_height"]) * u, (3.5 + 3.5 * t["eye_size"]) * u


def eye_circles(traits: dict[str, float], size: int = 128) -> list[tuple[float, float, float]]:
    """(x, y, radius) of both eyes in the finished size x size picture, tilt included.

    Why: the eyes are a few percent of the pixels, so a plain pixel loss lets a generator
    trade them for the background; `training.train_generator` weights the loss here."""
    u = size / 100.0
    cx, cy = 50 * u, 54 * u
    eye_dx, eye_y, eye = eye_layout(traits, u, cy)
    fx = cx + TURN_SHIFT * (2 * traits["turn"] - 1) * u
    angle = math.radians((traits["tilt"] - 0.5) * TILT_DEGREES)  # Pillow turns counter-clockwise on screen
    circles = []
    for side in (-1, 1):
        dx, dy = fx + side * eye_dx - cx, eye_y - cy
        x = cx + dx * math.cos(angle) + dy * math.sin(angle)
        y = cy - dx * math.sin(angle) + dy * math.cos(angle)
        circles.append((x, y, eye))
    return circles


def standard_z(rng: np.random.Generator, z_dim: int) -> np.ndarray:
    """A random z distributed like a fingerprint's: Gaussian, then centred and scaled to std 1 (see zvector)."""
    z = rng.standard_normal(z_dim)
    z = z - z.mean()
    return z / z.std()


def dog_from_z(z: np.ndarray, matrix: np.ndarray, size: int = 128) -> np.ndarray:
    """z -> (size, size, 3) uint8 picture of its procedural dog."""
    return np.asarray(draw_dog(traits_of(z, matrix), *fields_of(z, matrix), size))


def data_set(count: int, z_dim: int, seed: int, size: int = 128, trait_seed: int = 0):
    """`count` (z, picture) pairs, reproducible from `seed`: float32 (count, z_dim), uint8 (count, size, size, 3)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    matrix = trait_matrix(z_dim, trait_seed)
    zs = np.stack([standard_z(rng, z_dim) for _ in range(count)]).astype(np.float32)
    pictures = np.stack([dog_from_z(z, matrix, size) for z in tqdm(zs, desc="drawing dogs", leave=False)])
    return zs, pictures
