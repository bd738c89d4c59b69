"""No package source runs a shell or evaluates code: eval/exec/os.system/os.popen/shell=True."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE_DIRS = ("mummi_spec", "compiler", "runtime")
# Calls that hand a string to a shell or to the interpreter: data in it would be code.
BANNED_CALLS = frozenset({
    "eval", "exec", "compile", "os.system", "os.popen", "os.execl", "os.execlp", "os.spawnl",
    "subprocess.getoutput", "subprocess.getstatusoutput", "pty.spawn",
})
# (relative path, call) -> why it is safe. Empty: no use is needed today.
ALLOWED: dict[tuple[str, str], str] = {}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def findings(source: str, rel: str) -> list[str]:
    """Every banned call or ``shell=<anything but False>`` in one module, as ``file:line: what``."""
    out = []
    for node in ast.walk(ast.parse(source, rel)):
        if isinstance(node, ast.ImportFrom):  # `from os import system` hides the dotted name
            out += [f"{rel}:{node.lineno}: import of {node.module}.{a.name}" for a in node.names
                    if f"{node.module}.{a.name}" in BANNED_CALLS]
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in BANNED_CALLS and (rel, name) not in ALLOWED:
            out.append(f"{rel}:{node.lineno}: call to {name}")
        for kw in node.keywords:
            literal_false = isinstance(kw.value, ast.Constant) and kw.value.value is False
            if kw.arg == "shell" and not literal_false:
                out.append(f"{rel}:{node.lineno}: shell={ast.unparse(kw.value)}")
    return out


def _sources() -> list[Path]:
    files = [p for d in PACKAGE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 50, "the package sources were not found"
    return files


def test_no_package_module_runs_a_shell_or_evaluates_code() -> None:
    found = [f for p in _sources()
             for f in findings(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert found == [], "\n".join(found)


def test_every_allow_list_entry_is_still_needed() -> None:
    for rel, call in ALLOWED:
        assert any(f.endswith(f"call to {call}") for f in
                   findings((ROOT / rel).read_text(encoding="utf-8"), "")), (rel, call)


@pytest.mark.parametrize("code", [
    "eval(x)", "exec(code)", "os.system(cmd)", "os.popen(cmd)",
    "subprocess.run(cmd, shell=True)", "subprocess.Popen(cmd, shell=flag)",
    "subprocess.getoutput(cmd)", "from os import system",
])
def test_the_check_catches(code: str) -> None:
    assert findings(code, "x.py"), code


def test_the_check_lets_safe_calls_through() -> None:
    assert findings("subprocess.run(['ls'], shell=False)\nre.compile('x')\nobj.eval()",
                    "x.py") == []
