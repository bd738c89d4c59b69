"""A workspace never lives where a compile would delete it: inside the build directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mummi_spec.cli import main
from mummi_spec.runtime.ledger import Ledger
from tests.conftest import SPECS

SPEC = str(SPECS / "mini.yaml")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
          ) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUMMI_WORKSPACE", raising=False)
    assert main(["compile", SPEC]) == 0
    capsys.readouterr()
    return Path("build")


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mummi:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_compile_refuses_to_replace_a_build_holding_a_workspace(build, capsys):
    # What `mummi run spec.yaml --workspace build/ws` left before runs refused it.
    ledger = Ledger(build / "ws" / "ledger.sqlite")
    ledger.set_meta("campaign", "mini-mummi")
    ledger.close()
    before = _snapshot(build)
    assert main(["compile", SPEC]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("mummi: error: build/ws: the build directory build holds a "
                           "campaign workspace (build/ws/ledger.sqlite is its ledger)"), line
    assert "compile with -o into another directory" in line
    assert _snapshot(build) == before  # nothing written, nothing deleted
    assert sorted(p.name for p in Path().iterdir()) == ["build"]  # no half-written build


def test_compile_refuses_to_replace_a_build_holding_a_file_it_did_not_write(build, capsys):
    (build / "jobs" / "notes.txt").write_text("precious")
    assert main(["run", SPEC]) == 2  # `mummi run spec.yaml` compiles into build/ first
    line = _one_line_error(capsys)
    assert line.startswith("mummi: error: build/jobs/notes.txt: the build directory build "
                           "holds something mummi compile did not write"), line
    assert (build / "jobs" / "notes.txt").read_text() == "precious"
    (build / "jobs" / "notes.txt").unlink()
    assert main(["compile", SPEC]) == 0  # its own files it replaces as before


def test_compile_refuses_a_build_whose_manifest_it_cannot_read(build, capsys):
    (build / "manifest.json").write_text("{")
    assert main(["compile", SPEC]) == 2
    assert "build/manifest.json: unreadable" in _one_line_error(capsys)


@pytest.mark.parametrize("where", ["build/ws", "build"])
def test_run_refuses_a_workspace_inside_the_build_before_writing_anything(
        tmp_path, monkeypatch, capsys, where):
    monkeypatch.chdir(tmp_path)
    assert main(["run", SPEC, "--workspace", where]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"mummi: error: workspace {where} lies inside the build directory "
                           "build, which every compile replaces whole"), line
    assert line.endswith(f"e.g. --workspace {'ws' if where == 'build/ws' else 'workspace'}")
    assert list(tmp_path.iterdir()) == []


def test_run_of_a_build_refuses_a_workspace_inside_it(build, capsys, monkeypatch):
    monkeypatch.setenv("MUMMI_WORKSPACE", "build/ws")
    assert main(["run", "build"]) == 2
    assert "workspace build/ws lies inside the build directory build" in \
        _one_line_error(capsys)
    assert not (build / "ws").exists()
