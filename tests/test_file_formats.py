"""Every on-disk format has one typed owner, reader beside writer (issue 34): each reads back what it wrote,
and refuses a malformed file or one of another version with its own error and a message, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from noseprint.core.fingerprint_folder import FingerprintFolderError, FingerprintRecord, read_folder, write_folder
from noseprint.core.opening import Opening, OpeningError, default_path
from noseprint.core.tokens import Token, TokenList

DATA = Path(__file__).with_name("data")


def test_the_opening_round_trips_and_reads_the_files_made_before_it_had_a_name(tmp_path):
    legacy = Opening.read(DATA / "bundle-v4.opening.json")
    assert legacy.chunking == {"kv_heads": 1, "ffn_rows": 16} and len(legacy.token_ids) == 8
    legacy.write(tmp_path / "o.json")
    assert Opening.read(tmp_path / "o.json") == legacy
    assert json.loads((tmp_path / "o.json").read_text())["version"] == 1
    assert (tmp_path / "o.json").stat().st_mode & 0o777 == 0o600
    assert default_path(Path("/x/bundle")) == Path("/x/bundle.opening.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(version=2), "version"),
        (lambda r: r.update(format="something-else"), "format"),
        (lambda r: r.pop("blinding"), "no blinding"),
        (lambda r: r.update(token_ids=["3"]), "token_ids"),
        (lambda r: r["blinding"].update(embedding=[1.5]), "non-integer"),
        (lambda r: r.update(input_scale="8"), "input_scale"),
    ],
)
def test_a_malformed_or_other_version_opening_is_refused(tmp_path, change, message):
    record = json.loads((DATA / "bundle-v4.opening.json").read_text())
    change(record)
    (tmp_path / "o.json").write_text(json.dumps(record))
    with pytest.raises(OpeningError, match=message):
        Opening.read(tmp_path / "o.json")
    with pytest.raises(OpeningError, match="not found"):
        Opening.read(tmp_path / "absent.json")


def _folder(tmp_path: Path) -> Path:
    record = FingerprintRecord("llama", [1, 2], "a" * 64, "b" * 64, [3, -4, 5], 12)
    tokens = TokenList([Token(3, "the"), Token(4, "to")])
    write_folder(tmp_path / "fp", record, b"\x89PNG", np.ones((2, 3)), tokens, force=False)
    return tmp_path / "fp"


def test_the_fingerprint_folder_round_trips(tmp_path):
    folder = read_folder(_folder(tmp_path))
    assert folder.record.z == [3, -4, 5] and folder.tokens.ids == [3, 4]
    assert folder.picture.read_bytes() == b"\x89PNG" and folder.invariants().shape == (2, 3)
    with pytest.raises(Exception, match="exists"):
        write_folder(tmp_path / "fp", folder.record, b"", np.ones(1), folder.tokens, force=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(version=2), "version"),
        (lambda r: r.update(format="noseprint-bundle"), "record"),
        (lambda r: r.update(z=["1"]), "z"),
        (lambda r: r.update(extra=1), "fields"),
        (lambda r: r.pop("model_type"), "fields"),
    ],
)
def test_a_malformed_or_other_version_fingerprint_folder_is_refused(tmp_path, change, message):
    root = _folder(tmp_path)
    record = json.loads((root / "fingerprint.json").read_text())
    change(record)
    (root / "fingerprint.json").write_text(json.dumps(record))
    with pytest.raises(FingerprintFolderError, match=message):
        read_folder(root)


def test_one_srs_serves_every_smaller_circuit_and_a_short_one_is_refused(tmp_path):
    """`srs init` at one size is all a user does (issue 34): the store's smallest SRS of at least the circuit's
    logrows is chosen (EZKL downsizes it); a named file smaller than the circuit, or imported under another
    size than it has, is refused."""
    import noseprint.circuits.srs as srs_store
    from noseprint.core.errors import UsageError

    store = tmp_path / "srs"
    big = srs_store.import_file(DATA / "dev-k14.srs", 14, store=store)
    chosen = srs_store.choose(12, store=store)
    assert (chosen.path, chosen.logrows, chosen.sha256) == (big.path, 12, big.sha256)
    srs_store.import_file(DATA / "dev-k12.srs", 12, store=store)
    assert srs_store.choose(12, store=store).sha256 != big.sha256  # the exact size when the store has it
    assert srs_store.choose(13, store=store).sha256 == big.sha256
    with pytest.raises(UsageError, match="logrows 15 or more"):
        srs_store.choose(15, store=store)
    with pytest.raises(UsageError, match="this circuit needs 14"):
        srs_store.choose(14, DATA / "dev-k12.srs")
    with pytest.raises(UsageError, match="not 13"):
        srs_store.import_file(DATA / "dev-k12.srs", 13, store=store)


@pytest.mark.proof
def test_ezkl_proves_and_verifies_a_small_circuit_with_a_larger_srs(tmp_path):
    """What `choose` relies on, checked on EZKL itself: a logrows-12 circuit set up, proven and verified with an
    SRS of 2^13 points (x·xᵀ of a 4 x 4 input, seconds)."""
    import ezkl
    import torch

    class Square(torch.nn.Module):
        def forward(self, x):
            return x @ x.T

    torch.onnx.export(Square(), torch.randn(4, 4), tmp_path / "m.onnx", input_names=["x"], dynamo=False)
    (tmp_path / "in.json").write_text(json.dumps({"input_data": [torch.randn(16).tolist()]}))
    args = ezkl.PyRunArgs()
    args.logrows = 12
    names = {k: str(tmp_path / v) for k, v in dict(s="s.json", c="c.ezkl", srs="k13.srs", w="w.json").items()}
    assert ezkl.gen_settings(str(tmp_path / "m.onnx"), names["s"], py_run_args=args)
    assert ezkl.compile_circuit(str(tmp_path / "m.onnx"), names["c"], names["s"])
    ezkl.gen_srs(names["srs"], 13)
    ezkl.gen_witness(str(tmp_path / "in.json"), names["c"], names["w"])
    assert ezkl.setup(names["c"], str(tmp_path / "vk"), str(tmp_path / "pk"), names["srs"])
    ezkl.prove(names["w"], names["c"], str(tmp_path / "pk"), str(tmp_path / "p.json"), names["srs"])
    assert ezkl.verify(str(tmp_path / "p.json"), names["s"], str(tmp_path / "vk"), names["srs"], False)


@pytest.mark.parametrize(
    "meta",
    ['{"logrows": 13, "sha256": "%s", "origin": "dev"}', '{"logrows": 12, "sha256": "x", "origin": "dev"}',
     '{"logrows": 12, "sha256": "%s", "origin": "elsewhere"}', "not json", '{"logrows": 12}'],
)  # fmt: skip
def test_a_malformed_srs_store_entry_is_refused(tmp_path, meta):
    """The store's record beside each SRS (logrows, digest, origin) is read strictly: a wrong size, digest or
    origin is refused with the file named, not taken as the SRS this machine trusts."""
    import noseprint.circuits.srs as srs_store
    from noseprint.core.errors import UsageError

    store = tmp_path / "srs"
    good = srs_store.import_file(DATA / "dev-k12.srs", 12, store=store)
    assert srs_store.load(12, store) == good
    (store / "k12.json").write_text(meta.replace("%s", good.sha256))
    with pytest.raises(UsageError, match="k12.json"):
        srs_store.load(12, store)
