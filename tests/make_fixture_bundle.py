"""Re-make the committed fixture bundle `tests/data/bundle-v4` (run it after a format change).

    python -m tests.make_fixture_bundle

The model is `chunky_llama(seed=0)` (rebuilt from its seed by the tests that open it), 8 tokens, split
into three chunks per term (`CHUNKING`), proven under the committed development SRS `tests/data/dev-k12.srs`
and signed by a fresh key whose private half is thrown away: the tests only ever need the public key the
proof binds (`bundle-v4.owner.pub`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import CHUNKING, chunky_llama, save_tiny

DATA = Path(__file__).with_name("data")
NAME = "bundle-v4"
TOKENS = "8"
SRS_LOGROWS = "12"


def cli(*args: str, home: Path) -> None:
    env = {**os.environ, "NOSEPRINT_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "noseprint.cli", *args], check=True, env=env)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="noseprint-fixture-") as tmp:
        work = Path(tmp)
        model = save_tiny(chunky_llama(seed=0), work / "model")
        cli("keygen", "--out", str(work / "owner.key"), home=work)
        cli("srs", "import", str(DATA / "dev-k12.srs"), "--logrows", SRS_LOGROWS, home=work)
        bundle = work / NAME
        cli("prove", str(model), "--out", str(bundle), "--n-tokens", TOKENS, "--chunking", CHUNKING,
            "--sign", str(work / "owner.key"), home=work)  # fmt: skip
        target = DATA / NAME
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(bundle, target)
        shutil.copy(work / f"{NAME}.opening.json", DATA / f"{NAME}.opening.json")
        shutil.copy(work / "owner.key.pub", DATA / f"{NAME}.owner.pub")
    print(f"wrote {DATA / NAME}")


if __name__ == "__main__":
    main()
