"""The bundle format, version 5 (`VERSION`): one owner, with the reader and the writer side by side.

    BUNDLE/
      manifest.json          what was proven, about which model, with which networks, circuits and SRS
      fingerprint.png        the picture (re-rendered and compared by verify)
      z.json                 the proven encoder output (raw integers) and z
      tokens.json            the selected token ids and strings
      proofs/chunks/NAME.json  one EZKL proof per chunk (`core.chunks`): committed weight blocks in, the
                             committed partial term out
      proofs/encode.json     the EZKL proof that takes every partial term in (same commitments) to the
                             public z_raw, term peaks and owner limbs
      circuit/chunkI/, circuit/encode/   settings.json and vk.key of each circuit (hints: verify derives its own)
      image/thumbnail.png    with --prove-image: the proven 16x16 thumbnail of z
      image/proof.json       with --prove-image: its EZKL proof
      attestation.dsse.json  optional: the owner's signature (signing/attestation.py)

Every file but the manifest (and the signature, which signs the manifest) is listed in `files` with its
SHA-256. Like sigstore-python's `Bundle.from_json`, a `Manifest` validates when it is made (the JSON
schema `manifest.schema.json`, then the typed sections) and raises one exception type, `BundleError`;
`Manifest.to_json` is the only writer of the format, `Bundle.open` its only reader of folders.
Whether the manifest's claims are *true* is the verifier's business (`verifier/checks.py`); this module
only says whether it is a well-formed manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from noseprint.core.chunks import Chunking, chunking_errors
from noseprint.core.errors import NoseprintError
from noseprint.core.fileio import parse_json_strict, read_inside, sha256_file
from noseprint.core.layout import MIN_BLINDING_VALUES, CircuitLayout
from noseprint.core.tokens import TokenList
from noseprint.core.whole_model import InferenceShape

FORMAT = "noseprint-bundle"
VERSION = 5
"""5: an optional whole-model commitment (`inference`, issue 20) that challenge-inference proofs open
against; a version 4 bundle still reads, without it. 4: the proof is chunked (issue 19): a proof per block
of each term's weights, linked by commitments to an encode proof. 3: the fingerprint is the canonical form
(issue 18): the norm weights are committed and folded in, E is centred for LayerNorm models, the gated FFN
term is rotation-invariant. 2: the proof binds the owner's key and proves its term shifts minimal (issue 17).
Older bundles are refused with the reason."""
REFUSED_VERSIONS = {
    1: "this is a version 1 bundle: its proof binds no owner and lets its term shifts be chosen, so "
    "anyone could re-sign it and its owner could grind z; prove the model again with this noseprint",
    3: "this is a version 3 bundle: its single proof is replaced by chunk proofs linked to an encode proof, "
    "which is what scales to real models; prove the model again with this noseprint",
    2: "this is a version 2 bundle: its fingerprint ignores the norm weights and changes when they are folded "
    "into the layers or the residual stream is rotated, so a copy could be disguised for free; prove the model "
    "again with this noseprint",
}
MANIFEST = "manifest.json"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")

PICTURE_FILE = "fingerprint.png"
Z_FILE = "z.json"
TOKENS_FILE = "tokens.json"
ENCODE_PROOF_FILE = "proofs/encode.json"
CHUNK_PROOFS_FOLDER = "proofs/chunks"
ENCODE_CIRCUIT_FOLDER = "circuit/encode"
SETTINGS_NAME = "settings.json"
VK_NAME = "vk.key"
THUMBNAIL_FILE = "image/thumbnail.png"
IMAGE_PROOF_FILE = "image/proof.json"

NOT_STATED = "not stated"
"""What a redacted bundle's unstated claims read as."""
TERMS_PER_LAYER = 3
"""Each fingerprinted layer contributes the attention, value-output and FFN terms, each with its own shift."""


def chunk_proof_file(name: str) -> str:
    return f"{CHUNK_PROOFS_FOLDER}/{name}.json"


def chunk_circuit_folder(index: int) -> str:
    return f"circuit/chunk{index}"


class BundleError(NoseprintError):
    """The folder or manifest is not a well-formed bundle (exit 1: the bundle is at fault, not the user)."""

    exit_code = 1


@cache
def schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text()))


MAX_SCHEMA_MESSAGE = 240
"""A schema message quotes the offending value: a stranger's 100,000-item list is cut to its two ends."""


def _bounded(message: str) -> str:
    if len(message) <= MAX_SCHEMA_MESSAGE:
        return message
    return f"{message[: MAX_SCHEMA_MESSAGE // 2]} … {message[-MAX_SCHEMA_MESSAGE // 3 :]}"


def schema_errors(manifest: object) -> list[str]:
    """Human-readable schema violations, best first; empty when the manifest is valid."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: (len(e.path), str(e.path)))
    return [f"{'/'.join(str(p) for p in e.path) or '(top level)'}: {_bounded(e.message)}" for e in errors]


@dataclass(frozen=True)
class CommittedTensor:
    """One committed circuit input: its name in the layout, shape with the blinding line, KZG points."""

    name: str
    shape: tuple[int, int]
    points: tuple[str, ...]


def layout_errors(layout: CircuitLayout) -> list[str]:
    """What makes a schema-valid layout unusable: heads that do not group, widths that disagree, shifts."""
    errors = []
    for layer in layout.layers:
        if layer.heads % layer.kv_heads or layer.hidden != layout.hidden:
            errors.append("circuit layout is inconsistent (heads, kv_heads, hidden)")
            break
    if len(layout.term_shifts) != TERMS_PER_LAYER * len(layout.layers):
        errors.append("circuit layout has the wrong number of term shifts")
    short = layout.short_blinding_lines()
    if short:
        errors.append(f"circuit layout gives {short[0]} a blinding line under {MIN_BLINDING_VALUES} values")
    return errors


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: the raw JSON object (what is signed and hashed) and typed views of it."""

    data: dict[str, Any]
    layout: CircuitLayout
    chunking: Chunking

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        """Validate against the schema and the layout rules; raise `BundleError` naming the first fault."""
        if isinstance(data, dict) and data.get("format") == FORMAT:
            old = data.get("version")
            if isinstance(old, int) and old in REFUSED_VERSIONS:
                raise BundleError(REFUSED_VERSIONS[old])
        errors = schema_errors(data)
        if errors:
            raise BundleError(f"{MANIFEST} does not follow the bundle schema: {errors[0]}")
        assert isinstance(data, dict)  # the schema's top level is an object
        try:
            layout = CircuitLayout.from_dict(data["circuit"]["layout"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"circuit layout is unusable: {exc}") from None
        try:
            chunking = Chunking.from_dict(data["circuit"]["chunking"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"circuit chunking is unusable: {exc}") from None
        problems = layout_errors(layout) or chunking_errors(layout, chunking)
        if problems:
            raise BundleError(problems[0])
        if "inference" in data:
            try:
                InferenceShape.from_dict(data["inference"]["shape"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleError(f"the whole-model commitment's shape is unusable: {exc}") from None
        return cls(data, layout, chunking)

    @classmethod
    def from_json(cls, text: bytes | str) -> Manifest:
        """Strict JSON (integers only, bounded size and depth), then `from_dict`."""
        try:
            data = parse_json_strict(text.encode() if isinstance(text, str) else text)
        except ValueError as exc:
            raise BundleError(f"{MANIFEST} is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest of a bundle folder: a regular file, not a link, inside the folder."""
        path = Path(folder) / MANIFEST
        if not path.exists() and not path.is_symlink():
            raise BundleError(f"{MANIFEST} is missing from the bundle")
        try:
            text = read_inside(Path(folder), MANIFEST)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{MANIFEST} cannot be read ({exc})") from None
        return cls.from_json(text)

    def to_json(self) -> bytes:
        """The one serialisation the prover writes (sorted keys, two-space indent, final newline)."""
        return (json.dumps(self.data, indent=2, sort_keys=True) + "\n").encode()

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST
        path.write_bytes(self.to_json())
        return path

    # typed views of the sections --------------------------------------------------------------------------

    @property
    def model_type(self) -> str:
        """The owner's claim, or "not stated" for a redacted bundle."""
        return str(self.data["model"].get("model_type", NOT_STATED))

    @property
    def fingerprinted_layers(self) -> list[int] | None:
        layers = self.data["model"].get("fingerprinted_layers")
        return None if layers is None else [int(i) for i in layers]

    @property
    def weights_committed(self) -> int:
        return int(self.data["model"]["weights_committed"])

    @property
    def token_count(self) -> int:
        return int(self.data["tokens"]["count"])

    @property
    def tokens_file(self) -> str:
        return str(self.data["tokens"]["file"])

    @property
    def encoder_digest(self) -> str:
        return str(self.data["networks"]["encoder"]["digest"])

    @property
    def generator_digest(self) -> str:
        return str(self.data["networks"]["generator"]["digest"])

    @property
    def circuit(self) -> dict[str, Any]:
        """`layout`, `chunking`, `logrows`, `partial_scale`, `chunk_circuits`, `encode_circuit`."""
        return dict(self.data["circuit"])

    @property
    def chunk_circuits(self) -> list[dict[str, Any]]:
        """Per chunk shape: `shape`, `circuit_id`, `num_rows`, `run_args`, `settings_file`, `vk_file`, `vk_sha256`."""
        return [dict(c) for c in self.data["circuit"]["chunk_circuits"]]

    @property
    def encode_circuit(self) -> dict[str, Any]:
        return dict(self.data["circuit"]["encode_circuit"])

    @property
    def num_rows(self) -> int:
        """Rows of every distinct circuit together (what key generation pays once)."""
        return sum(int(c["num_rows"]) for c in [*self.chunk_circuits, self.encode_circuit])

    @property
    def chunk_proofs(self) -> list[dict[str, Any]]:
        """Per chunk, in chunk order: `name`, `file`, `blinding_points`, `output_points`."""
        return [dict(c) for c in self.data["proofs"]["chunks"]]

    @property
    def encode_proof(self) -> dict[str, Any]:
        """`file`, `owner_points`."""
        return dict(self.data["proofs"]["encode"])

    @property
    def logrows(self) -> int:
        return int(self.data["circuit"]["logrows"])

    @property
    def commitment_digest(self) -> str:
        return str(self.data["commitment"]["digest"])

    @property
    def commitment_scheme(self) -> str:
        return str(self.data["commitment"]["scheme"])

    @property
    def committed_tensors(self) -> list[CommittedTensor]:
        return [
            CommittedTensor(str(t["name"]), (int(t["shape"][0]), int(t["shape"][1])), tuple(t["points"]))
            for t in self.data["commitment"]["tensors"]
        ]

    @property
    def inference(self) -> dict[str, Any] | None:
        """The whole-model commitment (`core.whole_model`), or None for a bundle made without one."""
        section = self.data.get("inference")
        return dict(section) if section is not None else None

    @property
    def inference_vocab(self) -> int | None:
        """The vocabulary the whole-model commitment covers (what a challenge draws its tokens from)."""
        section = self.inference
        if section is None:
            return None
        vocab = section["shape"].get("vocab")
        return vocab if type(vocab) is int else None

    @property
    def z_file(self) -> str:
        return str(self.data["z"]["file"])

    @property
    def z_dim(self) -> int:
        return int(self.data["z"]["dim"])

    @property
    def z_frac_bits(self) -> int:
        return int(self.data["z"]["frac_bits"])

    @property
    def image_file(self) -> str:
        return str(self.data["image"]["file"])

    @property
    def srs_sha256(self) -> str:
        return str(self.data["srs"]["sha256"])

    @property
    def image_proof(self) -> dict[str, Any] | None:
        section = self.data.get("image_proof")
        return dict(section) if section is not None else None

    @property
    def owner_keyid(self) -> str | None:
        """The key id the manifest says the proof binds; `verify` checks it against the proof's outputs."""
        keyid = self.data["owner"]["keyid"]
        return None if keyid is None else str(keyid)

    @property
    def files(self) -> dict[str, str]:
        return dict(self.data["files"])

    def referenced_files(self) -> list[str]:
        """Every file the manifest points at (each must also be listed with its hash)."""
        circuits = [*self.chunk_circuits, self.encode_circuit]
        names = [self.tokens_file, self.z_file, self.image_file, self.encode_proof["file"]]
        names += [c["settings_file"] for c in circuits] + [c["vk_file"] for c in circuits]
        names += [c["file"] for c in self.chunk_proofs]
        if self.image_proof is not None:
            names += [self.image_proof["file"], self.image_proof["proof_file"]]
        return [str(n) for n in names]


@dataclass(frozen=True)
class Bundle:
    """A bundle folder and its validated manifest. Opening checks the form, not the proof."""

    root: Path
    manifest: Manifest

    @classmethod
    def open(cls, folder: Path) -> Bundle:
        folder = Path(folder)
        if not folder.is_dir():
            raise BundleError(f"bundle folder not found: {folder}")
        return cls(folder, Manifest.read(folder))

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def picture(self) -> Path:
        return self.path(self.manifest.image_file)

    def manifest_bytes(self) -> bytes:
        return (self.root / MANIFEST).read_bytes()

    def read(self, relative: str) -> bytes:
        """A member file's bytes (no links, nothing outside the folder, bounded size)."""
        try:
            return read_inside(self.root, relative)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{relative} cannot be read ({exc})") from None

    def tokens(self) -> TokenList:
        """The token list and how it was chosen (`core.tokens`); `verify` checks it against the rule."""
        try:
            return TokenList.from_json(self.read(self.manifest.tokens_file))
        except ValueError as exc:
            raise BundleError(f"{self.manifest.tokens_file} is unreadable ({exc})") from None

    def z(self) -> list[int]:
        """The z the owner claims (z.json); `verify` recomputes it from the proof before trusting it."""
        try:
            return parse_z(self.read(self.manifest.z_file))[1]
        except ValueError as exc:
            raise BundleError(f"{self.manifest.z_file} is unreadable ({exc})") from None


def hash_files(stage: Path) -> dict[str, str]:
    """The `files` section: every file under `stage` by relative path, with its SHA-256."""
    return {str(p.relative_to(stage)): sha256_file(p) for p in sorted(Path(stage).rglob("*")) if p.is_file()}


def _int_list(value: object, what: str) -> list[int]:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise ValueError(f"{what} is not a list of integers")
    return list(value)


def parse_z(data: bytes) -> tuple[list[int], list[int]]:
    """(z_raw, z) from z.json; ValueError with a reason for anything else."""
    record = parse_json_strict(data)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return _int_list(record.get("z_raw"), "z_raw"), _int_list(record.get("z"), "z")


FELT_HEX_DIGITS = 64


def parse_proof(data: bytes) -> dict[str, Any]:
    """An EZKL proof's JSON: one instance column of 32-byte hex field elements, the proof as a list of bytes."""
    proof = parse_json_strict(data, allow_floats=True)  # EZKL's pretty_public_inputs carries floats
    if not isinstance(proof, dict):
        raise ValueError("not a JSON object")
    instances = proof.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], list):
        raise ValueError("not one instance column")
    for felt in instances[0]:
        if not (isinstance(felt, str) and len(felt) == FELT_HEX_DIGITS and _is_hex(felt)):
            raise ValueError("an instance is not a 32-byte hex field element")
    body = proof.get("proof")
    if not isinstance(body, list) or not all(type(b) is int and 0 <= b < 256 for b in body):
        raise ValueError("the proof is not a list of bytes")
    return proof


def _is_hex(text: str) -> bool:
    return all(c in HEX_DIGITS for c in text)


HEX_DIGITS = frozenset("0123456789abcdef")
