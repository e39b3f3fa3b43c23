"""Fuzz the parsers a registry exposes to strangers (hypothesis): none may crash. bench/fuzz_registry.py runs
the same targets with many more inputs and reports the count."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_targets as targets

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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


@pytest.mark.proof
def test_manifest_mutations(signed):
    bundle = signed["bundles"]["base0"]
    manifest = json.loads((bundle / "manifest.json").read_text())

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(targets.mutations(manifest) | targets.JSON)
    def run(value):
        targets.verify_manifest(bundle, value)

    run()
