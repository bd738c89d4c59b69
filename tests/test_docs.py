"""The spec reference is generated from the schema and must match it; examples are exercised."""

from __future__ import annotations

from pathlib import Path

from mummi_spec.docgen import render
from mummi_spec.runtime.registry import SCHEDULERS, SELECTORS, STORES
from mummi_spec.schema import load_schema

ROOT = Path(__file__).resolve().parent.parent


def test_spec_reference_matches_schema():
    on_disk = (ROOT / "docs" / "spec-reference.md").read_text(encoding="utf-8")
    assert on_disk == render(), "regenerate: python -m mummi_spec.docgen > docs/spec-reference.md"


def test_every_schema_key_is_documented():
    text = render()
    defs = load_schema()["$defs"]
    for name, node in defs.items():
        for key in node.get("properties", {}):
            assert f"| `{key}` |" in text, f"{name}.{key}"


def test_schema_enums_match_the_registries():
    defs = load_schema()["$defs"]
    assert set(defs["selector"]["properties"]["kind"]["enum"]) == set(SELECTORS.builtin_names())
    stores = set(STORES.builtin_names()) - {"memory"}  # memory is for dry runs, not specs
    assert set(defs["store"]["properties"]["backend"]["enum"]) == stores
    schedulers = set(SCHEDULERS.builtin_names()) - {"dryrun"}  # dry-run is a mode, not a site
    assert set(defs["scheduler"]["properties"]["type"]["enum"]) == schedulers


def test_package_data_is_shipped():
    from importlib.resources import files

    assert files("mummi_spec.templates").joinpath("maestro/study.yaml.j2").is_file()
    assert files("mummi_spec").joinpath("schemas", "mummi-spec-v1.schema.json").is_file()
