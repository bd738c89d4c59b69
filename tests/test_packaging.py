"""The wheel holds every sub-package and data file under one import root, and runs `mummi`.

An editable install imports a sub-package that `packages` forgot; the wheel silently drops it.
So build the real wheel, compare it with the source tree, and run `mummi` from a fresh venv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import mummi_spec

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"mummi_spec": "mummi_spec", "compiler": "mummi_spec/compiler",
          "runtime": "mummi_spec/runtime", "templates": "mummi_spec/templates"}


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds and installs."""
    out = tmp_path_factory.mktemp("wheel")
    # From a copy: setuptools leaves build/ in the tree it builds, and a checkout's build/
    # is where `mummi run specs/mini.yaml` compiles (it refuses one it did not write).
    src = tmp_path_factory.mktemp("source") / "mummi-spec"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".services", "build", "dist", "workspace", "mummi-workspace*",
        "__pycache__", "*.egg-info"))
    had_build = (ROOT / "build").exists()
    proc = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", src, "-w", out)
    assert (ROOT / "build").exists() == had_build  # the checkout's build/ left as it was
    assert proc.returncode == 0, proc.stderr
    return next(out.glob("*.whl"))


def test_wheel_contains_every_module_and_nothing_else(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    roots = {n.split("/")[0] for n in names}
    assert roots == {"mummi_spec", wheel.name.split("-py3")[0] + ".dist-info"}
    expected = set()
    for src, dest in MAPPED.items():
        for path in (ROOT / src).rglob("*"):
            if path.suffix in (".py", ".j2", ".json") and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT / src).as_posix()
                expected.add(f"{dest}/{rel}")
    assert expected - names == set()


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_gives_a_working_mummi(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr
    # Outside the checkout, so that the source tree cannot stand in for what was installed.
    work = tmp_path / "work"
    work.mkdir()
    where = run(venv / "bin" / "python", "-c", "import mummi_spec; print(mummi_spec.__file__)",
                cwd=work)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    mummi = venv / "bin" / "mummi"
    version = run(mummi, "--version", cwd=work)
    assert version.stdout.strip() == f"mummi-spec {mummi_spec.__version__}", version.stderr
    valid = run(mummi, "validate", ROOT / "specs" / "mini.yaml", cwd=work)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    built = run(mummi, "compile", ROOT / "specs" / "mini.yaml", "-o", work / "build", cwd=work)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (work / "build" / "study.yaml").is_file() and (work / "build" / "plan.json").is_file()
