"""The package imports one way: no cycles, and each layer only what lies below it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mummi_spec import digraph

ROOT = Path(__file__).resolve().parent.parent
# Source folders by the package they install as (pyproject's package-dir mapping).
FOLDERS = {"mummi_spec": ROOT / "mummi_spec", "mummi_spec.compiler": ROOT / "compiler",
           "mummi_spec.runtime": ROOT / "runtime"}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            if package == "mummi_spec" and path.parent != folder and \
                    path.parent.name != "cli":
                continue  # only mummi_spec's own files and its cli package here
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of the package ``name`` imports, at any depth of its code."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from pkg import mod` depends on the submodule; `from pkg import name`, on pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES}
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_walk_sees_the_whole_package():
    assert {"mummi_spec.cli", "mummi_spec.runtime.manager", "mummi_spec.compiler.compile",
            "mummi_spec.plan", "mummi_spec.runtime.schedulers.slurm"} <= set(GRAPH)
    assert "mummi_spec.runtime.book" in GRAPH["mummi_spec.runtime.manager"]


def test_no_import_cycle():
    cycle = digraph.find_cycle({n: sorted(e) for n, e in GRAPH.items()})
    assert cycle == [], " -> ".join(u for u, _ in cycle)


def _layer(module: str) -> str:
    if module.startswith("mummi_spec.cli"):
        return "cli"
    if module.startswith("mummi_spec.runtime.toy"):
        return "apps"  # applications, on the application interface alone
    for prefix in ("mummi_spec.runtime", "mummi_spec.compiler"):
        if module.startswith(prefix):
            return prefix.rpartition(".")[2]
    if module in ("mummi_spec", "mummi_spec.errors", "mummi_spec.units", "mummi_spec.plan",
                  "mummi_spec.usercode"):
        return "core"
    if module == "mummi_spec.app":
        return "app"
    if module in ("mummi_spec.dryrun", "mummi_spec.wsdiff", "mummi_spec.__main__"):
        return "commands"
    return "front end"


# What each layer may import besides itself.
ALLOWED = {
    "core": {"core"},
    "front end": {"core"},
    "compiler": {"core", "front end"},
    "runtime": {"core"},
    "app": {"core", "runtime"},  # what applications import: never the front end
    "apps": {"core", "app"},
    "commands": {"core", "front end", "compiler", "runtime", "app", "apps", "cli"},
    "cli": {"core", "front end", "compiler", "runtime", "app", "commands"},
}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_each_layer_imports_only_what_lies_below_it(module: str):
    layer = _layer(module)
    wrong = sorted(m for m in GRAPH[module]
                   if _layer(m) != layer and _layer(m) not in ALLOWED[layer])
    # mummi_spec/__init__ reaches the front end lazily (PEP 562) for load_spec only.
    if module == "mummi_spec":
        wrong = [m for m in wrong if m != "mummi_spec.frontend"]
    assert wrong == [], f"{module} ({layer}) imports {wrong}"


def test_only_main_imports_the_commands():
    for name, targets in GRAPH.items():
        if name.startswith("mummi_spec.cli.") and name != "mummi_spec.cli._shared":
            assert "mummi_spec.cli" not in targets, f"{name} imports main's module"


def test_applications_load_neither_yaml_nor_jsonschema():
    # What a job's own code imports: the item format and the plan.
    code = ("import sys, mummi_spec.runtime.records, mummi_spec.plan, "
            "mummi_spec.runtime.campaign, mummi_spec.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('yaml', 'jsonschema', 'jinja2', 'maestrowf')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
