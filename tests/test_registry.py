"""The registry end to end with real proven bundles: signing, add/search/show/list, the log and its audits.

Bundles come from the session's `proven` fixture (two tiny llama models) plus one
derivative of model 0 proven here; all are signed by an owner key. The registry
has its own home holding only an imported copy of the SRS.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from noseprint.core.fileio import canonical_json

from tests.conftest import run_cli

pytestmark = pytest.mark.proof


def reg(signed, *args: str, db: str | None = None) -> tuple[int, dict | str]:
    result = run_cli("registry", *args, *(["--db", db] if db else []), home=signed["home"])
    try:
        return result.returncode, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.returncode, result.stdout + result.stderr


def test_signed_bundle_verifies_with_its_key_and_names_it(signed):
    bundle, pub = signed["bundles"]["derived"], f"{signed['key']}.pub"
    result = run_cli("verify", str(bundle), "--json", "--key", pub, home=signed["home"])
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["facts"]["signed"] and report["facts"]["signer_demanded"]
    keyid = json.loads(run_cli("keygen", "--out", str(signed["root"] / "k2"), "--json", home=signed["home"]).stdout)
    other = run_cli("verify", str(bundle), "--json", "--key", keyid["public_key"], home=signed["home"])
    assert other.returncode == 1
    assert json.loads(other.stdout)["failed_check"] == "signature"
    envelope = json.loads((bundle / "attestation.dsse.json").read_text())
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert payload["_type"] == "https://in-toto.io/Statement/v1"
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert {s["name"] for s in payload["subject"]} == {"model-commitment", "fingerprint.png"}


def test_signature_tampering_is_caught(signed, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(signed["bundles"]["base0"], bundle)
    envelope = json.loads((bundle / "attestation.dsse.json").read_text())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    (bundle / "attestation.dsse.json").write_text(json.dumps(envelope))
    result = run_cli("verify", str(bundle), "--json", home=signed["home"])
    assert result.returncode == 1 and json.loads(result.stdout)["failed_check"] == "signature"
    # a valid signature from another bundle does not carry over
    shutil.copy(signed["bundles"]["base1"] / "attestation.dsse.json", bundle / "attestation.dsse.json")
    result = run_cli("verify", str(bundle), "--json", home=signed["home"])
    assert "describes another bundle" in json.loads(result.stdout)["reason"]


def test_add_search_show_list_and_check(signed, tmp_path, db_url):
    db = db_url
    b = signed["bundles"]
    code, first = reg(signed, "add", str(b["base0"]), "--json", db=db)
    assert code == 0, first
    assert (first["id"], first["log_index"], first["checkpoint"]["size"], first["nearest"]) == (1, 0, 1, [])
    code, derived = reg(signed, "add", str(b["derived"]), "--json", db=db)
    assert code == 0, derived
    assert derived["nearest"][0]["id"] == 1 and derived["nearest"][0]["verdict"] == "same base model"
    code, other = reg(signed, "add", str(b["base1"]), "--json", db=db)
    assert code == 0
    by_id = {m["id"]: m for m in other["nearest"]}
    assert by_id[1]["verdict"] != "same base model" and by_id[1]["z_cosine"] < derived["nearest"][0]["z_cosine"]

    code, replay = reg(signed, "add", str(b["base0"]), db=db)
    assert code == 1 and "already registered as entry 1" in replay
    image = str(tmp_path / "s.png")
    code, found = reg(signed, "search", str(b["derived"]), "--top", "2", "--json", "--image", image, db=db)
    assert code == 0 and [m["id"] for m in found["matches"]] == [2, 1]
    assert found["matches"][0]["z_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "s.png").stat().st_size > 1000
    code, shown = reg(signed, "show", "2", "--json", "--bundle", str(tmp_path / "unpacked"), db=db)
    assert code == 0 and shown["inclusion"]["tree_size"] == 3 and shown["nearest"][0]["id"] == 1
    verified = run_cli("verify", str(tmp_path / "unpacked"), "--json", home=signed["home"])
    assert verified.returncode == 0  # the stored bundle is the one that was verified, byte for byte
    code, listing = reg(signed, "list", "--json", db=db)
    assert listing["total"] == 3 and [e["id"] for e in listing["entries"]] == [3, 2, 1]

    code, audit = reg(signed, "check", "--full", "--entry", "1", "--entry", "3", "--json", db=db)
    assert code == 0, audit
    assert audit["size"] == 3 and audit["key_pinned_now"] and audit["entries_checked"] == [1, 3]
    code, again = reg(signed, "check", "--json", db=db)
    assert code == 0 and again["previous_size"] == 3 and not again["key_pinned_now"]


def test_invalid_or_unsigned_bundles_store_nothing(signed, tmp_path):
    db = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    unsigned = tmp_path / "unsigned"
    shutil.copytree(signed["bundles"]["base0"], unsigned)
    (unsigned / "attestation.dsse.json").unlink()
    code, message = reg(signed, "add", str(unsigned), db=db)
    assert code == 1 and "not signed" in message
    broken = tmp_path / "broken"
    shutil.copytree(signed["bundles"]["base1"], broken)
    z = json.loads((broken / "z.json").read_text())
    z["z"][0] += 1
    (broken / "z.json").write_text(json.dumps(z))
    code, message = reg(signed, "add", str(broken), db=db)
    assert code == 1 and "files" in message
    code, listing = reg(signed, "list", "--json", db=db)
    assert listing["total"] == 0


def _rewrite_first_leaf(path: Path, registry_key: Path) -> None:
    """What a dishonest operator would do: back-date entry 1, rebuild the tree, re-sign a checkpoint."""
    import noseprint.registry.merkle as merkle
    import noseprint.registry.tree_head as cp
    from noseprint.signing.keys import load_private

    con = sqlite3.connect(path)
    leaf = json.loads(con.execute("select leaf from entries where id = 1").fetchone()[0])
    leaf["added_at"] = "2020-01-01T00:00:00.000000Z"
    text = canonical_json(leaf).decode()
    con.execute("update entries set leaf = ?, added_at = ? where id = 1", (text, leaf["added_at"]))
    con.execute("update log_leaves set leaf_hash = ? where log_index = 0", (merkle.leaf_hash(text.encode()).hex(),))
    hashes = [bytes.fromhex(h) for (h,) in con.execute("select leaf_hash from log_leaves order by log_index")]
    signed = cp.sign("noseprint-registry", len(hashes), merkle.root(hashes), load_private(registry_key))
    frontier: list[bytes] = []
    for size, leaf_hash in enumerate(hashes):
        frontier = merkle.append(frontier, size, leaf_hash)
    con.execute("update log_head set frontier = ? where id = 1", (json.dumps([h.hex() for h in frontier]),))
    con.execute(
        "update checkpoints set root = ?, signed = ? where size = ?",
        (signed.root.hex(), json.dumps(signed.to_dict()), len(hashes)),
    )
    con.commit()
    con.close()


def test_a_rewritten_history_is_caught_by_a_client_that_kept_a_checkpoint(signed, tmp_path):
    path = tmp_path / "r.sqlite3"
    db = f"sqlite:///{path}"
    for name in ("base0", "base1"):
        assert reg(signed, "add", str(signed["bundles"][name]), "--json", db=db)[0] == 0
    assert reg(signed, "check", "--json", db=db)[0] == 0  # the client remembers size 2
    _rewrite_first_leaf(path, signed["home"] / "registry-key")
    code, message = reg(signed, "check", db=db)
    assert code == 1 and "rewritten" in message
    assert reg(signed, "add", str(signed["bundles"]["derived"]), "--json", db=db)[0] == 0
    code, message = reg(signed, "check", db=db)
    assert code == 1 and "not consistent" in message


def test_full_check_catches_an_edited_entry(signed, tmp_path):
    path = tmp_path / "r.sqlite3"
    db = f"sqlite:///{path}"
    assert reg(signed, "add", str(signed["bundles"]["base0"]), "--json", db=db)[0] == 0
    con = sqlite3.connect(path)
    con.execute("update entries set image_png = ? where id = 1", (b"\x89PNG not the proven picture",))
    con.commit()
    con.close()
    code, message = reg(signed, "check", "--full", db=db)
    assert code == 1 and "image sha256 differs" in message
