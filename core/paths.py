"""Where noseprint keeps its local state (SRS store, derived keys).

`NOSEPRINT_HOME` overrides the default `~/.local/share/noseprint`, so tests and
CI can give the prover and the verifier separate, disposable stores.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    configured = os.environ.get("NOSEPRINT_HOME")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "noseprint"


def srs_store() -> Path:
    return home() / "srs"


def key_cache() -> Path:
    return home() / "keys"
