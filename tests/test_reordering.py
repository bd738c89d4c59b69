"""Builds do not depend on the order keys are written in: every mapping reversed, same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.loader import load_text
from tests.conftest import SPECS


def _reversed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_reversed(v) for v in value]  # lists are ordered data: bins, bounds, tags
    return value


def _build(path: Path, profile: str) -> dict[str, str]:
    files = dict(compile_loaded(load_spec(path, profile=profile)).files)
    manifest = json.loads(files.pop("manifest.json"))
    manifest.pop("spec_sha256")  # the text's own hash: its bytes differ by construction
    files["manifest.json"] = json.dumps(manifest, sort_keys=True)
    return files


@pytest.mark.parametrize("name", ["mini.yaml", "rasraf-3scale.yaml", "neuroreceptor.yaml"])
@pytest.mark.parametrize("profile", [NO_PROFILE, "local"])
def test_every_mapping_reversed_builds_the_same_bytes(name: str, profile: str,
                                                       tmp_path: Path) -> None:
    data, _ = load_text((SPECS / name).read_text(encoding="utf-8"), name)
    flipped = _reversed(data)
    assert list(flipped) != list(data)  # the order really changed
    (tmp_path / name).write_text(yaml.safe_dump(flipped, sort_keys=False), encoding="utf-8")
    original = _build(SPECS / name, profile)
    again = _build(tmp_path / name, profile)
    for artefact in sorted(original.keys() | again.keys()):
        assert again.get(artefact) == original.get(artefact), artefact
