"""The fingerprint folder `noseprint fingerprint` writes: z and the picture without a proof, for comparing.

    FINGERPRINT/
      fingerprint.json   {"format": "noseprint-fingerprint", "version": 1, "model_type": str,
                          "fingerprinted_layers": [int, ...], "encoder_digest": hex, "generator_digest": hex,
                          "z": [int, ...] (at 2^z_frac_bits), "z_frac_bits": int}
      fingerprint.png    the picture
      invariants.npy     the raw invariant terms (private: they leak information about the weights)
      tokens.json        the tokens (`core.tokens`)

One owner, reader and writer side by side (`write_folder`, `read_folder`); the reader refuses a record that
is malformed or of another format or version with `FingerprintFolderError`. The folder is written staged and
moved into place whole, so a reader never sees half of one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from noseprint.core.bundle import TOKENS_FILE as TOKENS
from noseprint.core.errors import UsageError
from noseprint.core.fileio import parse_json_strict, staged_directory
from noseprint.core.tokens import TokenList

FORMAT = "noseprint-fingerprint"
VERSION = 1
RECORD = "fingerprint.json"
PICTURE = "fingerprint.png"
INVARIANTS = "invariants.npy"


class FingerprintFolderError(UsageError):
    """Not a fingerprint folder this noseprint reads."""


@dataclass(frozen=True)
class FingerprintRecord:
    model_type: str
    fingerprinted_layers: list[int]
    encoder_digest: str
    generator_digest: str
    z: list[int]
    z_frac_bits: int

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @staticmethod
    def from_json(data: bytes) -> FingerprintRecord:
        """Strict: ValueError with a reason for anything else."""
        record = parse_json_strict(data)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} record")
        if record.get("version") != VERSION:
            raise ValueError(f"version {record.get('version')!r}; this noseprint reads version {VERSION}")
        if set(record) != {"format", "version", *FingerprintRecord.__dataclass_fields__}:
            raise ValueError("its fields are not a fingerprint record's")
        for name in ("model_type", "encoder_digest", "generator_digest"):
            if not isinstance(record[name], str):
                raise ValueError(f"{name} is not a string")
        for name in ("fingerprinted_layers", "z"):
            if not isinstance(record[name], list) or not all(type(v) is int for v in record[name]):
                raise ValueError(f"{name} is not a list of integers")
        if type(record["z_frac_bits"]) is not int or not record["z"]:
            raise ValueError("z is empty or its fraction bits are not an integer")
        del record["format"], record["version"]
        return FingerprintRecord(**record)


@dataclass(frozen=True)
class FingerprintFolder:
    root: Path
    record: FingerprintRecord
    tokens: TokenList

    @property
    def picture(self) -> Path:
        return self.root / PICTURE

    def invariants(self) -> np.ndarray | None:
        """The raw terms, if the folder still holds them (an owner may delete the private file before sharing)."""
        path = self.root / INVARIANTS
        return np.load(path, allow_pickle=False) if path.is_file() else None


def is_fingerprint_folder(path: Path) -> bool:
    return (Path(path) / RECORD).is_file()


def read_folder(path: Path) -> FingerprintFolder:
    root = Path(path)
    try:
        record = FingerprintRecord.from_json((root / RECORD).read_bytes())
        tokens = TokenList.from_json((root / TOKENS).read_bytes())
    except (OSError, ValueError) as exc:
        raise FingerprintFolderError(f"{root} is not a readable fingerprint folder ({exc})") from None
    return FingerprintFolder(root, record, tokens)


def write_folder(
    out: Path, record: FingerprintRecord, png: bytes, invariants: np.ndarray, tokens: TokenList, force: bool
) -> None:
    """The whole folder, staged and moved into place (an existing one only with `force`)."""
    with staged_directory(out, force) as stage:
        (stage / PICTURE).write_bytes(png)
        np.save(stage / INVARIANTS, invariants)
        (stage / TOKENS).write_text(json.dumps(tokens.to_json(), indent=1))
        (stage / RECORD).write_text(json.dumps(record.to_json(), indent=2) + "\n")
