"""`noseprint check-opening`: does this bundle's commitment open to this model?

For open-weight models the owner can publish the opening (the blinding lines). The
check recomputes the committed tensors from the model's own weights exactly as the
prover does (same tokens, unit-RMS quantisation, the opening's blinding lines) and
asks EZKL for their KZG commitments under the verifier's derived key and SRS. Equal
commitments mean the proven fingerprint is this model's; the bundle itself should be
verified with `noseprint verify` first.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import noseprint.circuits.srs as srs_store
import noseprint.encoder.release as release
from noseprint.circuits.chunked import build_chunked
from noseprint.circuits.commitment import chunk_inputs, commit_pieces, quantised_tensors
from noseprint.circuits.keys import ensure_keys
from noseprint.circuits.proving import ProofTask, witness_of
from noseprint.circuits.settings import INPUT_SCALE
from noseprint.core.bundle import Bundle, BundleError
from noseprint.core.chunks import committed_pieces
from noseprint.core.errors import UsageError
from noseprint.core.opening import Opening
from noseprint.core.tokens import NotTheRule, TokenList
from noseprint.models.weights import ModelWeights, read_model


@dataclass
class OpeningResult:
    matches: bool
    mismatched: list[str]


def _model_at_rule_tokens(model_dir: Path, token_ids: list[int]) -> ModelWeights | None:
    """The model's weights at the bundle's tokens, or None if those are not what the token rule selects from
    the model's own tokenizer (in its order): the opening is checked against the model, not the owner's file.
    A model without a tokenizer is read at the bundle's tokens (then the tokens stay the owner's word)."""
    with tempfile.TemporaryDirectory(prefix="noseprint-open-") as tmp:
        tokens_file = Path(tmp) / "tokens.json"
        tokens_file.write_text(json.dumps(token_ids))
        try:
            return read_model(model_dir, len(token_ids), tokens_file, allow_pickle=False)
        except NotTheRule:
            return None


def check_opening(bundle: Path, model_dir: Path, opening_path: Path, srs_file: Path | None = None) -> OpeningResult:
    """MATCH only if the bundle's token ids are the opening's and every commitment is recomputed exactly."""
    opened = Bundle.open(Path(bundle))
    manifest = opened.manifest
    opening = Opening.read(opening_path)
    blinding, token_ids = opening.blinding, opening.token_ids
    if opening.chunking != manifest.chunking.to_dict():
        return OpeningResult(False, ["chunking"])  # the opening's blinding lines are for another split
    if opening.input_scale != INPUT_SCALE:
        raise UsageError("the opening was made with another input scale")
    try:
        bundle_ids = TokenList.from_json(opened.read(manifest.tokens_file)).ids
    except ValueError as exc:
        raise BundleError(f"{manifest.tokens_file} is unreadable ({exc})") from None
    if bundle_ids != token_ids:
        return OpeningResult(False, [manifest.tokens_file])  # the bundle names other tokens than were committed
    model = _model_at_rule_tokens(model_dir, token_ids)
    if model is None:
        return OpeningResult(False, [manifest.tokens_file])  # not the rule's tokens for this model's tokenizer
    layout = manifest.layout
    published = {t.name: list(t.points) for t in manifest.committed_tensors}
    circuits = build_chunked(layout, manifest.chunking, release.ENCODER, release.RELEASED_ENCODER_DIGEST)
    committed, _ = commit_pieces(
        quantised_tensors(model.tensors(), layout), committed_pieces(circuits.chunks), blinding
    )
    srs = srs_store.choose(circuits.logrows, srs_file)
    keys = [ensure_keys(circuit, srs, need_pk=False) for circuit in circuits.chunk_circuits]
    mismatched: list[str] = []
    for chunk in circuits.chunks:  # every chunk: each takes its own weight blocks
        key = keys[circuits.shapes.index(chunk.shape)]
        circuit = circuits.circuit_of(chunk)
        zeros = [0] * (chunk.shape.blinding_rows * chunk.shape.tokens)  # the output blinding is no part of the model
        task = ProofTask(chunk.name, str(circuit.compiled), str(circuit.settings), str(key.vk), "", str(srs.path),
                         chunk_inputs(chunk, committed, zeros))  # fmt: skip
        points = witness_of(task)["processed_inputs"]["polycommit"]
        for piece, piece_points in zip(chunk.pieces, points, strict=False):
            if published.get(piece.name) != piece_points and piece.name not in mismatched:
                mismatched.append(piece.name)
    return OpeningResult(not mismatched, mismatched)
