"""What kind of source a path is: a bundle, a fingerprint folder or a model folder.

`compare`, `gallery` and the registry's search all take any of the three; this is the one place that
decides which it is, so they cannot disagree. Each kind's files have their own owner (`core.bundle`,
`core.fingerprint_folder`, `models.checkpoint`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from noseprint.core.bundle import MANIFEST, TOKENS_FILE
from noseprint.core.errors import UsageError
from noseprint.core.fingerprint_folder import is_fingerprint_folder

MODEL_CONFIG = "config.json"


class SourceKind(Enum):
    BUNDLE = "bundle"
    FINGERPRINT = "fingerprint folder"
    MODEL = "model folder"


def source_kind(path: Path) -> SourceKind:
    """Decide by the marker file each kind has; a folder with none of them is a usage error."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return SourceKind.BUNDLE
    if is_fingerprint_folder(path):
        return SourceKind.FINGERPRINT
    if (path / MODEL_CONFIG).is_file():
        return SourceKind.MODEL
    raise UsageError(f"{path} is neither a bundle, a fingerprint folder nor a model folder")


def tokens_file(path: Path) -> Path | None:
    """The token list of a bundle or fingerprint folder (None for a model folder, which has its tokenizer)."""
    if source_kind(path) is SourceKind.MODEL:
        return None
    candidate = Path(path) / TOKENS_FILE
    return candidate if candidate.is_file() else None
