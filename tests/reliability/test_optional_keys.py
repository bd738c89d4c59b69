"""Every optional key works when left out: each reference spec without one of them validates,
compiles, dry-runs, simulates an hour and runs manager ticks, or stops at a located error."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.dryrun import report
from mummi_spec.errors import SpecErrors
from mummi_spec.frontend import load_spec_text, validate_everything
from mummi_spec.loader import load_text
from mummi_spec.plan import Plan, StorePlan
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.manager import Manager
from mummi_spec.runtime.schedulers.dryrun import DryRunScheduler
from mummi_spec.runtime.simulate.run import Options, simulate
from mummi_spec.schema import load_schema
from tests.conftest import SPECS

pytestmark = pytest.mark.slow
SPEC_FILES = ("mini.yaml", "rasraf-3scale.yaml", "neuroreceptor.yaml")


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    defs = load_schema()["$defs"]
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def optional_paths(data: Any, schema: dict[str, Any], path: tuple[str, ...] = ()
                   ) -> Iterator[tuple[str, ...]]:
    """Every key the schema does not require, outside the profiles (each of which is a set of
    overrides: all optional)."""
    schema = _resolve(schema)
    if not isinstance(data, dict) or schema.get("type") != "object":
        return
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, value in data.items():
        if path == () and key == "profiles":
            continue
        sub = props.get(key, extra if isinstance(extra, dict) else None)
        if sub is None:
            continue
        if key in props and key not in schema.get("required", ()):
            yield (*path, key)
        yield from optional_paths(value, sub, (*path, key))


def _cases() -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for name in SPEC_FILES:
        text = (SPECS / name).read_text(encoding="utf-8")
        data, _ = load_text(text, name)
        out += [(name, p) for p in optional_paths(data, load_schema())]
    return out


CASES = _cases()


def _without(name: str, path: tuple[str, ...]) -> str:
    data, _ = load_text((SPECS / name).read_text(encoding="utf-8"), name)
    node = data
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return yaml.safe_dump(data, sort_keys=False)


def _ticks(plan: Plan, root: Path, n: int = 25) -> None:
    """The real manager on the plan, its jobs ended at once by the dry-run scheduler."""
    plan = dataclasses.replace(
        plan, stores={s: StorePlan(s, "memory", s) for s in plan.stores})
    (root / "build").mkdir()
    plan_path = root / "build" / "plan.json"
    plan_path.write_text(plan.to_json())
    clock = _Clock()
    m = Manager(Campaign(plan, plan_path, root / "ws"), DryRunScheduler(plan.scheduler),
                clock=clock, threads=False)
    m.start()
    try:
        for _ in range(n):
            clock.t += plan.manager.tick
            if m.tick(clock.t) is not None:
                break
    finally:
        m.stop("stopped")
        m.ledger.close()


class _Clock:
    t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def wake(self) -> None:
        """Nothing waits."""


def test_the_walk_finds_the_optional_keys() -> None:
    paths = {p for name, p in CASES if name == "mini.yaml"}
    assert ("couplings", "structures-to-cg", "max_pending") in paths
    assert ("scales", "cg", "jobs", "cganalysis", "retry") in paths
    assert ("manager",) in paths and ("machine", "node", "gpus") in paths
    assert not any(p[0] == "profiles" for p in paths)
    assert len(CASES) > 250


@pytest.mark.parametrize("chunk", range(8))
def test_each_optional_key_left_out(chunk: int, tmp_path: Path) -> None:
    failures = []
    for i, (name, path) in enumerate(itertools.islice(CASES, chunk, None, 8)):
        text = _without(name, path)
        where = f"{name} without {'.'.join(path)}"
        try:
            loaded, problems = validate_everything_text(text, name, tmp_path / f"v{i}.yaml")
            if any(p.severity == "error" for p in problems):
                assert all(p.location is not None for p in problems), where
                continue
            for profile in loaded:
                compiled = compile_loaded(loaded[profile])
                report(loaded[profile].spec, compiled)
            local = compile_loaded(load_spec_text(text, name))  # the default profile
            simulate(local.plan, Options(hours=1.0, items_per_hour=200.0))
            run_dir = tmp_path / f"run{i}"
            run_dir.mkdir()
            _ticks(local.plan, run_dir)
        except SpecErrors as err:
            if not all(e.location is not None for e in err.errors):
                failures.append(f"{where}: unlocated {err}")
        except Exception as exc:
            failures.append(f"{where}: {type(exc).__name__}: {exc}")
    assert failures == []


def validate_everything_text(text: str, name: str, path: Path):  # type: ignore[no-untyped-def]
    path.write_text(text, encoding="utf-8")
    return validate_everything(path)
