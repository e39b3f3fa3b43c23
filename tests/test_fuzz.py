"""Fuzz what strangers send (issue 17): none of it may crash a parser, the registry or `verify`. A bounded slice
for CI (a few hundred inputs per fast target, 20 end to end); bench/fuzz.py runs the same targets with many
more inputs and reports the count."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from noseprint.core.bundle import BundleError, Manifest, parse_proof, parse_z
from noseprint.core.tokens import TokenList

from testkit import fuzz_targets as targets

FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

MANIFEST = targets.current_manifest()
LAYOUT = targets.real("manifest.json")["circuit"]["layout"]  # type: ignore[index]


# what a registry parses from an upload ----------------------------------------------------------------------


@FAST
@given(st.binary(max_size=512))
def test_archive_bytes(data):
    targets.unpack_bytes(data)


@FAST
@given(targets.TAR_MEMBERS)
def test_archive_members(members):
    targets.unpack_bytes(targets.tar_of(members))


@FAST
@given(st.binary(max_size=256) | targets.JSON.map(lambda v: json.dumps(v).encode()))
def test_envelope(data):
    targets.parse_envelope(data)


@FAST
@given(targets.JSON)
def test_checkpoint(value):
    targets.parse_checkpoint(value)


# the local verify path ---------------------------------------------------------------------------------------


REFUSED_JSON = "not a JSON object|non-integer number|nested too deeply|Exceeds the limit"
READERS = {
    "manifest": (Manifest.from_json, BundleError, r"^manifest\.json (is not valid JSON|does not follow the bundle)"),
    "z": (parse_z, ValueError, f"^({REFUSED_JSON}|z_raw is not)"),
    "tokens": (TokenList.from_json, ValueError, f"^({REFUSED_JSON}|no list of tokens)"),
    "proof": (parse_proof, ValueError, f"^({REFUSED_JSON}|not one instance column)"),
}
"""Each reader of a stranger's JSON file, the one error type it refuses with (its callers turn a ValueError into
the bundle's or the check's own), and what its message must say."""


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("text", targets.HOSTILE_TEXT, ids=lambda t: t[:12])
def test_hostile_json_is_refused_by_every_reader(text, reader):
    """Refused, with the reader's own error type (not a RecursionError, a decoder's subclass or a crash deeper
    in), and one short line that says what is wrong (not the stranger's 100,000 values echoed back)."""
    read, error, says = READERS[reader]
    with pytest.raises(Exception) as refused:
        read(text.encode())
    message = str(refused.value)
    assert type(refused.value) is error, f"{type(refused.value).__name__}: {message[:200]}"
    assert re.search(says, message) and "\n" not in message and len(message) <= 300, message[:400]


@FAST
@given(targets.file_bytes(MANIFEST))
def test_manifest_from_json(data):
    targets.manifest_from_json(data)


@FAST
@given(targets.file_bytes(targets.real("z.json")))
def test_parse_z(data):
    targets.z_from_bytes(data)


@FAST
@given(targets.file_bytes(targets.real("tokens.json")))
def test_parse_tokens(data):
    targets.tokens_from_bytes(data)


@FAST
@given(targets.file_bytes(targets.real("proofs/encode.json")))
def test_parse_proof(data):
    targets.proof_from_bytes(data)


@FAST
@given(targets.layout_inputs(LAYOUT))
@example({**LAYOUT, "tokens": 8.0})
@example({**LAYOUT, "tokens": True})
@example({**LAYOUT, "hidden": float("inf")})
@example({**LAYOUT, "term_shifts": [10**5000]})
def test_layout_from_dict(value):
    targets.layout_from_dict(value)


@FAST
@given(targets.mutations(targets.real("manifest.json")) | targets.JSON)  # type: ignore[arg-type]
def test_signed_bundle_with_its_manifest_mutated(value):
    targets.verify_manifest(targets.BUNDLE, value)


@pytest.mark.proof
def test_verify_with_one_member_replaced_and_rehashed(fixture_home, monkeypatch):
    """The real verifier parses the fuzzed file (its hash is the manifest's): INVALID, never a crash. Its home
    holds the fixture's keys already (the session's `fixture_auditor`), so the inputs reach the proofs quickly."""
    monkeypatch.setenv("NOSEPRINT_HOME", str(fixture_home))
    targets.reference_facts()

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(targets.forged_members())
    def run(forged):
        targets.verify_member(*forged)

    run()
