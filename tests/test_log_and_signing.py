"""The registry's primitives against their specifications: RFC 6962 hashing and proofs, DSSE, archives, checkpoints."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile

import noseprint.registry.archive as archive
import noseprint.registry.merkle as merkle
import noseprint.registry.tree_head as cp
import noseprint.signing.dsse as dsse
import noseprint.signing.keys as keys
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from noseprint.core.errors import UsageError

# RFC 6962 reference data (the certificate-transparency test leaves and the tree heads of sizes 1..8)
CT_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f"]]  # fmt: skip
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
CT_INCLUSION_0_OF_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def test_rfc6962_reference_roots_and_proof():
    hashes = [merkle.leaf_hash(d) for d in CT_LEAVES]
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    for size, expected in CT_ROOTS.items():
        assert merkle.root(hashes[:size]).hex() == expected
    assert [h.hex() for h in merkle.inclusion_proof(0, hashes)] == CT_INCLUSION_0_OF_8
    merkle.verify_inclusion(0, 8, hashes[0], merkle.inclusion_proof(0, hashes), merkle.root(hashes))


def test_frontier_append_equals_full_recomputation():
    hashes = [merkle.leaf_hash(os.urandom(4)) for _ in range(300)]
    frontier: list[bytes] = []
    for size, leaf in enumerate(hashes):
        frontier = merkle.append(frontier, size, leaf)
        assert len(frontier) == bin(size + 1).count("1")
    assert merkle.frontier_root(frontier) == merkle._subtree_root(hashes)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 70), st.data())
def test_every_proof_verifies_and_every_tampering_fails(n, data):
    hashes = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    root = merkle.root(hashes)
    index = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(index, hashes)
    merkle.verify_inclusion(index, n, hashes[index], proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, n, merkle.leaf_hash(b"other"), proof, root)
    if proof:
        bad = list(proof)
        bad[data.draw(st.integers(0, len(bad) - 1))] = merkle.leaf_hash(b"x")
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(index, n, hashes[index], bad, root)
    old = data.draw(st.integers(1, n))
    consistency = merkle.consistency_proof(old, hashes)
    merkle.verify_consistency(old, n, merkle.root(hashes[:old]), root, consistency)
    rewritten = list(hashes)
    rewritten[data.draw(st.integers(0, old - 1))] = merkle.leaf_hash(b"rewritten")
    if old < n or rewritten[:old] != hashes[:old]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(
                old, n, merkle.root(hashes[:old]), merkle.root(rewritten), merkle.consistency_proof(old, rewritten)
            )


def test_shrunk_log_is_refused():
    with pytest.raises(merkle.ProofError, match="shrank"):
        merkle.verify_consistency(5, 4, b"a" * 32, b"b" * 32, [])


def test_dsse_pae_and_signature():
    # PAE example from the DSSE specification's protocol description
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    key = Ed25519PrivateKey.generate()
    envelope = dsse.sign(b'{"a":1}', dsse.IN_TOTO_PAYLOAD_TYPE, key)
    assert dsse.verify(envelope, key.public_key()) == (dsse.IN_TOTO_PAYLOAD_TYPE, b'{"a":1}')
    assert envelope["signatures"][0]["keyid"] == keys.key_id(key.public_key())
    retyped = dict(envelope, payloadType="text/plain")
    with pytest.raises(dsse.EnvelopeError, match="no signature"):
        dsse.verify(retyped, key.public_key())
    changed = dict(envelope, payload=base64.b64encode(b'{"a":2}').decode())
    with pytest.raises(dsse.EnvelopeError):
        dsse.verify(changed, key.public_key())
    with pytest.raises(dsse.EnvelopeError):
        dsse.verify(envelope, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(dsse.EnvelopeError, match="base64"):
        dsse.verify(dict(envelope, payload="%%%"), key.public_key())


def test_keygen_permissions_and_refusals(tmp_path):
    private, public, keyid = keys.generate(tmp_path / "owner")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert keys.key_id(keys.load_public(public)) == keyid
    with pytest.raises(UsageError, match="already exists"):
        keys.generate(tmp_path / "owner")
    private.chmod(0o644)
    with pytest.raises(UsageError, match="readable by others"):
        keys.load_private(private)
    (tmp_path / "junk").write_text("not a key")
    (tmp_path / "junk").chmod(0o600)
    with pytest.raises(UsageError, match="PEM"):
        keys.load_private(tmp_path / "junk")


def test_checkpoint_signature():
    key = Ed25519PrivateKey.generate()
    signed = cp.sign("origin", 3, b"\x01" * 32, key)
    again = cp.from_dict(json.loads(json.dumps(signed.to_dict())))
    cp.verify(again, key.public_key())
    assert again.body() == b"origin\n3\n" + base64.b64encode(b"\x01" * 32) + b"\n"
    forged = cp.Checkpoint("origin", 4, again.root, again.keyid, again.signature)
    with pytest.raises(cp.CheckpointError, match="not signed"):
        cp.verify(forged, key.public_key())
    with pytest.raises(cp.CheckpointError, match="malformed"):
        cp.from_dict({"origin": "o", "size": 1, "root": "zz", "signature": ""})


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"{}") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_archive_round_trip_is_reproducible(tmp_path):
    bundle = tmp_path / "b"
    (bundle / "circuit").mkdir(parents=True)
    (bundle / "manifest.json").write_text("{}")
    (bundle / "circuit" / "vk.key").write_bytes(b"\x00\x01")
    packed = archive.pack(bundle)
    assert packed == archive.pack(bundle)
    (tmp_path / "out").mkdir()
    root = archive.unpack(packed, tmp_path / "out")
    assert (root / "circuit" / "vk.key").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize(
    "members, words",
    [
        ([_file("../evil"), _file("manifest.json")], "outside"),
        ([_file("/etc/evil"), _file("manifest.json")], "outside"),
        ([_file("a/../../evil")], "outside"),
        ([_file("manifest.json"), _file("manifest.json")], "twice"),
        ([_file("x.json")], "no manifest"),
    ],
)
def test_archive_refuses_unsafe_members(tmp_path, members, words):
    with pytest.raises(archive.ArchiveError, match=words):
        archive.unpack(_tar(members), tmp_path)
    assert not (tmp_path.parent / "evil").exists()


def test_archive_refuses_links_garbage_and_bombs(tmp_path, monkeypatch):
    link = tarfile.TarInfo("manifest.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(archive.ArchiveError, match="link"):
        archive.unpack(_tar([(link, None)]), tmp_path / "a")
    with pytest.raises(archive.ArchiveError, match="not a tar"):
        archive.unpack(b"garbage" * 10, tmp_path / "b")
    monkeypatch.setattr(archive, "MAX_UNPACKED_BYTES", 1000)
    (tmp_path / "c").mkdir()
    with pytest.raises(archive.ArchiveError, match="unpacks to more"):
        archive.unpack(_tar([_file("manifest.json", b"0" * 5000)]), tmp_path / "c")
