"""A workspace scribbled on or misplaced: a status file that is not one, a workspace that is a
file, a path Slurm's command line cannot take, a damaged ledger. Each is one clear line and
exit 2, never an internal error; a path Slurm can take runs there."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mummi_spec.cli import main
from mummi_spec.runtime.ledger import JobRow, Ledger
from mummi_spec.runtime.states import AttemptState
from tests.conftest import SPECS
from tests.integration.test_campaign import check_campaign, run_cli

SPEC = str(SPECS / "mini.yaml")


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mummi:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.mark.parametrize(("text", "problem"), [
    ("[1, 2, 3]", "a JSON list, not an object"),
    ('{"state": 5}', "'state' is 5, not one of running, complete, stopped, failed"),
    ('{"state": "done"}', "'state' is \"done\", not one of running, complete, stopped, failed"),
    ('{"state": "complete", "sims": ["done"]}',
     "'sims' is [\"done\"], not what the manager writes there"),
    ('{"state": "running", "candidates": {"a.b": {"ingested": 1}}}',
     "'candidates' is {\"a.b\": {\"ingested\": 1}}, not what the manager writes there"),
    ("{half", "not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
])
def test_status_of_a_status_file_the_manager_did_not_write(tmp_path, capsys, text, problem):
    (tmp_path / "status.json").write_text(text)
    assert main(["status", str(tmp_path)]) == 2
    assert _one_line_error(capsys) == (
        f"mummi: error: {tmp_path}/status.json: not a status the manager wrote ({problem}); "
        "delete it: the manager writes it afresh while the campaign runs (`mummi run`)")


@pytest.fixture
def build(tmp_path, monkeypatch, capsys) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUMMI_WORKSPACE", raising=False)
    assert main(["compile", SPEC]) == 0
    capsys.readouterr()
    return tmp_path / "build"


@pytest.mark.parametrize("under", ["", "/ws"])
def test_a_workspace_that_is_a_file(build, tmp_path, capsys, under):
    (tmp_path / "notes").write_text("not a workspace")
    assert main(["run", str(build), "--workspace", f"notes{under}"]) == 2
    assert _one_line_error(capsys) == (
        f"mummi: error: workspace notes{under}: notes is a file, not a directory; choose "
        "another --workspace (or the spec's workspace:)")
    assert (tmp_path / "notes").read_text() == "not a workspace"


def _damage_the_jobs_table(ledger: Path) -> None:
    """Overwrite the head of the jobs table's root page, as a bad disk block would."""
    db = sqlite3.connect(ledger)
    (root,), (size,) = (db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'"
                                   ).fetchone(), db.execute("PRAGMA page_size").fetchone())
    db.close()
    with open(ledger, "r+b") as fh:
        fh.seek((root - 1) * size + 8)
        fh.write(b"\xff" * 64)


def test_a_damaged_ledger_is_named_with_what_to_do(build, tmp_path, capsys):
    ws = tmp_path / "workspace" / "mini-mummi-local"
    ledger = Ledger(ws / "ledger.sqlite")
    for i in range(300):  # rows over several pages, as a campaign's
        ledger.add_job(JobRow(f"cg-{i:06d}.cganalysis.1", "cganalysis", None, 1,
                              AttemptState.SUBMITTING, None, str(ws / "runs" / f"{i}"), 1, 1),
                       0.0)
    ledger.close()  # its log checkpointed into the file
    _damage_the_jobs_table(ws / "ledger.sqlite")
    assert main(["run", str(build)]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"mummi: error: {ws}/ledger.sqlite: the ledger is damaged (")
    assert line.endswith(
        "); restore it from a copy, or salvage what SQLite can read (`sqlite3 ledger.sqlite "
        ".recover | sqlite3 recovered.sqlite`, then move recovered.sqlite over it); or start "
        "the campaign afresh in another --workspace")
    assert not (ws / "maestro").exists()  # refused before Maestro started


def test_slurm_refuses_a_workspace_path_with_a_space_before_submitting(build, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setenv("MUMMI_SCHEDULER", "slurm")
    assert main(["compile", SPEC]) == 0
    capsys.readouterr()
    ws = tmp_path / "my campaign"
    assert main(["run", str(build), "--workspace", str(ws)]) == 2
    assert _one_line_error(capsys) == (
        f"mummi: error: workspace '{ws}' holds a space or shell character, which the slurm "
        "scheduler cannot take: Maestro passes paths to its command line unquoted, so not one "
        "step would start; choose a workspace path of letters, digits and _.,:@%+=/- "
        "(--workspace or the spec's workspace:)")
    assert not ws.exists()


def test_a_build_and_spec_in_a_directory_with_a_space_run_on_slurm(
        slurm_cluster, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("space") / "my campaigns"
    cwd.mkdir()
    spec = cwd / "mini.yaml"
    spec.write_text((SPECS / "mini.yaml").read_text().replace(
        "workspace: ./workspace/mini-mummi-local", f"workspace: {cwd.parent}/ws"))
    proc = run_cli("run", str(spec), cwd=cwd, MUMMI_SCHEDULER="slurm",
                   MUMMI_QUEUE=slurm_cluster["partition"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    c = check_campaign(cwd)
    assert c.plan.scheduler.type == "slurm" and " " in str(c.plan_path)
    assert json.loads((cwd.parent / "ws" / "status.json").read_text())["state"] == "complete"
