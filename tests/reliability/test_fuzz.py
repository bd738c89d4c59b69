"""Fuzz the whole compile path with specs that parse but are wrong: exit 0 or 2, never a crash.

The front end's own fuzzers (tests/unit/test_frontend.py) garble lines and raw bytes, which
mostly stops at the YAML parser. These mutate the parsed reference specs instead, so every
example is valid YAML and reaches the schema, the semantic checks, the resource plan, the
renderer and the Maestro self-check; and a failing compile must leave the last build as it was.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mummi_spec.cli import main
from mummi_spec.loader import load_text
from tests.conftest import SPECS

# Parsed as mummi reads a spec: PyYAML's own loader would turn `on:` keys into True.
BASES = {name: load_text((SPECS / name).read_text(), name)[0] for name in
         ("mini.yaml", "rasraf-3scale.yaml")}

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True),
    st.sampled_from(["", "x", "1:30:00", "-1h", "0s", "1e9h", "${NOPE}", "$(NOPE)", "../..",
                     "a; rm -rf /", "gpu", "slurm", "mean", "cg.frames", "nope.nope", "{{ x }}"]),
    st.text(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*here, i))
    return out


def _mutate(data: Any, draw: Any) -> Any:
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    op = draw(st.sampled_from(["replace", "delete", "add"]))
    if op == "delete":
        del parent[path[-1]]
    elif op == "add" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=10))] = draw(_values)
    else:
        parent[path[-1]] = draw(_values)
    return data


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_specs_compile_or_fail_cleanly(data: Any, tmp_path_factory: Any,
                                               capsys: Any) -> None:
    name = data.draw(st.sampled_from(sorted(BASES)))
    spec = yaml.safe_load(yaml.safe_dump(BASES[name]))  # a deep copy
    for _ in range(data.draw(st.integers(1, 3))):
        spec = _mutate(spec, data.draw)
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / name
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    build = tmp / "build"
    assert main(["compile", str(SPECS / name), "-o", str(build)]) == 0
    before = _tree_hash(build)
    capsys.readouterr()

    code = main(["compile", str(path), "-o", str(build)])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    event(f"exit {code}")  # --hypothesis-show-statistics: how often a mutant still compiles
    if code == 2:
        assert "error:" in err
        assert _tree_hash(build) == before, "a failed compile changed the last good build"
    else:
        # What compiles also dry-runs.
        assert main(["dry-run", str(path)]) == 0, capsys.readouterr().err


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_values)
def test_arbitrary_yaml_documents_validate_cleanly(doc: Any, tmp_path_factory: Any,
                                                   capsys: Any) -> None:
    path = tmp_path_factory.mktemp("doc") / "spec.yaml"
    path.write_text(yaml.safe_dump({"spec": "mummi/v1", "campaign": doc}), encoding="utf-8")
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
