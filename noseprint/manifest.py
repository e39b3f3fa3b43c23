"""The bundle format: a folder with `manifest.json` (schema: `manifest.schema.json`) and the files it lists.

    BUNDLE/
      manifest.json          what was proven, about which model, with which networks, circuit and SRS
      fingerprint.png        the picture (re-rendered and compared by verify)
      z.json                 the proven encoder output (raw integers) and z
      tokens.json            the selected token ids and strings
      proof.json             the EZKL proof (public instances: z_raw; committed columns: the weights)
      circuit/settings.json  EZKL settings (informative: verify derives its own)
      circuit/vk.key         verification key (a hint: verify derives its own and compares)

Every file but the manifest is listed in `files` with its SHA-256.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

FORMAT = "noseprint-bundle"
VERSION = 1
MANIFEST = "manifest.json"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def schema_errors(manifest: object) -> list[str]:
    """Human-readable schema violations, best first; empty when the manifest is valid."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: (len(e.path), str(e.path)))
    return [f"{'/'.join(str(p) for p in e.path) or '(top level)'}: {e.message}" for e in errors]
