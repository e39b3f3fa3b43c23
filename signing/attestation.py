"""The owner's signed statement about a bundle: an in-toto Statement v1 inside a DSSE envelope.

    subject        the model commitment and the fingerprint image, each by SHA-256
    predicateType  PREDICATE_TYPE
    predicate      the manifest's SHA-256 (which pins every other file by hash),
                   the circuit's identity, the networks and the SRS

Two files are added to the bundle, outside the manifest (they sign it):
`attestation.dsse.json` and `signer.pub`. Anyone can check the signature with
the bundled key, which shows integrity and names a key id; `verify --key PUB`
demands a particular signer, which is what shows who published the bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

import noseprint.signing.dsse as dsse
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from noseprint.core.bundle import MANIFEST
from noseprint.core.errors import UsageError
from noseprint.core.fileio import canonical_json, sha256_bytes, write_bytes_atomic
from noseprint.signing.dsse import EnvelopeError
from noseprint.signing.keys import key_id, parse_public, public_pem

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://noseprint.dev/attestation/fingerprint/v2"
"""v2: the proof is chunked (bundle format 4); the predicate names every circuit's id and key."""
ENVELOPE_FILE = "attestation.dsse.json"
SIGNER_FILE = "signer.pub"
COMMITMENT_SUBJECT = "model-commitment"


def statement_for(manifest: dict, manifest_bytes: bytes) -> dict:
    image = manifest["image"]["file"]
    circuit = manifest["circuit"]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": COMMITMENT_SUBJECT, "digest": {"sha256": manifest["commitment"]["digest"]}},
            {"name": image, "digest": {"sha256": manifest["files"][image]}},
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "manifest": {"name": MANIFEST, "digest": {"sha256": sha256_bytes(manifest_bytes)}},
            "circuit": {
                "encode": {key: circuit["encode_circuit"][key] for key in ("circuit_id", "vk_sha256")},
                "chunks": [{key: c[key] for key in ("circuit_id", "vk_sha256")} for c in circuit["chunk_circuits"]],
                "logrows": circuit["logrows"],
            },
            "networks": {name: net["digest"] for name, net in sorted(manifest["networks"].items())},
            "srs_sha256": manifest["srs"]["sha256"],
        },
    }


def sign_bundle(bundle: Path, private: Ed25519PrivateKey) -> str:
    """Sign a finished bundle in place (atomic writes); returns the key id."""
    bundle = Path(bundle)
    manifest_bytes = (bundle / MANIFEST).read_bytes()
    statement = statement_for(json.loads(manifest_bytes), manifest_bytes)
    envelope = dsse.sign(canonical_json(statement), dsse.IN_TOTO_PAYLOAD_TYPE, private)
    write_bytes_atomic(bundle / ENVELOPE_FILE, (json.dumps(envelope, indent=2) + "\n").encode())
    write_bytes_atomic(bundle / SIGNER_FILE, public_pem(private.public_key()))
    return key_id(private.public_key())


def is_signed(bundle: Path) -> bool:
    return (Path(bundle) / ENVELOPE_FILE).exists()


def check_bundle_signature(
    bundle: Path, manifest: dict, manifest_bytes: bytes, required: Ed25519PublicKey | None
) -> tuple[str, dict]:
    """Verify the envelope and that its statement describes exactly this bundle; return (key id, statement).

    With `required`, only that key's signature is accepted; without, the bundled `signer.pub`.
    """
    bundle = Path(bundle)
    try:
        envelope = dsse.loads((bundle / ENVELOPE_FILE).read_bytes())
    except OSError as exc:
        raise EnvelopeError(f"{ENVELOPE_FILE} is unreadable ({exc})") from None
    if required is None:
        try:
            public = parse_public((bundle / SIGNER_FILE).read_bytes(), SIGNER_FILE)
        except OSError:
            raise EnvelopeError(f"the bundle is signed but {SIGNER_FILE} is missing") from None
        except UsageError as exc:
            raise EnvelopeError(str(exc)) from None
    else:
        public = required
    payload_type, payload = dsse.verify(envelope, public)
    if payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        raise EnvelopeError(f"the envelope carries {payload_type!r}, not an in-toto statement")
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EnvelopeError("the signed payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise EnvelopeError("the signed payload is not an in-toto Statement v1")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise EnvelopeError("the signed statement is not a noseprint fingerprint attestation")
    if statement != statement_for(manifest, manifest_bytes):
        raise EnvelopeError("the signed statement describes another bundle (manifest, commitment or image differ)")
    return key_id(public), statement
