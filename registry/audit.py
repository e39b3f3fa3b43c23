"""`noseprint registry check`: what a client does to hold a registry to its log.

The client keeps, per registry, the registry's public key (pinned on first use,
or given with --registry-pub) and the newest checkpoint it has seen. Each check:

1. the newest checkpoint must be signed by the pinned key;
2. it must extend the remembered one: a consistency proof (RFC 9162 2.1.4)
   from the old size to the new one; a registry that changed, dropped or
   reordered any earlier entry cannot make one;
3. named entries must be in the tree: an inclusion proof for each, and the
   entry's served data must hash to its leaf;
4. with --full (a database the client can read), every entry is re-hashed and
   the whole tree recomputed.

Only then is the new checkpoint remembered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import noseprint.core.paths as paths
import noseprint.registry.merkle as merkle
import noseprint.registry.tree_head as cp
import noseprint.signing.keys as keyfiles
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from noseprint.core.errors import NoseprintError, UsageError
from noseprint.core.fileio import sha256_bytes, write_json_atomic


class AuditFailed(NoseprintError):
    """The registry broke a promise its log makes; the message says which (exit 1)."""

    exit_code = 1


class Source(Protocol):
    name: str

    def public_key_pem(self) -> bytes: ...
    def checkpoint(self) -> dict | None: ...
    def consistency(self, old: int, new: int) -> dict: ...
    def inclusion(self, entry_id: int, size: int) -> dict: ...
    def entry_data(self, entry_id: int) -> dict: ...


@dataclass
class LocalSource:
    """A registry database this machine can open (SQLite file or PostgreSQL URL)."""

    url: str | None

    def __post_init__(self) -> None:
        from noseprint.registry.service import open_registry
        from noseprint.registry.store import default_url, safe_url

        self.registry = open_registry(self.url)
        self.name = "db:" + safe_url(self.url or default_url())

    def public_key_pem(self) -> bytes:
        return keyfiles.public_pem(self.registry.public)

    def checkpoint(self) -> dict | None:
        from noseprint.registry.service import latest_checkpoint

        head = latest_checkpoint(self.registry)
        return head.to_dict() if head else None

    def consistency(self, old: int, new: int) -> dict:
        from noseprint.registry.service import consistency

        return consistency(self.registry, old, new)

    def inclusion(self, entry_id: int, size: int) -> dict:
        from noseprint.registry.service import inclusion

        return inclusion(self.registry, entry_id, size)

    def entry_data(self, entry_id: int) -> dict:
        from noseprint.registry.service import get_entry

        e = get_entry(self.registry, entry_id)
        return {
            "commitment": e.commitment,
            "manifest_sha256": sha256_bytes(e.manifest_json.encode()),
            "image_sha256": sha256_bytes(e.image_png),
            "envelope_sha256": sha256_bytes(e.envelope_json.encode()),
            "z_sha256": sha256_bytes(e.z),
            "signer_keyid": e.signer_keyid,
            "added_at": e.added_at,
            "log_index": e.log_index,
        }

    def all_leaves(self) -> list[tuple[int, str]]:
        from noseprint.registry.store import Entry
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        with Session(self.registry.engine) as session:
            return [(r.id, r.leaf) for r in session.execute(select(Entry.id, Entry.leaf).order_by(Entry.log_index))]


@dataclass
class HttpSource:
    """A registry served by `noseprint registry serve`."""

    base_url: str
    name: str = ""

    def __post_init__(self) -> None:
        import httpx

        self.base_url = self.base_url.rstrip("/")
        self.name = "http:" + self.base_url
        self.client = httpx.Client(base_url=self.base_url, timeout=60)

    def _get(self, path: str, **params) -> dict:
        import httpx

        try:
            response = self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot reach the registry at {self.base_url} ({exc})") from None
        if response.status_code == 404:
            raise AuditFailed(f"the registry has no {path}: {response.json().get('detail', '')}")
        if response.status_code != 200:
            raise AuditFailed(f"the registry answered {response.status_code} for {path}")
        return response.json()

    def public_key_pem(self) -> bytes:
        return self._get("/api/registry")["public_key"].encode()

    def checkpoint(self) -> dict | None:
        return self._get("/api/checkpoint").get("checkpoint")

    def consistency(self, old: int, new: int) -> dict:
        return self._get("/api/log/consistency", old=old, new=new)

    def inclusion(self, entry_id: int, size: int) -> dict:
        return self._get(f"/api/entries/{entry_id}/inclusion", size=size)

    def entry_data(self, entry_id: int) -> dict:
        import httpx

        entry = self._get(f"/api/entries/{entry_id}")
        image = self.client.get(f"/api/entries/{entry_id}/image.png")
        if image.status_code != 200:
            raise AuditFailed(f"the registry does not serve entry {entry_id}'s image")
        try:
            bundle = self.client.get(f"/api/entries/{entry_id}/bundle.tar.gz")
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot fetch entry {entry_id}'s bundle ({exc})") from None
        return entry | {"image_sha256": sha256_bytes(image.content), "bundle_bytes": len(bundle.content)}


@dataclass
class AuditReport:
    source: str
    registry_keyid: str
    key_pinned_now: bool
    size: int
    root: str
    previous_size: int | None
    entries_checked: list[int] = field(default_factory=list)
    full: bool = False

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def state_path(source_name: str) -> Path:
    return paths.home() / "registry-client" / f"{hashlib.sha256(source_name.encode()).hexdigest()[:24]}.json"


LEAF_FIELDS = ("commitment", "manifest_sha256", "image_sha256", "envelope_sha256", "z_sha256", "signer_keyid")


def _check_leaf_matches(entry_id: int, leaf: dict, data: dict) -> None:
    for name in LEAF_FIELDS:
        if name in data and leaf.get(name) != data[name]:
            raise AuditFailed(f"entry {entry_id}: its stored {name.replace('_', ' ')} differs from the logged one")


def _parse_hashes(values: object, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise AuditFailed(f"the {what} is malformed")
    try:
        hashes = [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError):
        raise AuditFailed(f"the {what} is malformed") from None
    if any(len(h) != 32 for h in hashes):
        raise AuditFailed(f"the {what} holds a hash that is not 32 bytes")
    return hashes


def _pinned_key(
    state: dict, state_file: Path, served: Ed25519PublicKey, pinned_public: Ed25519PublicKey | None
) -> tuple[Ed25519PublicKey, bool]:
    """The key the registry must sign with (given, remembered, or pinned now: True) and checked against the served one.

    A registry that swaps its key could sign any history, so a changed key ends the check.
    """
    pinned_now = False
    if pinned_public is None:
        if "public_key" in state:
            pinned_public = keyfiles.parse_public(state["public_key"].encode(), str(state_file))
        else:
            pinned_public, pinned_now = served, True
    if keyfiles.key_id(served) != keyfiles.key_id(pinned_public):
        raise AuditFailed(
            f"the registry now presents key {keyfiles.key_id(served)[:16]}…, not the pinned "
            f"{keyfiles.key_id(pinned_public)[:16]}…"
        )
    return pinned_public, pinned_now


def _verified_head(source: Source, pinned_public: Ed25519PublicKey) -> cp.Checkpoint:
    """The registry's newest checkpoint, refused unless the pinned key signed it (step 1)."""
    head_dict = source.checkpoint()
    if head_dict is None:
        raise AuditFailed("the registry has published no checkpoint yet (it is empty)")
    try:
        head = cp.from_dict(head_dict)
        cp.verify(head, pinned_public)
    except cp.CheckpointError as exc:
        raise AuditFailed(str(exc)) from None
    return head


def _check_extends(source: Source, previous: cp.Checkpoint, head: cp.Checkpoint) -> None:
    """Step 2: the new checkpoint must extend the remembered one, or the log rewrote what we saw."""
    if previous.size > head.size:
        raise AuditFailed(f"the log shrank: it had {previous.size} entries, it now claims {head.size}")
    proof = (
        _parse_hashes(source.consistency(previous.size, head.size)["proof"], "consistency proof")
        if previous.size < head.size
        else []
    )
    try:
        merkle.verify_consistency(previous.size, head.size, previous.root, head.root, proof)
    except merkle.ProofError as exc:
        raise AuditFailed(f"the registry's log is not consistent with the checkpoint you kept: {exc}") from None


def _check_inclusion(source: Source, entry_id: int, head: cp.Checkpoint) -> None:
    """Step 3 for one entry: it is in the signed tree where it says, and its served data hashes to its leaf."""
    answer = source.inclusion(entry_id, head.size)
    leaf_text = str(answer.get("leaf", ""))
    leaf_hash = merkle.leaf_hash(leaf_text.encode())
    try:
        merkle.verify_inclusion(
            int(answer["log_index"]),
            head.size,
            leaf_hash,
            _parse_hashes(answer["proof"], "inclusion proof"),
            head.root,
        )
    except (merkle.ProofError, KeyError, ValueError) as exc:
        raise AuditFailed(f"entry {entry_id} is not in the log as the checkpoint states: {exc}") from None
    leaf = json.loads(leaf_text)
    if leaf.get("log_index") != answer["log_index"]:
        raise AuditFailed(f"entry {entry_id}: the logged position differs from the served one")
    _check_leaf_matches(entry_id, leaf, source.entry_data(entry_id))


def _check_inclusions(source: Source, entries: list[int] | None, head: cp.Checkpoint) -> list[int]:
    """Step 3: every named entry, in order; the ids checked."""
    checked: list[int] = []
    for entry_id in entries or []:
        _check_inclusion(source, entry_id, head)
        checked.append(entry_id)
    return checked


def _check_full(source: Source, head: cp.Checkpoint) -> None:
    """Step 4 (--full): re-hash every stored entry and recompute the whole tree; needs the database itself."""
    if not isinstance(source, LocalSource):
        raise UsageError("--full needs the database itself (--db), not a served registry")
    leaves = source.all_leaves()
    if len(leaves) != head.size:
        raise AuditFailed(f"the database holds {len(leaves)} entries but the checkpoint says {head.size}")
    hashes = []
    for position, (entry_id, leaf_text) in enumerate(leaves):
        leaf = json.loads(leaf_text)
        if leaf.get("log_index") != position:
            raise AuditFailed(f"entry {entry_id} is logged at {leaf.get('log_index')} but stored at {position}")
        _check_leaf_matches(entry_id, leaf, source.entry_data(entry_id))
        hashes.append(merkle.leaf_hash(leaf_text.encode()))
    if merkle.root(hashes) != head.root:
        raise AuditFailed("the entries in the database do not hash to the signed checkpoint's root")


def _remember(state_file: Path, source: Source, pinned_public: Ed25519PublicKey, head: cp.Checkpoint) -> None:
    """Keep the pinned key and the checkpoint just checked: the next check must extend it."""
    write_json_atomic(
        state_file,
        {
            "source": source.name,
            "public_key": keyfiles.public_pem(pinned_public).decode(),
            "checkpoint": head.to_dict(),
        },
    )


def check(
    source: Source,
    pinned_public: Ed25519PublicKey | None = None,
    entries: list[int] | None = None,
    full: bool = False,
    remember: bool = True,
) -> AuditReport:
    """Hold `source` to its log (steps 1-4 of the module docstring); remember the new checkpoint only if all pass."""
    state_file = state_path(source.name)
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    served = keyfiles.parse_public(source.public_key_pem(), "the registry's public key")
    pinned_public, pinned_now = _pinned_key(state, state_file, served, pinned_public)
    head = _verified_head(source, pinned_public)
    previous = cp.from_dict(state["checkpoint"]) if "checkpoint" in state else None
    if previous is not None:
        _check_extends(source, previous, head)
    checked = _check_inclusions(source, entries, head)
    if full:
        _check_full(source, head)
    if remember:
        _remember(state_file, source, pinned_public, head)
    return AuditReport(
        source.name,
        keyfiles.key_id(pinned_public),
        pinned_now,
        head.size,
        head.root.hex(),
        previous.size if previous else None,
        checked,
        full,
    )
