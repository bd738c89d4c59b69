"""Every example spec validates and compiles, in its base form and with every profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.loader import load_file
from mummi_spec.profiles import names

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
# Example campaigns with their own applications (examples/*/campaign.yaml).
CAMPAIGNS = sorted((ROOT / "examples").glob("*/campaign.yaml"))


@pytest.mark.parametrize("path", SPECS + CAMPAIGNS,
                         ids=lambda p: p.name if p.parent.name == "specs" else p.parent.name)
def test_example_compiles_with_every_profile(path):
    raw, _, _ = load_file(path)
    for profile in [NO_PROFILE, *names(raw)]:
        compiled = compile_loaded(load_spec(path, profile=profile))
        assert "study.yaml" in compiled.files and "plan.json" in compiled.files
        assert not [w for w in compiled.warnings if w.severity == "error"]


def test_the_examples_are_all_there():
    assert {p.name for p in SPECS} >= {"mini.yaml", "rasraf-3scale.yaml", "neuroreceptor.yaml"}
    assert {p.parent.name for p in CAMPAIGNS} >= {"alanine-dipeptide"}


@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda p: p.parent.name)
def test_example_applications_use_only_the_application_interface(path):
    """A scientist's code sees mummi-spec through mummi_spec.app alone (docs/architecture.md)."""
    import ast

    for source in sorted(path.parent.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "mummi_spec":
                names = [f"mummi_spec.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            wrong = [n for n in names if n.split(".")[0] == "mummi_spec"
                     and n.split(".")[:2] != ["mummi_spec", "app"]]
            assert not wrong, f"{source}:{node.lineno} imports {', '.join(wrong)}"
