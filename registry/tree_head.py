"""Signed checkpoints of the registry's log: the tree size and root, signed with the registry's own key.

The signed text follows the C2SP tlog-checkpoint body (origin line, size line,
base64 root line); the signature is Ed25519 over exactly those bytes. A client
that kept an older checkpoint asks for a consistency proof to the newer one:
a registry that rewrote or dropped an entry cannot produce it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from noseprint.core.errors import NoseprintError
from noseprint.signing.keys import key_id


class CheckpointError(NoseprintError):
    """A checkpoint is malformed or not signed by the registry key."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    keyid: str
    signature: bytes

    def body(self) -> bytes:
        return body(self.origin, self.size, self.root)

    def to_dict(self) -> dict:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "keyid": self.keyid,
            "signature": base64.b64encode(self.signature).decode(),
        }


def body(origin: str, size: int, root: bytes) -> bytes:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n".encode()


def sign(origin: str, size: int, root: bytes, key: Ed25519PrivateKey) -> Checkpoint:
    return Checkpoint(origin, size, root, key_id(key.public_key()), key.sign(body(origin, size, root)))


def from_dict(value: object) -> Checkpoint:
    try:
        assert isinstance(value, dict)
        origin, size = str(value["origin"]), int(value["size"])
        root = bytes.fromhex(value["root"])
        signature = base64.b64decode(value["signature"], validate=True)
        if len(root) != 32 or size < 0:
            raise ValueError("bad root or size")
        return Checkpoint(origin, size, root, str(value.get("keyid", "")), signature)
    except (AssertionError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise CheckpointError(f"the checkpoint is malformed ({exc})") from None


def verify(checkpoint: Checkpoint, public: Ed25519PublicKey) -> None:
    try:
        public.verify(checkpoint.signature, checkpoint.body())
    except InvalidSignature:
        raise CheckpointError(
            f"the checkpoint at size {checkpoint.size} is not signed by registry key {key_id(public)[:16]}…"
        ) from None
