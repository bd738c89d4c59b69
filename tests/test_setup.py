"""scripts/setup: the README's first command makes the project venv, from Debian's Python too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import mummi_spec

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = Path("/usr/bin/python3")
# A machine whose only Python is Debian's: nothing of pyenv's or /usr/local's on the PATH.
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
NOBODY = "65534"


def checkout(dest: Path) -> Path:
    """A copy of this checkout's files as a fresh clone of it would have them (no .venv)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed, and it lists the checkout's files")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout")
    for name in filter(None, listed.stdout.decode().split("\0")):
        src = ROOT / name
        if src.is_file():  # a file deleted from the work tree but still in the index is not
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


def env_without_python_choice(**extra: str) -> dict[str, str]:
    """This environment (pip's index and cache included) minus any choice of Python or venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHON", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, **extra}


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def python_info(python: str | Path) -> tuple[str, str, bool] | None:
    """(base prefix, version, has ensurepip) of an interpreter >= 3.10; None for older ones."""
    probe = subprocess.run(
        [str(python), "-c", "import sys, importlib.util as u; sys.version_info >= (3, 10) and "
         "print(sys.base_prefix, sys.version.split()[0], bool(u.find_spec('ensurepip')))"],
        capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0 or not probe.stdout.strip():
        return None
    prefix, version, pip = probe.stdout.split()
    return prefix, version, pip == "True"


def readme_first_command() -> str:
    """The command of the README's 'set up and run the main campaign' row."""
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| set up and run the main campaign"):
            return line.split("`")[-2]
    raise AssertionError("README.md has no 'set up and run the main campaign' row")


@pytest.mark.slow
def test_readme_first_command_sets_up_on_debians_own_python(tmp_path: Path) -> None:
    if not (Path("/etc/debian_version").exists() and DEBIAN_PYTHON.exists()):
        pytest.skip("not a Debian machine with /usr/bin/python3")
    info = python_info(DEBIAN_PYTHON)
    if info is None:
        pytest.skip("Debian's /usr/bin/python3 here is older than 3.10")
    if not info[2] and os.geteuid() != 0:
        pytest.skip("python3-venv is not installed, and only root may install it")
    setup, rest = readme_first_command().split(" && ")
    assert rest == ".venv/bin/mummi run specs/mini.yaml"
    clone = checkout(tmp_path / "clone")
    # What a failed `python3 -m venv` leaves behind when python3-venv is missing: no pip.
    run([str(DEBIAN_PYTHON), "-m", "venv", "--without-pip", ".venv"], clone, os.environ.copy())
    env = env_without_python_choice(PATH=DEBIAN_PATH)
    made = run(["bash", "-c", setup], clone, env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "recreating" in made.stdout
    assert made.stdout.splitlines()[-1].startswith(f"setup: mummi-spec {mummi_spec.__version__}")

    venv_python = clone / ".venv" / "bin" / "python"
    assert venv_python.resolve() == DEBIAN_PYTHON.resolve()
    assert python_info(venv_python) == info
    where = run([str(venv_python), "-c", "import mummi_spec; print(mummi_spec.__file__)"],
                tmp_path, env)
    assert Path(where.stdout.strip()).is_relative_to(clone), where.stdout + where.stderr  # editable
    version = run([".venv/bin/mummi", "--version"], clone, env)
    assert version.stdout.strip() == f"mummi-spec {mummi_spec.__version__}", version.stderr
    valid = run([".venv/bin/mummi", "validate", "specs/mini.yaml"], clone, env)
    assert valid.returncode == 0, valid.stdout + valid.stderr

    # A second run with the same Python named keeps the venv and changes nothing.
    (clone / ".venv" / "kept").touch()
    again = run(["scripts/setup"], clone, env_without_python_choice(PYTHON=str(DEBIAN_PYTHON)))
    assert again.returncode == 0, again.stdout + again.stderr
    assert (clone / ".venv" / "kept").exists(), again.stdout


def old_python() -> str | None:
    """Some Python older than 3.10 on this machine, if there is one."""
    found = [shutil.which(f"python3.{minor}") for minor in range(9, 5, -1)]
    found += [str(p) for p in sorted(Path.home().glob(".pyenv/versions/*/bin/python3"))]
    for python in filter(None, found):
        probe = subprocess.run([python, "-c", "import sys; print(sys.version_info < (3, 10))"],
                               capture_output=True, text=True, timeout=30, check=False)
        if probe.stdout.strip() == "True":
            return python
    return None


def test_setup_refuses_a_python_older_than_3_10_in_one_line(tmp_path: Path) -> None:
    python = old_python()
    if python is None:
        pytest.skip("no Python older than 3.10 on this machine")
    clone = checkout(tmp_path / "clone")
    proc = run(["scripts/setup"], clone, env_without_python_choice(PYTHON=python))
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "needs 3.10 or newer" in proc.stderr and f"'{python}' is Python 3." in proc.stderr
    assert not (clone / ".venv").exists()


def test_setup_without_ensurepip_and_not_root_says_what_to_install(tmp_path: Path) -> None:
    # Debian's python3 without python3-venv: `import ensurepip` fails. A stub ensurepip that
    # fails to import, ahead of the standard library, makes such an interpreter.
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None or not DEBIAN_PYTHON.exists():
            pytest.skip("needs setpriv and /usr/bin/python3 to run setup as a user other than root")
        python = str(DEBIAN_PYTHON)
        as_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        # pytest's own temporary directories are private to root; this one is readable by all.
        base = Path(tempfile.mkdtemp(prefix="mummi-setup-"))
        base.chmod(0o755)
    else:
        python, as_user, base = sys.executable, [], tmp_path
    try:
        info = python_info(python)
        if info is None:
            pytest.skip(f"{python} is older than 3.10")
        major, minor = info[1].split(".")[:2]
        package = f"python{major}.{minor}-venv"
        (base / "stub" / "ensurepip").mkdir(parents=True)
        (base / "stub" / "ensurepip" / "__init__.py").write_text(
            "raise ModuleNotFoundError('ensurepip (stub)')\n")
        wrapper = base / "python3"
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={base / "stub"} exec {python} "$@"\n')
        wrapper.chmod(0o755)
        clone = checkout(base / "clone")
        proc = run([*as_user, "scripts/setup"], clone,
                   env_without_python_choice(PYTHON=str(wrapper)))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "cannot create a virtual environment" in proc.stderr
        assert f"install {package}" in proc.stderr
        assert not (clone / ".venv").exists()
    finally:
        if base != tmp_path:
            shutil.rmtree(base)
