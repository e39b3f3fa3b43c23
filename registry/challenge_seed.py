"""A challenge's seed from the registry: the root of the first signed checkpoint that includes the bundle's entry.

The root of such a checkpoint did not exist before the entry was logged (the leaf holds the hash of the bundle's
manifest, and so its commitment), and the registry signs it; so prompts derived from it were unpredictable when
the owner committed to the weights. Only the *first* one, of size log_index + 1, the one the entry's own add
signed: every later add signs another root that includes the entry, and an owner who could choose among them
(adding entries until a root gives prompts that suit) would choose the challenge. The challenge records the
checkpoint, the entry's leaf and its inclusion proof (`core/challenge.py`), and `seed_record_errors` lets anyone
holding the registry's public key check, offline, that the seed is such a root and that the entry is the
challenged bundle.
"""

from __future__ import annotations

import json
from typing import Any

import noseprint.registry.merkle as merkle
import noseprint.registry.tree_head as cp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from noseprint.core.challenge import CHECKPOINT_FIELDS, Challenge
from noseprint.core.errors import UsageError
from noseprint.registry.audit import AuditFailed, Source


def _leaf_manifest_digest(leaf_text: str) -> str | None:
    try:
        leaf = json.loads(leaf_text)
    except ValueError:
        return None
    value = leaf.get("manifest_sha256") if isinstance(leaf, dict) else None
    return value if isinstance(value, str) else None


def log_errors(record: dict[str, Any], public: Ed25519PublicKey) -> list[str]:
    """The registry's part: the checkpoint is signed by the key the auditor pinned, and the logged leaf is in its
    tree at the stated position (RFC 9162 inclusion proof). A forged signature or a proof for another leaf fails."""
    try:
        head = cp.from_dict(record)
        cp.verify(head, public)
    except cp.CheckpointError as exc:
        return [str(exc)]
    try:
        proof = [bytes.fromhex(h) for h in record["inclusion_proof"]]
        leaf_hash = merkle.leaf_hash(str(record["leaf"]).encode())
        merkle.verify_inclusion(int(record["log_index"]), head.size, leaf_hash, proof, head.root)
    except (merkle.ProofError, KeyError, TypeError, ValueError) as exc:
        return [f"entry {record.get('entry_id')} is not in the checkpoint's tree: {exc}"]
    return []


def entry_errors(record: dict[str, Any], bundle_digest: str) -> list[str]:
    """The bundle's part: the logged leaf is this bundle's (it holds the hash of its manifest)."""
    logged = _leaf_manifest_digest(str(record.get("leaf")))
    if logged != bundle_digest:
        return [
            f"registry entry {record.get('entry_id')} logs manifest {str(logged)[:16]}…, "
            f"not this bundle's {bundle_digest[:16]}…"
        ]
    return []


def first_checkpoint_errors(record: dict[str, Any]) -> list[str]:
    """The checkpoint is the first that includes the entry: its size is the entry's log index + 1."""
    size, index = record.get("size"), record.get("log_index")
    if type(size) is not int or type(index) is not int or size != index + 1:
        return [
            f"the checkpoint has size {size}, but only the first checkpoint that includes entry "
            f"{record.get('entry_id')} (log index {index}) seeds a challenge"
        ]
    return []


def seed_record_errors(record: dict[str, Any], bundle_digest: str, public: Ed25519PublicKey) -> list[str]:
    """Why `record` does not make its root a fair seed for this bundle: empty when it does (the log's promise,
    that the checkpoint is the entry's first, then that the entry is this bundle)."""
    return log_errors(record, public) or first_checkpoint_errors(record) or entry_errors(record, bundle_digest)


def challenge_seed_errors(challenge: Challenge, public: Ed25519PublicKey) -> list[str]:
    """`seed_record_errors` for a registry-seeded challenge (an auditor's seed has no record to check)."""
    if challenge.seed_source != "registry-checkpoint" or challenge.checkpoint is None:
        return []
    return seed_record_errors(challenge.checkpoint, challenge.bundle_digest, public)


def fetch_seed_record(source: Source, entry_id: int, bundle_digest: str, public: Ed25519PublicKey) -> dict[str, Any]:
    """The first checkpoint of `source` that includes `entry_id` (size: its log index + 1), with the entry's
    inclusion in it, checked before it is used; the same record whenever it is fetched.

    A checkpoint the pinned key did not sign, or an inclusion proof that does not lead to its root, means the
    registry broke its log's promise (AuditFailed, exit 1); an entry that is another bundle is the caller's
    mistake (UsageError)."""
    newest = source.checkpoint()
    if newest is None:
        raise AuditFailed("the registry has published no checkpoint yet (it is empty)")
    try:
        newest_size = cp.from_dict(newest).size
    except cp.CheckpointError as exc:
        raise AuditFailed(str(exc)) from None
    index = source.inclusion(entry_id, newest_size).get("log_index")
    if type(index) is not int or index < 0:
        raise AuditFailed(f"the registry gives entry {entry_id} no log position")
    answer = source.inclusion(entry_id, index + 1)
    try:
        head = cp.from_dict(answer.get("checkpoint"))
    except cp.CheckpointError as exc:
        raise AuditFailed(str(exc)) from None
    if head.size != index + 1:
        raise AuditFailed(f"the registry answered a checkpoint of size {head.size} for size {index + 1}")
    record = head.to_dict() | {
        "entry_id": entry_id,
        "log_index": answer.get("log_index"),
        "leaf": answer.get("leaf"),
        "inclusion_proof": answer.get("proof"),
    }
    assert set(record) == set(CHECKPOINT_FIELDS)
    problems = log_errors(record, public) or first_checkpoint_errors(record)
    if problems:
        raise AuditFailed(problems[0])
    problems = entry_errors(record, bundle_digest)
    if problems:
        raise UsageError(f"{problems[0]}: challenge the entry that registered this bundle")
    return record
