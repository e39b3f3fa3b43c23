"""The work folder of a chunked proof: what makes `noseprint prove` resumable.

    WORK/
      state.json             {"format": "noseprint-work", "version": 1, "identity": what is being proven,
                              ...its blinding}, owner-only
      chunks/<name>.json     one finished chunk proof each, written atomically

A re-run with the same model, tokens, chunking, circuits and SRS reads the blinding back (so the
commitments are the same) and proves only the chunks that have no file yet; a kill at any moment loses at
most the chunks in flight, because each file appears whole or not at all. A work folder made for anything
else is refused rather than mixed in. It is removed once the bundle is written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noseprint.circuits.proving import ProofResult
from noseprint.core.errors import UsageError
from noseprint.core.fileio import parse_json_strict, write_json_atomic

FORMAT = "noseprint-work"
VERSION = 1
STATE_FILE = "state.json"
CHUNKS_FOLDER = "chunks"
PRIVATE_MODE = 0o600
"""The state holds the blinding lines, which un-hide the commitment."""


@dataclass(frozen=True)
class WorkFolder:
    root: Path

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def chunk_path(self, name: str) -> Path:
        return self.root / CHUNKS_FOLDER / f"{name}.json"

    def open(self, identity: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
        """The saved state if it is for `identity`, else a new one made of `fresh` (which is then saved)."""
        if self.state_path.is_file():
            try:
                state = parse_json_strict(self.state_path.read_bytes())
            except (OSError, ValueError) as exc:
                raise UsageError(
                    f"the work folder {self.root} is unreadable ({exc}); remove it to start over"
                ) from None
            if not isinstance(state, dict) or (state.get("format"), state.get("version")) != (FORMAT, VERSION):
                raise UsageError(
                    f"the work folder {self.root} was made by another noseprint version; remove it to start over"
                )
            if state.get("identity") != identity:
                raise UsageError(
                    f"the work folder {self.root} holds the proof of another model, token list, chunking, circuit "
                    "or SRS; remove it, or name another with --work"
                )
            return dict(state)
        if self.root.exists() and any(self.root.iterdir()):
            raise UsageError(f"{self.root} is not empty and is not a noseprint work folder; name another with --work")
        state = {"format": FORMAT, "version": VERSION, "identity": identity} | fresh
        (self.root / CHUNKS_FOLDER).mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.state_path, state, mode=PRIVATE_MODE)
        return state

    def done(self, name: str) -> bool:
        return self.chunk_path(name).is_file()

    def record(self, name: str, result: ProofResult) -> None:
        record = {
            "proof": result.proof.decode(),
            "outputs": result.outputs,
            "input_points": result.input_points,
            "output_points": result.output_points,
        }
        write_json_atomic(self.chunk_path(name), record, mode=PRIVATE_MODE)

    def load(self, name: str) -> ProofResult:
        try:
            record = parse_json_strict(self.chunk_path(name).read_bytes(), allow_floats=True)
            return ProofResult(
                record["proof"].encode(), record["outputs"], record["input_points"], record["output_points"]
            )
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"chunk {name} in the work folder is unreadable ({exc}); delete that file") from None

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
