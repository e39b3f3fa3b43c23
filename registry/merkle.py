"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

    leaf hash  SHA-256(0x00 || leaf bytes)
    node hash  SHA-256(0x01 || left || right)
    MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

The verifiers follow RFC 9162 section 2.1.3.2 (inclusion) and 2.1.4.2
(consistency) step by step, so a client needs nothing but hashes to catch a log
that dropped, changed or reordered an entry it had already seen.

The log head is kept as a *frontier*: the roots of the perfect subtrees that
make up the tree, left to right (one per set bit of the size). Appending is then
O(log n), and the root is a fold of the frontier.
"""

from __future__ import annotations

import hashlib

from noseprint.core.errors import NoseprintError

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(NoseprintError):
    """A proof does not verify; the message says how."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: list[bytes]) -> bytes:
    """MTH over leaf *hashes* (not leaf data)."""
    frontier: list[bytes] = []
    for i, leaf in enumerate(leaves):
        frontier = append(frontier, i, leaf)
    return frontier_root(frontier)


def append(frontier: list[bytes], size: int, new_leaf_hash: bytes) -> list[bytes]:
    """The frontier of a tree of `size + 1` leaves, from that of `size` leaves."""
    frontier = list(frontier)
    carry, n = new_leaf_hash, size
    while n & 1:
        carry = node_hash(frontier.pop(), carry)
        n >>= 1
    frontier.append(carry)
    return frontier


def frontier_root(frontier: list[bytes]) -> bytes:
    if not frontier:
        return EMPTY_ROOT
    result = frontier[-1]
    for subtree in reversed(frontier[:-1]):
        result = node_hash(subtree, result)
    return result


def _subtree_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(_subtree_root(leaves[:k]), _subtree_root(leaves[k:]))


def inclusion_proof(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1, over leaf hashes."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return inclusion_proof(index, leaves[:k]) + [_subtree_root(leaves[k:])]
    return inclusion_proof(index - k, leaves[k:]) + [_subtree_root(leaves[:k])]


def consistency_proof(old_size: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 2.1.4.1."""
    if not 0 < old_size <= len(leaves):
        raise ValueError(f"no consistency proof from size {old_size} to {len(leaves)}")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_subtree_root(leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [_subtree_root(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [_subtree_root(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], expected_root: bytes) -> None:
    """RFC 9162 2.1.3.2: raise ProofError unless `leaf` (a leaf hash) is at `index` of the tree with that root."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short for the tree size")
    if r != expected_root:
        raise ProofError("the inclusion proof does not lead to the checkpoint's root")


def _trivially_consistent(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    """Settle the cases RFC 9162 answers without a path walk: a shrunk log, equal sizes, an empty old tree.

    True means (new_size, new_root) extends (old_size, old_root) and nothing is left to check.
    """
    if old_size > new_size:
        raise ProofError(f"the log shrank from {old_size} to {new_size} entries")
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("same size, different root: the log was rewritten")
        return True
    return old_size == 0  # every tree extends the empty one


def _consistency_path(old_size: int, old_root: bytes, proof: list[bytes]) -> list[bytes]:
    """The path to walk: the proof, led by the old root when old_size is a power of two (RFC 9162 step 1)."""
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node of the path
        proof = [old_root, *proof]
    if not proof:
        raise ProofError("the consistency proof is empty")
    return proof


def _walk_consistency_path(old_size: int, new_size: int, path: list[bytes]) -> tuple[bytes, bytes]:
    """RFC 9162 2.1.4.2 steps 2-7: fold the path into the (old root, new root) it reproduces."""
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short for the tree sizes")
    return fr, sr


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> None:
    """RFC 9162 2.1.4.2: raise ProofError unless the tree (new_size, new_root) extends (old_size, old_root)."""
    if _trivially_consistent(old_size, new_size, old_root, new_root, proof):
        return
    fr, sr = _walk_consistency_path(old_size, new_size, _consistency_path(old_size, old_root, proof))
    if fr != old_root:
        raise ProofError("the consistency proof does not reproduce the old root: the log rewrote history")
    if sr != new_root:
        raise ProofError("the consistency proof does not reproduce the new root")
