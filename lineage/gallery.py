"""Labelled grids of fingerprint pictures: `noseprint gallery`, and `compare`'s side-by-side.

Pictures are scaled with nearest neighbours by whole factors (crisp pixels), otherwise with Lanczos,
each under its label, with an optional caption line at the bottom.
"""

from __future__ import annotations

from pathlib import Path

from noseprint.core.bundle import Bundle
from noseprint.core.errors import UsageError
from noseprint.core.fingerprint_folder import PICTURE as FINGERPRINT_PICTURE
from noseprint.core.sources import SourceKind, source_kind
from PIL import Image, ImageDraw

LABEL_HEIGHT = 20
MARGIN = 10


def grid(pictures: list[tuple[str, Path]], out: Path, columns: int | None = None, size: int = 192,
         caption: str | None = None) -> Path:  # fmt: skip
    """Draw `(label, png)` pairs in rows of `columns` (default: all in one row) and save to `out`."""
    if not pictures:
        raise ValueError("nothing to draw")
    columns = max(1, min(columns or len(pictures), len(pictures)))
    rows = -(-len(pictures) // columns)
    cell_w, cell_h = size + MARGIN, size + LABEL_HEIGHT + MARGIN
    caption_h = LABEL_HEIGHT + MARGIN if caption else 0
    canvas = Image.new("RGB", (MARGIN + columns * cell_w, MARGIN + rows * cell_h + caption_h), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (label, path) in enumerate(pictures):
        x = MARGIN + (index % columns) * cell_w
        y = MARGIN + (index // columns) * cell_h
        draw.text((x, y), label[: size // 6], fill="black")
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        crisp = size % picture.width == 0  # whole-number enlargements keep the pixels sharp
        resample = Image.Resampling.NEAREST if crisp else Image.Resampling.LANCZOS
        canvas.paste(picture.resize((size, size), resample), (x, y + LABEL_HEIGHT))
    if caption:
        draw.text((MARGIN, MARGIN + rows * cell_h), caption, fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def picture_of(source: Path) -> tuple[str, Path]:
    """The picture of a bundle or a fingerprint folder, labelled with the folder's name."""
    source = Path(source)
    kind = source_kind(source)
    if kind is SourceKind.BUNDLE:
        return source.name, Bundle.open(source).picture
    if kind is SourceKind.FINGERPRINT:
        return source.name, source / FINGERPRINT_PICTURE
    raise UsageError(f"{source} is a model folder: fingerprint it first (noseprint fingerprint)")
