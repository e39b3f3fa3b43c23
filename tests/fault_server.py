"""A registry server for the crash test: `registry serve`, with an add that stops just before its commit.

    python tests/fault_server.py DB_URL PORT TOKEN MARKER

The add touches MARKER inside its transaction and then sleeps, so the test can SIGKILL the server
mid-transaction. The pause uses the registry's `before_commit` seam; production code never sets it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from noseprint.registry.server import serve
from noseprint.registry.service import open_registry

PAUSE_SECONDS = 3600


def main(db: str, port: str, token: str, marker: str) -> None:
    registry = open_registry(db, None, writable=True)

    def pause() -> None:
        Path(marker).touch()
        time.sleep(PAUSE_SECONDS)

    registry.before_commit = pause
    serve(registry, "127.0.0.1", int(port), token, None)


if __name__ == "__main__":
    main(*sys.argv[1:5])
