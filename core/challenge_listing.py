"""The inference proofs folder (`prove-inference`'s output): one typed owner, reader and writer side by side.

    P_DIR/inference.json   {"format": "noseprint-inference-proofs", "version": 2,
                            "bundle_digest", "challenge_digest", "tokens": T,
                            "proofs": [{"name", "file", "kind": embed|layer|attention|ffn|head|link,
                                        "prompt", "index",
                                        "blinding_points": [...] | null, "output_points": [...] | null}],
                            "layer_parts": {"attention": A, "ffn": F} | null}
    P_DIR/challenge.json   the challenge proven (`core.challenge`)
    P_DIR/proofs/NAME.json EZKL proofs: link; per prompt i p{i}.embed, p{i}.layer{l}, p{i}.head{b}, and the
                           ablation chains p{i}.without{j}.layer{l}, p{i}.without{j}.head{b}; a layer proven
                           part by part (`core.whole_model.layer_parts`) has p{i}.layer{l}.attention{a} and
                           p{i}.layer{l}.ffn{f} in place of p{i}.layer{l}

`layer_parts`: how many of the chunking's attention and FFN blocks one layer proof takes (the owner's choice,
`prove-inference --part-weights`); null, or absent in listings made before parts existed: every layer is one
proof. The verifier rebuilds the part circuits from it; any tiling proves the same layer.

Only two kinds of commitment are the prover's word here: the blinding row appended to each hidden state and the
hidden state each embed or layer proof outputs. The verifier checks both against the proof itself
(`swap_proof_commitments`), and checks every other input commitment against the bundle's whole-model
commitment, or recomputes it (the one-hot rows of the challenge tokens).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from noseprint.core.errors import NoseprintError
from noseprint.core.fileio import parse_json_strict
from noseprint.core.whole_model import PartSizes

FORMAT = "noseprint-inference-proofs"
VERSION = 2
"""2: every prompt is also proven without each fingerprinted layer (`core.whole_model.ablations`)."""
LISTING = "inference.json"
CHALLENGE = "challenge.json"
PROOFS = "proofs"
KINDS = ("link", "embed", "layer", "attention", "ffn", "head")
MAX_PROOFS = 100_000


class InferenceProofsError(NoseprintError):
    """The proofs folder is malformed (exit 1)."""


@dataclass(frozen=True)
class ProofEntry:
    name: str
    file: str
    kind: str
    prompt: int
    """The challenge prompt (-1 for the link proof, which belongs to no prompt)."""
    index: int
    """The layer of a layer proof, the head block of a head proof, else 0."""
    blinding_points: list[str] | None
    output_points: list[str] | None


@dataclass(frozen=True)
class InferenceProofs:
    bundle_digest: str
    challenge_digest: str
    tokens: int
    proofs: list[ProofEntry]
    layer_parts: PartSizes | None = None
    """Blocks per layer proof (None: each layer is one proof)."""

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "bundle_digest": self.bundle_digest,
            "challenge_digest": self.challenge_digest,
            "tokens": self.tokens,
            "proofs": [asdict(p) for p in self.proofs],
            "layer_parts": None if self.layer_parts is None else self.layer_parts.to_dict(),
        }
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()

    @staticmethod
    def read(folder: Path) -> InferenceProofs:
        path = Path(folder) / LISTING
        if not path.is_file() or path.is_symlink():
            raise InferenceProofsError(f"{folder} has no {LISTING}: not an inference proofs folder")
        try:
            data = parse_json_strict(path.read_bytes())
            return _parse(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise InferenceProofsError(f"{LISTING} is malformed ({exc})") from None


def _points(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, str) and len(p) == 64 for p in value):
        raise ValueError("points are lists of 64-digit hex strings")
    return list(value)


def _entry(value: dict) -> ProofEntry:
    names = {"name", "file", "kind", "prompt", "index", "blinding_points", "output_points"}
    if not isinstance(value, dict) or set(value) != names:
        raise ValueError(f"a proof entry has exactly {sorted(names)}")
    if value["kind"] not in KINDS or type(value["prompt"]) is not int or type(value["index"]) is not int:
        raise ValueError("a proof entry's kind, prompt or index is wrong")
    file, name = value["file"], value["name"]
    if not isinstance(name, str) or file != f"{PROOFS}/{name}.json" or ".." in name or "/" in name:
        raise ValueError(f"proof {name!r} is not in {PROOFS}/NAME.json")
    return ProofEntry(
        str(value["name"]), file, value["kind"], value["prompt"], value["index"],
        _points(value["blinding_points"]), _points(value["output_points"]),
    )  # fmt: skip


def _parse(data: object) -> InferenceProofs:
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} version {VERSION} listing")
    proofs = data["proofs"]
    if not isinstance(proofs, list) or not 0 < len(proofs) <= MAX_PROOFS:
        raise ValueError("proofs must be a non-empty list")
    tokens = data["tokens"]
    if type(tokens) is not int or tokens < 1:
        raise ValueError("tokens must be a positive integer")
    parts = data.get("layer_parts")
    return InferenceProofs(
        str(data["bundle_digest"]), str(data["challenge_digest"]), tokens, [_entry(p) for p in proofs],
        None if parts is None else PartSizes.from_dict(parts),
    )  # fmt: skip
