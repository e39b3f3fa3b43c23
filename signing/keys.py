"""Ed25519 key files: `noseprint keygen` writes them, `prove --sign` and the registry read them.

The private key is PKCS#8 PEM, written with owner-only permissions (0600); the
public key is SubjectPublicKeyInfo PEM beside it (`KEY.pub`). A key id is the
SHA-256 of the 32 raw public-key bytes, in hex: short to print, and the same
whichever file format carried the key.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from noseprint.core.errors import UsageError
from noseprint.core.fileio import write_bytes_atomic

PRIVATE_MODE = 0o600


def public_path(private: Path) -> Path:
    return Path(f"{private}.pub")


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate(out: Path, force: bool = False) -> tuple[Path, Path, str]:
    """Write a new key pair; refuses to replace an existing key unless `force` (a lost key cannot be re-made)."""
    out = Path(out)
    pub = public_path(out)
    for path in (out, pub):
        if path.exists() and not force:
            raise UsageError(f"{path} already exists (use --force to replace it; the old key is then lost)")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_bytes_atomic(out, pem, mode=PRIVATE_MODE)
    write_bytes_atomic(pub, public_pem(private.public_key()))
    return out, pub, key_id(private.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"signing key not found: {path}")
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise UsageError(f"signing key {path} is readable by others; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key")
    return key


def parse_public(data: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{where} is not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{where} is not an Ed25519 public key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"public key not found: {path}")
    return parse_public(path.read_bytes(), str(path))
