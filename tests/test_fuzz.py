"""Fuzz what strangers send (issue 17): none of it may crash a parser, the registry or `verify`. A bounded slice
for CI (a few hundred inputs per fast target, 20 end to end); bench/fuzz.py runs the same targets with many
more inputs and reports the count."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("text", targets.HOSTILE_TEXT, ids=lambda t: t[:12])
def test_hostile_json_is_refused_by_every_reader(text):
    data = text.encode()
    targets.manifest_from_json(data)
    targets.z_from_bytes(data)
    targets.tokens_from_bytes(data)
    targets.proof_from_bytes(data)


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
