"""Models named by a Hugging Face id (`org/name`), found in the local Hugging Face cache, never downloaded.

The cache is huggingface_hub's (`HF_HOME`, `HF_HUB_CACHE`): `models--org--name/snapshots/<revision>/...`
with `refs/main` naming the revision; `snapshot_download(local_files_only=True)` resolves it exactly as
transformers would offline, and refuses when the model is not there.
"""

from __future__ import annotations

import re
from pathlib import Path

from noseprint.core.errors import UsageError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
"""What a Hugging Face model id looks like: one `/` between two names (a local path wins when it exists)."""


def resolve_model(source: str | Path) -> Path:
    """A local model folder or GGUF file as given, or the cached snapshot of a Hugging Face id."""
    path = Path(source)
    if path.exists() or not REPO_ID.match(str(source)):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(source), local_files_only=True))
    except LocalEntryNotFoundError:
        raise UsageError(
            f"{source} is neither a local folder nor a model in the Hugging Face cache (HF_HOME); noseprint never "
            f"downloads: fetch it first (e.g. `hf download {source}`) or give its folder"
        ) from None
