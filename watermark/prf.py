"""The watermark key and the pseudo-random function every scheme draws from, specified so any machine recomputes it.

A key is 32 secret random bytes with a 16-byte salt (`noseprint watermark keygen`). For a window of the k token
ids before a position, the vocabulary's pseudo-random values are:

    digest  = HMAC-SHA256(key, DOMAIN || scheme || 0x00 || id_1 || ... || id_k)     ids as 4-byte big-endian
    stream  = SHAKE-256(digest), the first 8·|V| bytes
    u_v     = bytes [8v, 8v+8) of stream as a big-endian unsigned 64-bit integer, v = 0 … |V|−1

Kirchenbauer's green list is the ⌊γ|V|⌋ tokens with the smallest u_v (ties, which have probability 2^-64, go
to the smaller id); Aaronson's r_v is the top 53 bits of u_v times 2^-53, a float in [0, 1). Only standard hash
functions are used, never a library's random-number stream, so the values cannot change with a numpy release.

The key's *commitment* is SHA-256(COMMIT_DOMAIN || salt || key): a report carries it, so the key stays secret
while the report is bound to it; revealing the key (and its salt) later lets anyone check the commitment and
recompute every score.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.core.fileio import write_json_atomic

DOMAIN = b"noseprint/watermark/v1/"
COMMIT_DOMAIN = b"noseprint/watermark-key/v1"
KEY_BYTES = 32
SALT_BYTES = 16
KEY_FORMAT = "noseprint-watermark-key/v1"
PRIVATE_MODE = 0o600
ID_BYTES = 4
"""Token ids enter the HMAC as 4-byte big-endian integers: vocabularies stay far below 2^32."""
U64_BYTES = 8
MANTISSA_BITS = 53
"""A float64 holds 53 bits exactly, so r_v = (u_v >> 11) / 2^53 is exact and never reaches 1."""


@dataclass(frozen=True)
class WatermarkKey:
    secret: bytes
    salt: bytes

    @property
    def commitment(self) -> str:
        """The public, salted hash of the key: its id in texts and reports."""
        return hashlib.sha256(COMMIT_DOMAIN + self.salt + self.secret).hexdigest()

    def to_json(self) -> dict:
        return {"format": KEY_FORMAT, "key": self.secret.hex(), "salt": self.salt.hex(), "commitment": self.commitment}


def new_key() -> WatermarkKey:
    return WatermarkKey(secrets.token_bytes(KEY_BYTES), secrets.token_bytes(SALT_BYTES))


def key_from_json(value: object, where: str) -> WatermarkKey:
    """A key from its JSON form; refuses anything malformed, and a commitment that does not match."""
    if not isinstance(value, dict) or value.get("format") != KEY_FORMAT:
        raise UsageError(f"{where} is not a noseprint watermark key (format {KEY_FORMAT})")
    try:
        key = WatermarkKey(bytes.fromhex(value["key"]), bytes.fromhex(value["salt"]))
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{where}: the key and salt must be hex strings") from None
    if len(key.secret) != KEY_BYTES or len(key.salt) != SALT_BYTES:
        raise UsageError(f"{where}: the key must be {KEY_BYTES} bytes and the salt {SALT_BYTES}")
    if "commitment" in value and value["commitment"] != key.commitment:
        raise UsageError(f"{where}: the stated commitment is not the key's")
    return key


def write_key(path: Path, force: bool = False) -> WatermarkKey:
    """A new key, written with owner-only permissions; an existing key is never replaced without `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to replace it; the old key is then lost)")
    key = new_key()
    write_json_atomic(path, key.to_json(), mode=PRIVATE_MODE)
    return key


def load_key(path: Path) -> WatermarkKey:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"watermark key not found: {path}")
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise UsageError(f"watermark key {path} is readable by others; run: chmod 600 {path}")
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not readable JSON ({exc})") from None
    return key_from_json(value, str(path))


def window_digest(key: WatermarkKey, scheme: str, window: tuple[int, ...]) -> bytes:
    message = DOMAIN + scheme.encode() + b"\x00" + b"".join(int(t).to_bytes(ID_BYTES, "big") for t in window)
    return hmac.new(key.secret, message, hashlib.sha256).digest()


def uniform_u64(key: WatermarkKey, scheme: str, window: tuple[int, ...], vocab: int) -> np.ndarray:
    """u_v for every token of the vocabulary (module docstring)."""
    stream = hashlib.shake_256(window_digest(key, scheme, window)).digest(U64_BYTES * vocab)
    return np.frombuffer(stream, dtype=">u8").astype(np.uint64)


def green_count(gamma: float, vocab: int) -> int:
    """⌊γ|V|⌋: the green list's exact size, so the null fraction is γ_eff = ⌊γ|V|⌋/|V|."""
    return int(np.floor(gamma * vocab))


def _green_threshold(u: np.ndarray, green: int) -> tuple[np.uint64, int]:
    """(t, m): the green list is every u_v < t and the first m ids (in id order) with u_v == t. The same list as
    the ⌊γ|V|⌋ smallest u_v with ties to the smaller id, found by a partition instead of a sort."""
    t = np.partition(u, green - 1)[green - 1]
    return t, green - int(np.count_nonzero(u < t))


def green_mask(key: WatermarkKey, window: tuple[int, ...], vocab: int, gamma: float) -> np.ndarray:
    """Kirchenbauer's green list for this window, as a boolean mask over the vocabulary."""
    u = uniform_u64(key, "kirchenbauer", window, vocab)
    t, ties = _green_threshold(u, green_count(gamma, vocab))
    mask = u < t
    mask[np.flatnonzero(u == t)[:ties]] = True
    return mask


def green_of(key: WatermarkKey, window: tuple[int, ...], tokens: np.ndarray, vocab: int, gamma: float) -> np.ndarray:
    """Whether each of `tokens` is in this window's green list (one PRF stream for all of them)."""
    u = uniform_u64(key, "kirchenbauer", window, vocab)
    tokens = np.asarray(tokens, dtype=np.int64)
    t, ties = _green_threshold(u, green_count(gamma, vocab))
    green = u[tokens] < t
    tied = np.flatnonzero(u[tokens] == t)
    if len(tied):  # probability ~2^-64 a token: settle by the exact id order
        first = set(np.flatnonzero(u == t)[:ties].tolist())
        green[tied] = [int(tokens[i]) in first for i in tied]
    return green


def is_green(key: WatermarkKey, window: tuple[int, ...], token: int, vocab: int, gamma: float) -> bool:
    """Whether `token` is in the green list (the same definition as `green_mask`)."""
    return bool(green_of(key, window, np.array([token]), vocab, gamma)[0])


def uniform_r(key: WatermarkKey, window: tuple[int, ...], vocab: int) -> np.ndarray:
    """Aaronson's r ∈ [0, 1)^|V| for this window."""
    u = uniform_u64(key, "aaronson", window, vocab)
    return (u >> np.uint64(U64_BYTES * 8 - MANTISSA_BITS)).astype(np.float64) * 2.0**-MANTISSA_BITS
