"""Dead Simple Signing Envelope (DSSE v1), as specified at github.com/secure-systems-lab/dsse.

The signature covers PAE(payloadType, payload), never the JSON around it, so a
re-serialised envelope still verifies and a payload cannot be re-typed:

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

LEN is the byte length in ASCII decimal. Envelope fields are base64 (standard
alphabet, padded), which is what in-toto and sigstore tooling read.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from noseprint.core.errors import NoseprintError
from noseprint.signing.keys import key_id

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class EnvelopeError(NoseprintError):
    """A signed envelope is malformed, its signature does not verify, or it signs something other than it should
    (`signing.attestation`); the message says which."""


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign(payload: bytes, payload_type: str, private: Ed25519PrivateKey) -> dict:
    signature = private.sign(pae(payload_type, payload))
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": payload_type,
        "signatures": [{"keyid": key_id(private.public_key()), "sig": base64.b64encode(signature).decode()}],
    }


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{what} is not valid base64") from None


def parse(envelope: object) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """(payloadType, payload, [(keyid, signature)]) of a well-formed envelope."""
    if not isinstance(envelope, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise EnvelopeError("the envelope has no payloadType")
    payload = _b64(envelope.get("payload"), "payload")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise EnvelopeError("the envelope has no signatures")
    parsed = []
    for entry in signatures:
        if not isinstance(entry, dict):
            raise EnvelopeError("a signature entry is not an object")
        keyid = entry.get("keyid", "")
        parsed.append((keyid if isinstance(keyid, str) else "", _b64(entry.get("sig"), "signature")))
    return payload_type, payload, parsed


def verify(envelope: object, public: Ed25519PublicKey) -> tuple[str, bytes]:
    """Return (payloadType, payload) when one of the signatures is `public`'s over the PAE; else raise."""
    payload_type, payload, signatures = parse(envelope)
    message = pae(payload_type, payload)
    for _, signature in signatures:
        try:
            public.verify(signature, message)
            return payload_type, payload
        except InvalidSignature:
            continue
    raise EnvelopeError(f"no signature in the envelope verifies with key {key_id(public)[:16]}…")


def loads(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"the envelope is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    return value
