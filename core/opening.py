"""The opening: the owner's private file that un-hides a bundle's commitment, `BUNDLE.opening.json`.

`prove` writes it beside the bundle (mode 0600, never inside it); `check-opening` reads it to recompute the
commitment from an open model, and `prove-inference` to open the whole-model commitment. Like `core.bundle`,
this module is the one owner of the format: `Opening.write` is its only writer, `Opening.read` its only
reader, which refuses anything malformed or of another version with `OpeningError`.

    {"format": "noseprint-opening", "version": 1,
     "scheme": the commitment scheme, "commitment_digest": hex, "input_scale": int,
     "model_dir": the folder proven (informative), "token_ids": [int, ...], "term_shifts": [int, ...],
     "chunking": {"kv_heads", "ffn_rows"},
     "blinding": {piece name: [int, ...]},                     the fingerprint's blinding lines
     "inference_blinding": {piece name: [int, ...]}}           the whole model's (absent when it has none)

Files written before the format had a name carry neither "format" nor "version": they are read as version 1,
whose fields they have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noseprint.core.errors import UsageError
from noseprint.core.fileio import parse_json_strict, write_json_atomic

FORMAT = "noseprint-opening"
VERSION = 1
SUFFIX = ".opening.json"
MODE = 0o600
"""The blinding lines un-hide the commitment: owner-only."""
FIELDS = ("scheme", "commitment_digest", "input_scale", "model_dir", "token_ids", "term_shifts", "chunking")


class OpeningError(UsageError):
    """The file is not an opening this noseprint reads (exit 2: the owner's own file)."""


def default_path(bundle: Path) -> Path:
    """Where `prove` puts the opening of BUNDLE: BUNDLE.opening.json, beside it."""
    bundle = Path(bundle)
    return bundle.with_name(bundle.name + SUFFIX)


@dataclass(frozen=True)
class Opening:
    scheme: str
    commitment_digest: str
    input_scale: int
    model_dir: str
    token_ids: list[int]
    term_shifts: list[int]
    chunking: dict[str, int]
    blinding: dict[str, list[int]]
    inference_blinding: dict[str, list[int]] | None = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        record |= {name: getattr(self, name) for name in (*FIELDS, "blinding")}
        if self.inference_blinding is not None:
            record["inference_blinding"] = self.inference_blinding
        return record

    def write(self, path: Path) -> None:
        """Atomically, owner-only."""
        write_json_atomic(Path(path), self.to_json(), mode=MODE)

    @staticmethod
    def read(path: Path) -> Opening:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise OpeningError(f"opening file not found: {path}") from None
        except OSError as exc:
            raise OpeningError(f"cannot read the opening file {path}: {exc}") from None
        try:
            return Opening.from_dict(parse_json_strict(data))
        except ValueError as exc:
            raise OpeningError(f"{path} is not a noseprint opening: {exc}") from None

    @staticmethod
    def from_dict(record: object) -> Opening:
        """Strict: ValueError with a reason for anything else."""
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        if record.get("format", FORMAT) != FORMAT or record.get("version", VERSION) != VERSION:
            raise ValueError(f"format {record.get('format')!r} version {record.get('version')!r}; this reads {VERSION}")
        missing = [name for name in (*FIELDS, "blinding") if name not in record]
        if missing:
            raise ValueError(f"no {missing[0]}")
        for name in ("scheme", "commitment_digest", "model_dir"):
            if not isinstance(record[name], str):
                raise ValueError(f"{name} is not a string")
        if type(record["input_scale"]) is not int:
            raise ValueError("input_scale is not an integer")
        chunking = record["chunking"]
        if not isinstance(chunking, dict) or not all(type(v) is int for v in chunking.values()):
            raise ValueError("chunking is not a table of integers")
        inference = record.get("inference_blinding")
        return Opening(
            record["scheme"], record["commitment_digest"], record["input_scale"], record["model_dir"],
            _ints(record["token_ids"], "token_ids"), _ints(record["term_shifts"], "term_shifts"), chunking,
            _lines(record["blinding"], "blinding"), None if inference is None else _lines(inference, "inference"),
        )  # fmt: skip


def _ints(value: object, what: str) -> list[int]:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise ValueError(f"{what} is not a list of integers")
    return value


def _lines(value: object, what: str) -> dict[str, list[int]]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a table of blinding lines")
    return {str(name): _ints(line, f"{what} line {name}") for name, line in value.items()}
