"""What the registry does, for the CLI and the HTTP API alike: add, search, show, list, and the log's proofs.

Adding verifies first (the full `noseprint verify`, with the SRS this registry
trusts, and a signature required) and only then writes, in one transaction:
the entry, its leaf at the next log position, the new frontier, and a freshly
signed checkpoint. A refused bundle leaves no trace.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import noseprint.core.paths as paths
import noseprint.registry.archive as archive
import noseprint.registry.merkle as merkle
import noseprint.registry.tree_head as cp
import noseprint.signing.keys as keyfiles
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from noseprint.core.bundle import NOT_STATED, Bundle, BundleError, Manifest
from noseprint.core.errors import NoseprintError, UsageError
from noseprint.core.fileio import canonical_json, sha256_bytes
from noseprint.core.tokens import RULE as TOKEN_RULE
from noseprint.lineage.verdict import verdict
from noseprint.registry.search import ZIndex
from noseprint.registry.store import CheckpointRow, Entry, Evidence, LogHead, LogLeafIndex, Meta, open_engine, writer
from noseprint.signing.attestation import ENVELOPE_FILE
from noseprint.watermark.report import ReportError, verify_signed
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

KEY_ENV_VAR = "NOSEPRINT_REGISTRY_KEY"
DEFAULT_ORIGIN = "noseprint-registry"
LEAF_VERSION = 1


class Rejected(NoseprintError):
    """The registry refuses a bundle (exit 1; HTTP 422): invalid, unsigned, or its reason."""

    exit_code = 1

    def __init__(self, reason: str, check: str = "bundle", status: int = 422):
        super().__init__(reason)
        self.reason, self.check, self.status = reason, check, status


class Duplicate(Rejected):
    """The commitment is registered already (HTTP 409); the existing entry is named, never duplicated."""

    def __init__(self, entry_id: int):
        super().__init__(f"this model commitment is already registered as entry {entry_id}", "duplicate", 409)
        self.entry_id = entry_id


class NotFound(NoseprintError):
    exit_code = 1


@dataclass
class Registry:
    engine: Engine
    origin: str
    public: Ed25519PublicKey
    key: Ed25519PrivateKey | None = None
    index: ZIndex = field(default_factory=ZIndex)
    before_commit: Callable[[], None] | None = None
    """A seam for the crash test (tests/fault_server.py): runs inside an add's transaction, just before it
    commits. Production code never sets it."""

    @property
    def keyid(self) -> str:
        return keyfiles.key_id(self.public)


def default_key_path() -> Path:
    return Path(os.environ.get(KEY_ENV_VAR) or paths.home() / "registry-key")


def open_registry(url: str | None = None, key_path: Path | None = None, writable: bool = False) -> Registry:
    """Open the database; a writable registry loads (or, for a new registry, creates) its signing key.

    The database records the registry's public key on first use; a later writer with another key is
    refused, since its checkpoints would not verify for clients that pinned the first.
    """
    engine = open_engine(url)
    with Session(engine) as session:
        stored = {m.key: m.value for m in session.scalars(select(Meta))}
    key = None
    if writable:
        path = Path(key_path) if key_path else default_key_path()
        if not path.exists() and "public_key" not in stored:
            keyfiles.generate(path)
        key = keyfiles.load_private(path)
    if "public_key" not in stored:
        if key is None:
            raise UsageError("the registry is empty and has no key yet: add a bundle first (registry add)")
        pem = keyfiles.public_pem(key.public_key()).decode()
        stored = {"public_key": pem, "origin": DEFAULT_ORIGIN}
        with Session(writer(engine)) as session, session.begin():
            if session.get(Meta, "public_key") is None:
                session.add_all([Meta(key=k, value=v) for k, v in stored.items()])
                session.add(LogHead(id=1, size=0, frontier="[]"))
        with Session(engine) as session:
            stored = {m.key: m.value for m in session.scalars(select(Meta))}
    public = keyfiles.parse_public(stored["public_key"].encode(), "the registry's stored public key")
    if key is not None and keyfiles.key_id(key.public_key()) != keyfiles.key_id(public):
        raise UsageError(
            f"the registry key {key_path or default_key_path()} is not the key this registry signs with "
            f"({keyfiles.key_id(public)[:16]}…)"
        )
    return Registry(engine, stored["origin"], public, key)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Verified:
    """What a verified bundle contributes to an entry."""

    manifest: dict
    manifest_bytes: bytes
    envelope_bytes: bytes
    signer_keyid: str
    z: np.ndarray
    image_png: bytes
    archive: bytes


def verify_for_registry(bundle: Path, srs_file: Path | None = None) -> Verified:
    from noseprint.verifier.checks import verify_bundle

    bundle = Path(bundle)
    if not (bundle / ENVELOPE_FILE).is_file():
        raise Rejected("the bundle is not signed: the registry records who published each fingerprint", "signature")
    report = verify_bundle(bundle, srs_file=srs_file)
    if not report.valid:
        raise Rejected(f"{report.failed_check}: {report.reason}", report.failed_check or "bundle")
    if report.facts.get("token_rule") != TOKEN_RULE:
        raise Rejected(
            "tokens: the fingerprint was not taken at the token rule's tokens, so its z cannot be compared with "
            "the registry's (re-prove it from the model folder with its tokenizer)",
            "tokens",
        )
    verified = Bundle.open(bundle)
    z = np.asarray(report.facts["z"], dtype="<f4")
    return Verified(
        verified.manifest.data,
        verified.manifest_bytes(),
        (bundle / ENVELOPE_FILE).read_bytes(),
        report.facts["signer_keyid"],
        z,
        verified.picture.read_bytes(),
        archive.pack(bundle),
    )


def leaf_record(v: Verified, added_at: str, log_index: int) -> dict:
    """What the log commits to for one entry: enough hashes to pin the stored bundle, and the time."""
    return {
        "v": LEAF_VERSION,
        "log_index": log_index,
        "commitment": v.manifest["commitment"]["digest"],
        "manifest_sha256": sha256_bytes(v.manifest_bytes),
        "image_sha256": sha256_bytes(v.image_png),
        "envelope_sha256": sha256_bytes(v.envelope_bytes),
        "z_sha256": sha256_bytes(v.z.astype("<f4").tobytes()),
        "signer_keyid": v.signer_keyid,
        "added_at": added_at,
    }


def existing_entry(reg: Registry, commitment: str) -> int | None:
    with Session(reg.engine) as session:
        return session.scalar(select(Entry.id).where(Entry.commitment == commitment))


def append(reg: Registry, v: Verified, label: str = "") -> tuple[int, int, cp.Checkpoint]:
    """Write the entry and its log leaf, advance the head and sign a checkpoint, all in one transaction."""
    if reg.key is None:
        raise UsageError("this registry was opened read-only")
    commitment = v.manifest["commitment"]["digest"]
    try:
        with Session(writer(reg.engine)) as session, session.begin():
            head = session.scalars(select(LogHead).where(LogHead.id == 1).with_for_update()).one()
            duplicate = session.scalar(select(Entry.id).where(Entry.commitment == commitment))
            if duplicate is not None:
                raise Duplicate(duplicate)
            index, added_at = head.size, _now()
            leaf = canonical_json(leaf_record(v, added_at, index))
            leaf_hash = merkle.leaf_hash(leaf)
            frontier = merkle.append([bytes.fromhex(h) for h in json.loads(head.frontier)], index, leaf_hash)
            signed = cp.sign(reg.origin, index + 1, merkle.frontier_root(frontier), reg.key)
            entry = Entry(
                log_index=index,
                leaf=leaf.decode(),
                commitment=commitment,
                label=label[:200],
                model_type=str(v.manifest["model"].get("model_type", NOT_STATED)),
                z=v.z.astype("<f4").tobytes(),
                image_png=v.image_png,
                image_sha256=sha256_bytes(v.image_png),
                manifest_json=v.manifest_bytes.decode(),
                manifest_sha256=sha256_bytes(v.manifest_bytes),
                envelope_json=v.envelope_bytes.decode(),
                signer_keyid=v.signer_keyid,
                bundle_archive=v.archive,
                added_at=added_at,
            )
            session.add(entry)
            session.flush()
            session.add(LogLeafIndex(log_index=index, leaf_hash=leaf_hash.hex(), entry_id=entry.id))
            head.size, head.frontier = index + 1, json.dumps([h.hex() for h in frontier])
            session.add(
                CheckpointRow(
                    size=index + 1, root=signed.root.hex(), signed=json.dumps(signed.to_dict()), created_at=added_at
                )
            )
            entry_id = entry.id
            if reg.before_commit is not None:
                reg.before_commit()
    except IntegrityError:
        # a concurrent add of the same commitment won the race (PostgreSQL reports it at commit)
        found = existing_entry(reg, commitment)
        if found is None:
            raise
        raise Duplicate(found) from None
    return entry_id, index, signed


def add_bundle(reg: Registry, bundle: Path, srs_file: Path | None = None, label: str = "", top: int = 5) -> dict:
    """Verify and register a bundle folder; returns the entry and its nearest earlier relatives."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise UsageError(f"bundle folder not found: {bundle}")
    try:
        commitment: str | None = Manifest.read(bundle).commitment_digest
    except BundleError:
        commitment = None  # verification will say what is wrong with it
    if commitment is not None and (found := existing_entry(reg, commitment)) is not None:
        raise Duplicate(found)  # before minutes of verification
    verified = verify_for_registry(bundle, srs_file)
    entry_id, index, signed = append(reg, verified, label or bundle.name)
    return {
        "id": entry_id,
        "log_index": index,
        "checkpoint": signed.to_dict(),
        "commitment": verified.manifest["commitment"]["digest"],
        "signer_keyid": verified.signer_keyid,
        "nearest": search_z(reg, verified.z, top, exclude=entry_id),
    }


def add_archive(reg: Registry, data: bytes, srs_file: Path | None = None, label: str = "", top: int = 5) -> dict:
    """`add_bundle` for an uploaded tar.gz (the HTTP API): unpacked defensively into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="noseprint-upload-") as tmp:
        root = archive.unpack(data, Path(tmp))
        if not label:
            try:
                label = "bundle " + Manifest.read(root).commitment_digest[:12]
            except BundleError:
                label = "bundle"  # verification will say what is wrong with it
        return add_bundle(reg, root, srs_file, label, top)


def search_z(reg: Registry, z: np.ndarray, top: int = 5, exclude: int | None = None) -> list[dict]:
    reg.index.refresh(reg.engine)
    try:
        matches = reg.index.nearest(z, top, exclude)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not matches:
        return []
    with Session(reg.engine) as session:
        rows = {
            r.id: r
            for r in session.execute(
                select(Entry.id, Entry.label, Entry.commitment, Entry.signer_keyid, Entry.log_index).where(
                    Entry.id.in_([m.entry_id for m in matches])
                )
            )
        }
    return [
        {
            "id": m.entry_id,
            "label": rows[m.entry_id].label,
            "commitment": rows[m.entry_id].commitment,
            "signer_keyid": rows[m.entry_id].signer_keyid,
            "log_index": rows[m.entry_id].log_index,
            "z_cosine": round(m.z_cosine, 6),
            "verdict": verdict(None, m.z_cosine),
        }
        for m in matches
    ]


def z_of_source(source: Path) -> np.ndarray:
    """z of a bundle or fingerprint folder, as floats (searching does not verify: `add` does)."""
    from noseprint.encoder.zvector import as_floats
    from noseprint.lineage.compare import load

    with tempfile.TemporaryDirectory() as tmp:
        fingerprint = load(Path(source), Path(tmp))
    return np.asarray(as_floats(fingerprint.z), dtype=np.float32)


def entry_summary(e: Entry) -> dict:
    return {
        "id": e.id,
        "log_index": e.log_index,
        "label": e.label,
        "model_type": e.model_type,
        "commitment": e.commitment,
        "signer_keyid": e.signer_keyid,
        "image_sha256": e.image_sha256,
        "added_at": e.added_at,
    }


def get_entry(reg: Registry, entry_id: int) -> Entry:
    with Session(reg.engine, expire_on_commit=False) as session:
        entry = session.get(Entry, entry_id)
    if entry is None:
        raise NotFound(f"no entry {entry_id} in this registry")
    return entry


def list_entries(reg: Registry, offset: int = 0, limit: int = 50) -> tuple[int, list[dict]]:
    with Session(reg.engine) as session:
        total = session.scalar(select(func.count(Entry.id))) or 0
        rows = session.scalars(select(Entry).order_by(Entry.id.desc()).offset(offset).limit(limit)).all()
        return total, [entry_summary(e) for e in rows]


def latest_checkpoint(reg: Registry) -> cp.Checkpoint | None:
    with Session(reg.engine) as session:
        row = session.scalars(select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)).first()
    return cp.from_dict(json.loads(row.signed)) if row else None


def checkpoint_at(reg: Registry, size: int) -> cp.Checkpoint:
    with Session(reg.engine) as session:
        row = session.get(CheckpointRow, size)
    if row is None:
        raise NotFound(f"the registry published no checkpoint at size {size}")
    return cp.from_dict(json.loads(row.signed))


def leaf_hashes(reg: Registry, size: int) -> list[bytes]:
    with Session(reg.engine) as session:
        rows = session.scalars(
            select(LogLeafIndex.leaf_hash).where(LogLeafIndex.log_index < size).order_by(LogLeafIndex.log_index)
        ).all()
    if len(rows) != size:
        raise NotFound(f"the log has fewer than {size} leaves")
    return [bytes.fromhex(h) for h in rows]


def inclusion(reg: Registry, entry_id: int, size: int | None = None) -> dict:
    entry = get_entry(reg, entry_id)
    head = latest_checkpoint(reg)
    size = size or (head.size if head else 0)
    if entry.log_index >= size:
        raise NotFound(f"entry {entry_id} is at log position {entry.log_index}, not in a tree of size {size}")
    leaves = leaf_hashes(reg, size)
    return {
        "entry_id": entry_id,
        "log_index": entry.log_index,
        "tree_size": size,
        "leaf": entry.leaf,
        "leaf_hash": leaves[entry.log_index].hex(),
        "proof": [h.hex() for h in merkle.inclusion_proof(entry.log_index, leaves)],
        "checkpoint": checkpoint_at(reg, size).to_dict(),
    }


def consistency(reg: Registry, old: int, new: int) -> dict:
    if not 0 < old <= new:
        raise UsageError(f"no consistency proof from size {old} to {new}")
    leaves = leaf_hashes(reg, new)
    return {"old_size": old, "new_size": new, "proof": [h.hex() for h in merkle.consistency_proof(old, leaves)]}


MAX_REPORT_BYTES = 16 << 20


def add_evidence(reg: Registry, entry_id: int, data: bytes) -> dict:
    """Attach a signed report to a registered model: it must verify, be signed by the entry's own signer (only
    the owner speaks for a model's watermark key) and name the entry's model commitment (else whoever files it
    first would pick which of that signer's entries it speaks for); the same report is stored once."""
    entry = get_entry(reg, entry_id)
    if len(data) > MAX_REPORT_BYTES:
        raise Rejected(f"the report is larger than {MAX_REPORT_BYTES:,} bytes", "evidence")
    try:
        keyid, report = verify_signed(data)
    except ReportError as exc:
        raise Rejected(f"the report does not verify: {exc}", "evidence") from None
    if keyid != entry.signer_keyid:
        raise Rejected(
            f"the report is signed by key {keyid[:16]}…, not by entry {entry_id}'s owner {entry.signer_keyid[:16]}…",
            "evidence",
        )
    _check_report_entry(report, entry)
    digest = sha256_bytes(data)
    row = Evidence(
        entry_id=entry_id,
        kind=str(report.get("kind", ""))[:64],
        signed_json=data.decode(),
        report_sha256=digest,
        signer_keyid=keyid,
        added_at=_now(),
    )
    try:
        with Session(writer(reg.engine)) as session, session.begin():
            if session.scalar(select(Evidence.id).where(Evidence.report_sha256 == digest)) is not None:
                raise Rejected("this report is attached already", "duplicate", 409)
            session.add(row)
            session.flush()
            evidence_id = row.id
    except IntegrityError:
        raise Rejected("this report is attached already", "duplicate", 409) from None
    return {"evidence_id": evidence_id, "entry_id": entry_id, "report_sha256": digest} | _evidence_facts(report)


def _check_report_entry(report: dict, entry: Entry) -> None:
    """The signed report names this entry's model commitment (report version 2)."""
    named = report.get("model_commitment")
    if not isinstance(named, str):
        raise Rejected(
            f"the report names no registered model (version {report.get('version')!r}, no model_commitment): sign "
            f"it again with --model-commitment {entry.commitment}",
            "evidence",
        )
    if named != entry.commitment:
        raise Rejected(
            f"the report is evidence for model commitment {named[:16]}…, not entry {entry.id}'s "
            f"{entry.commitment[:16]}…",
            "evidence",
        )


def _evidence_facts(report: dict) -> dict:
    result = report.get("result") or {}
    return {
        "kind": report.get("kind"),
        "model_commitment": report.get("model_commitment"),
        "key_commitment": report.get("key_commitment"),
        "scored": result.get("scored"),
        "log10_p": result.get("log10_p"),
        "subjects": report.get("subjects"),
    }


def list_evidence(reg: Registry, entry_id: int) -> list[dict]:
    with Session(reg.engine) as session:
        rows = session.scalars(select(Evidence).where(Evidence.entry_id == entry_id).order_by(Evidence.id)).all()
        found = []
        for row in rows:
            _, body = verify_signed(row.signed_json.encode())  # verified when added; read through the same path
            found.append(
                {"evidence_id": row.id, "report_sha256": row.report_sha256, "signer_keyid": row.signer_keyid}
                | {"added_at": row.added_at}
                | _evidence_facts(body)
            )
        return found
