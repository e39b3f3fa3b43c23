"""The proof-chain checks of `verify-inference` (checks 3-5 of `verifier.challenge`): every proof's committed
inputs and outputs are the pieces and hidden states it must take, exactly (`swap_proof_commitments`, counts
first), every proof verifies, and the link proof shows the fingerprint's embedding rows are the model's. What
they read off the proofs is the proven logits of every chain, for the statistics (`verifier.challenge_statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import noseprint.circuits.srs as srs_store
import numpy as np
from noseprint.circuits.challenge_circuits import InferenceCircuits, commit_points, onehot
from noseprint.circuits.keys import Keys
from noseprint.core.bundle import parse_proof
from noseprint.core.challenge_listing import ProofEntry
from noseprint.core.fileio import read_inside
from noseprint.core.whole_model import (
    LOGIT_GAIN_BITS,
    chain_prefix,
    embed_block_of,
    embedding_piece,
    final_norm_piece,
    head_piece,
    model_scales_piece,
)
from noseprint.verifier.report import CheckFailed


class ProofChecker:
    """Checks each proof's links and validity, and reads the public outputs."""

    def __init__(self, proofs_dir: Path, keys: dict[str, Keys], srs: srs_store.Srs, points: dict[str, list[str]]):
        from noseprint.circuits.proving import usable_commit_rows

        self.dir, self.keys, self.srs, self.points = proofs_dir, keys, srs, points
        self.usable = {kind: usable_commit_rows(k, srs) for kind, k in keys.items()}

    def counts(self, entry: ProofEntry, lists: list[list[str]], sizes: list[int], what: str) -> None:
        """Counts first: `swap_proof_commitments` writes over the first commitments only, so a short list would
        leave the rest unchecked."""
        from noseprint.circuits.proving import points_per_input

        if len(lists) != len(sizes):
            raise CheckFailed("links", f"{entry.name} takes {len(sizes)} committed {what}, not {len(lists)}")
        for points, size in zip(lists, sizes, strict=True):
            if len(points) != points_per_input(size, self.usable[entry.kind]):
                raise CheckFailed("links", f"{entry.name} lists the wrong number of commitment points for its {what}")

    def proof(self, entry: ProofEntry) -> dict[str, Any]:
        try:
            return parse_proof(read_inside(self.dir, entry.file))
        except (OSError, ValueError) as exc:
            raise CheckFailed("proofs", f"{entry.name}'s proof is not an EZKL proof ({exc})") from None

    def check(
        self, entry: ProofEntry, inputs: list[list[str]], sizes: list[int], outputs: list[list[str]], hidden: int
    ) -> list[str]:
        """Counts, links (exact, via the proof) and validity; the proof's public instances. `sizes`: the values
        of each committed input; `hidden`: those of the committed output."""
        from noseprint.circuits.proving import commitments_match, verify_proof

        self.counts(entry, inputs, sizes, "inputs")
        self.counts(entry, outputs, [hidden] * len(outputs), "outputs")
        proof = self.proof(entry)
        path = self.dir / entry.file
        try:
            linked = commitments_match(path, inputs, outputs)
        except BaseException as exc:  # pyo3 panics derive from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            linked = False
        if not linked:
            raise CheckFailed("links", f"{entry.name} is not about the committed pieces and hidden states it must take")
        if not verify_proof(path, self.keys[entry.kind], self.srs):
            raise CheckFailed("proofs", f"{entry.name} does not verify")
        return list(proof["instances"][0]) if proof.get("instances") else []


def hidden_points(entry: ProofEntry) -> tuple[list[str], list[str]]:
    if not entry.blinding_points or not entry.output_points:
        raise CheckFailed("links", f"{entry.name} lists no hidden-state commitments")
    return entry.blinding_points, entry.output_points


def decode(instances: list[str], scale: int) -> np.ndarray:
    from noseprint.circuits.proving import felt_to_signed

    return np.asarray([felt_to_signed(f) for f in instances], dtype=np.float64) / float(1 << scale)


@dataclass
class Chains:
    """Checks the link proof, then each prompt's chains of layer proofs and their head proofs (the model's own,
    and one ablation chain per fingerprinted layer)."""

    checker: ProofChecker
    entries: dict[str, ProofEntry]
    circuits: InferenceCircuits
    points: dict[str, list[str]]
    length: int
    """The challenge's prompt length."""

    def __post_init__(self) -> None:
        d = self.circuits.shape.hidden
        self.hidden_size, self.blinding_size = (self.length + 1) * d, d
        self.block_size = (self.circuits.shape.embed_rows + 1) * d
        self.scales_size = math.prod(model_scales_piece().committed_shape)

    def _blocks(self, tokens: list[int]) -> list[list[str]]:
        """The points of the embedding block holding each token's row."""
        shape = self.circuits.shape
        return [self.points[embedding_piece(shape, embed_block_of(shape, t)[0]).name] for t in tokens]

    def link(self, token_ids: list[int]) -> float:
        """The link proof (`circuits.challenge_circuits`): the fingerprint's embedding rows against the model's
        blocks of the same tokens; the largest deviation it proves (at most LINK_TOLERANCE for the same weights)."""
        shape, keys, srs = self.circuits.shape, self.checker.keys, self.checker.srs
        onehots = commit_points(onehot(shape, token_ids), keys["link"], srs)
        inputs = [self.points["embedding"], onehots, *self._blocks(token_ids), self.points[model_scales_piece().name]]
        n, d = len(token_ids), shape.hidden
        sizes = [(n + 1) * d, n * shape.embed_rows, *[self.block_size] * n, self.scales_size]
        instances = self.checker.check(self.entries["link"], inputs, sizes, [], 0)
        return float(decode(instances, self.circuits.link.output_scale).max())

    def prompt(
        self, prompt: int, tokens: list[int], ablations: list[tuple[int, list[int]]]
    ) -> dict[int | None, np.ndarray]:
        """One prompt's proven logits (positions x vocabulary) per chain (None: the model's own, j: without layer
        j): its embed proof, then its layers and head, then each ablation chain from the state entering the
        layer it leaves out."""
        shape = self.circuits.shape
        embed = self.entries[f"p{prompt}.embed"]
        blinding, hidden = hidden_points(embed)
        onehots = commit_points(onehot(shape, tokens), self.checker.keys["embed"], self.checker.srs)
        sizes = [len(tokens) * shape.embed_rows, *[self.block_size] * len(tokens), self.blinding_size]
        self.checker.check(embed, [onehots, *self._blocks(tokens), blinding], sizes, [hidden], self.hidden_size)
        entering = self.layers(prompt, None, range(shape.layers), hidden)
        logits: dict[int | None, np.ndarray] = {None: self.head(prompt, None, entering[-1])}
        for without, after in ablations:
            final = self.layers(prompt, without, after, entering[without])[-1]
            logits[without] = self.head(prompt, without, final)
        return logits

    def layers(self, prompt: int, without: int | None, indices: Iterable[int], hidden: list[str]) -> list[list[str]]:
        """The hidden state entering each of `indices` and the last one's output. Each layer's proofs
        (`core.whole_model.layer_parts`) are checked in order: a whole layer's input is the state entering it; a
        part's norm input is the state entering the layer (attention) or the residual after the last attention
        part (FFN), and its running residual the previous part's output, starting from that same state."""
        states = [hidden]
        for index in indices:
            norm_input = running = states[-1]
            for part in self.circuits.parts(index):
                if part.kind == "ffn" and part.block == 0:
                    norm_input = running
                entry = self.entries[f"{chain_prefix(prompt, without)}layer{index}{part.suffix}"]
                blinding, output = hidden_points(entry)
                hidden_states = [running] if part.kind == "layer" else [norm_input, running]
                pieces = [self.points[piece.name] for piece in part.pieces]
                sizes = [self.hidden_size] * len(hidden_states)
                sizes += [math.prod(piece.committed_shape) for piece in part.pieces] + [self.blinding_size]
                self.checker.check(entry, [*hidden_states, *pieces, blinding], sizes, [output], self.hidden_size)
                running = output
            states.append(running)
        return states

    def head(self, prompt: int, without: int | None, hidden: list[str]) -> np.ndarray:
        """The proven logits (positions x vocabulary) of the head proofs on `hidden`."""
        shape = self.circuits.shape
        norm, scales = self.points[final_norm_piece(shape).name], self.points[model_scales_piece().name]
        blocks = []
        for block in range(shape.head_blocks):
            entry = self.entries[f"{chain_prefix(prompt, without)}head{block}"]
            inputs = [hidden, norm, self.points[head_piece(shape, block).name], scales]
            sizes = [self.hidden_size, 2 * shape.hidden, (shape.head_rows + 1) * shape.hidden, self.scales_size]
            gained = self.circuits.head.output_scale + LOGIT_GAIN_BITS
            values = decode(self.checker.check(entry, inputs, sizes, [], 0), gained)
            blocks.append(values.reshape(self.length, shape.head_rows))
        return np.concatenate(blocks, axis=1)[:, : shape.vocab]
