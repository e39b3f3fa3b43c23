"""The challenge format: the prompts an auditor asks a served model, and where their randomness came from.

A challenge is only worth something if the owner could not know it when committing to the weights: otherwise
the committed weights could be tuned to agree with the served model on exactly these prompts and nowhere else.
So the prompts are not chosen, they are *derived*, deterministically, from a seed fixed after the bundle exists
(the root of the first signed registry checkpoint whose tree includes the bundle's entry, the one of size
log_index + 1, or a value the auditor supplies), and anyone can recompute them (`derive_prompts`,
`challenge_errors`). Only the first checkpoint: every later add signs a new root that includes the entry, and an
owner free to choose among them (adding entries of their own until one suits) would choose the prompts.

    {"format": "noseprint-challenge", "version": 1,
     "bundle_digest": SHA-256 hex of the bundle's manifest.json bytes,
     "seed": hex, "seed_source": "registry-checkpoint" | "auditor",
     "checkpoint": null | {the signed checkpoint (registry/tree_head.py's dict: origin, size, root, keyid,
                           signature), "entry_id", "log_index", "leaf" (the logged leaf's canonical JSON),
                           "inclusion_proof": [hex, ...]},
     "vocab": V, "length": T, "prompts": [[T token ids in [0, V)], ...]}

Like `core.bundle`, this module is the one owner of the format: `Challenge.to_json` is its only writer and
`Challenge.from_json` its only reader, which refuses anything malformed with one exception type,
`ChallengeError`. Whether the checkpoint is really signed by the registry and includes the entry is checked
where the registry's key and hashing live (`registry/challenge_seed.py`); this module checks the form and the
derivation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from noseprint.core.errors import NoseprintError
from noseprint.core.fileio import canonical_json, parse_json_strict, sha256_bytes, write_bytes_atomic

FORMAT = "noseprint-challenge"
VERSION = 1
DOMAIN = b"noseprint-challenge/v1"
"""Separates this derivation from every other use of the same seed (a registry root is public and reused)."""

DEFAULT_PROMPTS = 2
DEFAULT_LENGTH = 8
"""Two prompts of eight tokens: 16 positions, each a forward-pass position the owner must prove in a circuit.
Proving cost grows with prompts x length, so the default is sized for CI and the demo model; an auditor who
wants a tighter bound on a cheating served model asks for more (the agreement is measured over all positions)."""
MAX_PROMPTS = 256
MAX_LENGTH = 4096
MAX_VOCAB = 1 << 32
"""Bounds on a stranger's challenge: a file may not ask anyone to run millions of forward passes."""
MIN_SEED_BYTES = 16
MAX_SEED_BYTES = 1024
"""An auditor's seed carries at least 128 bits, so the owner cannot have guessed it; a registry root has 256."""
DRAW_BYTES = 4

SeedSource = Literal["registry-checkpoint", "auditor"]
SEED_SOURCES: tuple[str, ...] = ("registry-checkpoint", "auditor")
CHECKPOINT_FIELDS = ("origin", "size", "root", "keyid", "signature", "entry_id", "log_index", "leaf", "inclusion_proof")
HEX = frozenset("0123456789abcdef")


class ChallengeError(NoseprintError):
    """The file is not a well-formed challenge (exit 1: the file is at fault, as with a malformed bundle)."""

    exit_code = 1


def bundle_digest(manifest_bytes: bytes) -> str:
    """What a challenge names its bundle by: SHA-256 of manifest.json's bytes (the registry logs the same hash)."""
    return sha256_bytes(manifest_bytes)


def is_hex(text: object, nbytes: int | None = None) -> bool:
    """Lower-case hex of whole bytes (of exactly `nbytes` when given): the one spelling hashed and compared."""
    if not isinstance(text, str) or len(text) % 2 or not text or not set(text) <= HEX:
        return False
    return nbytes is None or len(text) == 2 * nbytes


def _stream(material: bytes, draws: int) -> bytes:
    """`draws` 4-byte draws of SHAKE-256 output; a longer read of an XOF starts with the shorter one."""
    return hashlib.shake_256(material).digest(DRAW_BYTES * draws)


def derive_prompts(bundle_digest: str, seed: bytes, vocab: int, count: int, length: int) -> list[list[int]]:
    """The challenge's prompts, recomputable by anyone from (bundle digest, seed, vocab, count, length).

    The input to SHAKE-256 is DOMAIN || 0x00 || the 32 digest bytes || the seed (the domain has no zero byte and
    the digest a fixed size, so the seed is whatever follows: no two inputs spell the same bytes). Its output is
    read as 4-byte big-endian integers d; a draw is kept when d < floor(2^32 / vocab) * vocab and gives the
    token d mod vocab, so every id in [0, vocab) is exactly equally likely (a plain `d mod vocab` would favour
    the low ids). Kept tokens fill the prompts in order, prompt by prompt. No BOS or other token is added: the
    prompts are the exact ids every back end (and the inference proof) runs.
    """
    _check_parameters(bundle_digest, seed, vocab, count, length)
    material = DOMAIN + b"\x00" + bytes.fromhex(bundle_digest) + seed
    limit = (MAX_VOCAB // vocab) * vocab
    needed = count * length
    tokens: list[int] = []
    draws = needed + needed // 4 + 8  # rejection keeps over half of the draws whatever the vocabulary
    while len(tokens) < needed:
        stream = _stream(material, draws)
        tokens = []
        for offset in range(0, len(stream), DRAW_BYTES):
            value = int.from_bytes(stream[offset : offset + DRAW_BYTES], "big")
            if value < limit:
                tokens.append(value % vocab)
                if len(tokens) == needed:
                    break
        draws *= 2
    return [tokens[i * length : (i + 1) * length] for i in range(count)]


def _check_parameters(digest: str, seed: bytes, vocab: int, count: int, length: int) -> None:
    if not is_hex(digest, 32):
        raise ChallengeError("the bundle digest is not 64 lower-case hex digits")
    if not MIN_SEED_BYTES <= len(seed) <= MAX_SEED_BYTES:
        raise ChallengeError(f"the seed has {len(seed)} bytes; it must have {MIN_SEED_BYTES} to {MAX_SEED_BYTES}")
    if not 2 <= vocab <= MAX_VOCAB:
        raise ChallengeError(f"vocabulary size {vocab} is outside 2..2^32")
    if not 1 <= count <= MAX_PROMPTS:
        raise ChallengeError(f"{count} prompts: a challenge has 1 to {MAX_PROMPTS}")
    if not 1 <= length <= MAX_LENGTH:
        raise ChallengeError(f"prompt length {length}: it must be 1 to {MAX_LENGTH}")


@dataclass(frozen=True)
class Challenge:
    """A validated challenge. Constructing one checks its form; `challenge_errors` checks its derivation."""

    bundle_digest: str
    seed: str
    seed_source: SeedSource
    checkpoint: dict[str, Any] | None
    vocab: int
    length: int
    prompts: list[list[int]]

    def __post_init__(self) -> None:
        problems = form_errors(self)
        if problems:
            raise ChallengeError(f"not a well-formed challenge: {problems[0]}")

    @classmethod
    def derive(
        cls,
        digest: str,
        seed: bytes,
        seed_source: SeedSource,
        vocab: int,
        count: int = DEFAULT_PROMPTS,
        length: int = DEFAULT_LENGTH,
        checkpoint: dict[str, Any] | None = None,
    ) -> Challenge:
        """The challenge for a bundle and a seed: the only way the CLI makes one."""
        prompts = derive_prompts(digest, seed, vocab, count, length)
        return cls(digest, seed.hex(), seed_source, checkpoint, vocab, length, prompts)

    @property
    def seed_bytes(self) -> bytes:
        return bytes.fromhex(self.seed)

    @property
    def positions(self) -> int:
        """Positions answered and proven: one next-token prediction after each prompt token."""
        return len(self.prompts) * self.length

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "bundle_digest": self.bundle_digest,
            "seed": self.seed,
            "seed_source": self.seed_source,
            "checkpoint": self.checkpoint,
            "vocab": self.vocab,
            "length": self.length,
            "prompts": self.prompts,
        }

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: what answers and inference proofs name the challenge by."""
        return sha256_bytes(canonical_json(self.to_dict()))

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_dict(cls, data: object) -> Challenge:
        if not isinstance(data, dict):
            raise ChallengeError("a challenge is a JSON object")
        if data.get("format") != FORMAT:
            raise ChallengeError(f"not a challenge (format is {data.get('format')!r}, not {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ChallengeError(f"challenge version {data.get('version')!r} is not {VERSION}")
        expected = {"format", "version", "bundle_digest", "seed", "seed_source", "checkpoint", "vocab"}
        expected |= {"length", "prompts"}
        if set(data) != expected:
            extra, missing = sorted(set(data) - expected), sorted(expected - set(data))
            raise ChallengeError(f"challenge fields differ from version {VERSION}: extra {extra}, missing {missing}")
        return cls(
            data["bundle_digest"],
            data["seed"],
            data["seed_source"],
            data["checkpoint"],
            data["vocab"],
            data["length"],
            data["prompts"],
        )

    @classmethod
    def from_json(cls, text: bytes | str) -> Challenge:
        """Strict JSON (integers only, bounded size and depth), then `from_dict`."""
        try:
            data = parse_json_strict(text.encode() if isinstance(text, str) else text)
        except ValueError as exc:
            raise ChallengeError(f"the challenge is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: Path) -> Challenge:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ChallengeError(f"cannot read the challenge {path}: {exc.strerror or exc}") from None
        return cls.from_json(data)

    def write(self, path: Path) -> Path:
        write_bytes_atomic(Path(path), self.to_json())
        return Path(path)


def _int_in(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _prompt_errors(c: Challenge) -> list[str]:
    prompts = c.prompts
    if not isinstance(prompts, list) or not 1 <= len(prompts) <= MAX_PROMPTS:
        return [f"prompts is not a list of 1 to {MAX_PROMPTS} prompts"]
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, list) or len(prompt) != c.length:
            return [f"prompt {i} is not a list of {c.length} token ids"]
        if not all(_int_in(t, 0, c.vocab - 1) for t in prompt):
            return [f"prompt {i} has a token id outside [0, {c.vocab})"]
    return []


def _checkpoint_form_errors(c: Challenge) -> list[str]:
    if c.seed_source == "auditor":
        return [] if c.checkpoint is None else ["an auditor's seed comes with no checkpoint"]
    record = c.checkpoint
    if not isinstance(record, dict) or set(record) != set(CHECKPOINT_FIELDS):
        return [f"a registry seed needs its checkpoint record with exactly {', '.join(CHECKPOINT_FIELDS)}"]
    if not is_hex(record["root"], 32):
        return ["the checkpoint root is not 32 bytes of lower-case hex"]
    if record["root"] != c.seed:
        return ["the seed is not the checkpoint's root"]
    if not (_int_in(record["size"], 1, 1 << 62) and _int_in(record["log_index"], 0, record["size"] - 1)):
        return ["the checkpoint's size or the entry's log index is not a possible position"]
    if record["size"] != record["log_index"] + 1:
        return [
            f"the checkpoint has size {record['size']}, not {record['log_index'] + 1}: only the first checkpoint that "
            "includes the entry seeds a challenge (every later one is a new root the owner could pick from)"
        ]
    if not (type(record["entry_id"]) is int and isinstance(record["leaf"], str)):
        return ["the checkpoint record's entry id or leaf is malformed"]
    proof = record["inclusion_proof"]
    if not isinstance(proof, list) or len(proof) > 64 or not all(is_hex(h, 32) for h in proof):
        return ["the inclusion proof is not a list of 32-byte hex hashes"]
    return []


def form_errors(c: Challenge) -> list[str]:
    """What makes a challenge malformed, whatever bundle it is checked against; empty when well-formed."""
    if not is_hex(c.bundle_digest, 32):
        return ["bundle_digest is not 64 lower-case hex digits"]
    if not is_hex(c.seed) or not MIN_SEED_BYTES <= len(c.seed) // 2 <= MAX_SEED_BYTES:
        return [f"seed is not {MIN_SEED_BYTES} to {MAX_SEED_BYTES} bytes of lower-case hex"]
    if c.seed_source not in SEED_SOURCES:
        return [f"seed_source {c.seed_source!r} is not one of {', '.join(SEED_SOURCES)}"]
    if not _int_in(c.vocab, 2, MAX_VOCAB):
        return ["vocab is not an integer in 2..2^32"]
    if not _int_in(c.length, 1, MAX_LENGTH):
        return [f"length is not an integer in 1..{MAX_LENGTH}"]
    return _prompt_errors(c) or _checkpoint_form_errors(c)


def challenge_errors(challenge: Challenge, bundle_digest: str, vocab: int) -> list[str]:
    """Why `challenge` is not a fair challenge of this bundle: empty when it is.

    Recomputes the prompts from the seed, so a challenge whose prompts were picked (by an owner who wants easy
    ones, or an auditor who wants to single out a weakness) is refused, as is one made for another bundle or
    vocabulary. The registry checkpoint behind a registry seed is checked by `registry/challenge_seed.py`.
    """
    errors = []
    if challenge.bundle_digest != bundle_digest:
        errors.append(
            f"the challenge is for bundle {challenge.bundle_digest[:16]}…, not this one ({bundle_digest[:16]}…)"
        )
    if challenge.vocab != vocab:
        errors.append(f"the challenge draws from a vocabulary of {challenge.vocab}, the bundle's has {vocab}")
    derived = derive_prompts(
        challenge.bundle_digest, challenge.seed_bytes, challenge.vocab, len(challenge.prompts), challenge.length
    )
    wrong = [i for i, (mine, theirs) in enumerate(zip(derived, challenge.prompts, strict=True)) if mine != theirs]
    if wrong:
        errors.append(f"prompt(s) {', '.join(map(str, wrong))} are not the ones derived from the seed")
    return errors
