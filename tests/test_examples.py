"""Every example spec validates and compiles, in its base form and with every profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.loader import load_file
from mummi_spec.profiles import names

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_example_compiles_with_every_profile(path):
    raw, _, _ = load_file(path)
    for profile in [NO_PROFILE, *names(raw)]:
        compiled = compile_loaded(load_spec(path, profile=profile))
        assert "study.yaml" in compiled.files and "plan.json" in compiled.files
        assert not [w for w in compiled.warnings if w.severity == "error"]


def test_there_are_three_examples():
    assert {p.name for p in SPECS} >= {"mini.yaml", "rasraf-3scale.yaml", "neuroreceptor.yaml"}
