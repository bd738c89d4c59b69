"""`mummi diff WORKSPACE NEW_SPEC` on a mini campaign while it runs (its jobs counted from the
ledger, the manager frozen) and once it has finished."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SPECS
from tests.integration.live import Running, attempts, pipelines, wait_for
from tests.integration.test_campaign import run_cli

pytestmark = pytest.mark.slow
MINI = SPECS / "mini.yaml"
# The local profile's cganalysis walltime and the sampler's k.
WALLTIME = ('            resources: {cores_per_task: 1}\n            walltime: "00:02:00"',
            '            resources: {cores_per_task: 1}\n            walltime: "00:03:00"')
K = ("        dim: 8\n        warmup:", "        dim: 8\n        k: 5\n        warmup:")
GENERATOR = ("--count 400 --every 0.05", "--count 500 --every 0.05")


def edited(tmp_path: Path, *edits: tuple[str, str], name: str = "new.yaml") -> Path:
    text = MINI.read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    out = tmp_path / name
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    live = Running(tmp_path_factory.mktemp("diff-ws"))
    yield live
    live.kill()


def plural(n: int) -> str:
    return "" if n == 1 else "s"


def diff(ws: Path, spec: Path, *args: str) -> tuple[int, dict[str, object]]:
    proc = run_cli("diff", str(ws), str(spec), "--json", *args, cwd=spec.parent)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_on_a_running_campaign_the_queued_and_running_jobs_are_counted(
        campaign: Running, tmp_path: Path) -> None:
    new = edited(tmp_path, WALLTIME, K)
    ws = campaign.ws
    wait_for("a simulation running", lambda: attempts(ws).get("cganalysis", {}).get("running")
             if (ws / "status.json").exists() else None)
    with campaign.frozen():
        jobs = attempts(ws)["cganalysis"]
        sims = pipelines(ws)["structures-to-cg"]
        checkpoint = (ws / "checkpoints" / "sampler.npz").exists()
        code, doc = diff(ws, new)
        text = run_cli("diff", str(ws), str(new), cwd=tmp_path).stdout
        same, same_doc = diff(ws, MINI)
        page = run_cli("report", str(ws), "-o", str(tmp_path / "report.html"), cwd=tmp_path)
    assert code == 1 and doc["state"] == "running" and doc["accepted"] is False
    queued = jobs["submitting"] + jobs["queued"]
    later = sims["selected"] + sims["setup"] + sims["ready"]
    assert doc["jobs"] == {"cganalysis": {
        "role": "simulation", "kind": "changed", "fields": ["walltime"], "queued": queued,
        "running": jobs["running"], "later": later,
        "effect": f"{queued + jobs['running']} submitted attempt{plural(queued + jobs['running'])} "
                  f"keep the settings they were submitted with; {later} "
                  f"selection{plural(later)} not there yet would run with the new ones"}}
    assert doc["selectors"]["sampler"]["fields"] == ["k"]
    assert doc["selectors"]["sampler"]["resumes"] is not checkpoint
    assert doc["restarts"] == ["the manager: it reads plan.json once, when it starts"]
    assert doc["verdict"][0].startswith("the workspace refuses this plan: a workspace takes "
                                        "only the plan that started its campaign")
    assert "stop this campaign (Ctrl-C to its `mummi run`)" in doc["verdict"][2]
    paths = [(c["path"], c["old"], c["new"]) for c in doc["plan"]["changes"]]
    assert paths == [("scales.cg.jobs.cganalysis.walltime", 120.0, 180.0),
                     ("selectors.sampler.k", 10, 5)]
    assert doc["plan"]["changes"][0]["new_at"]["line"] == 154
    row = re.search(r"^  cganalysis\s+simulation\s+(\d+)\s+(\d+)\s+(\d+)\s+walltime$", text,
                    re.MULTILINE)
    assert row and row.groups() == (str(queued), str(jobs["running"]), str(later)), text
    assert text.startswith("campaign mini-mummi (running)\n")
    # The spec the campaign runs is no change at all.
    assert same == 0 and same_doc["accepted"] and same_doc["jobs"] == {}
    assert same_doc["restarts"] == [] and same_doc["plan"]["changes"] == []
    # The report page reads a running campaign as well.
    assert page.returncode == 0, page.stderr
    assert '<b class="running">running</b>' in (tmp_path / "report.html").read_text()


def test_on_a_finished_campaign_nothing_is_live_and_the_checkpoint_says_no(
        campaign: Running, tmp_path: Path) -> None:
    assert campaign.finish() == 0, campaign.output()
    ws = campaign.ws
    code, doc = diff(ws, edited(tmp_path, WALLTIME, K))
    assert code == 1 and doc["state"] == "complete"
    assert doc["jobs"]["cganalysis"]["effect"] == \
        "none of its jobs is queued or running, and no selection waits for it"
    sampler = doc["selectors"]["sampler"]
    assert not sampler["resumes"]
    assert "written with a different selector config" in sampler["why"]
    assert "the manager would refuse to start" in sampler["why"]
    assert doc["verdict"][1].startswith("this campaign is complete; to run the new spec: "
                                        "`mummi run ")
    # The persistent generator's command: it must be restarted to see it.
    code, doc = diff(ws, edited(tmp_path, GENERATOR, name="gen.yaml"))
    assert doc["jobs"]["generator"]["fields"] == ["command"]
    assert doc["restarts"][1].startswith("persistent jobs generator: they read their settings")
    # A spec without the campaign's profile, and options that make no sense for a workspace.
    base = tmp_path / "noprofile.yaml"
    base.write_text(MINI.read_text().split("\nprofiles:\n")[0] + "\n")
    for args, message in (
            ((str(ws), str(base)), f"{base}: no profile 'local', which the campaign in {ws} "
                                   "runs; choose one with --profile NAME or --no-profile"),
            ((str(ws), str(MINI), "--old-profile", "local"), "--old-profile: "),
            ((str(tmp_path), str(MINI)), "no ledger.sqlite; is this a campaign workspace")):
        proc = run_cli("diff", *args, cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
    code, doc = diff(ws, base, "--no-profile")
    assert code == 1 and doc["plan"]["new"]["profile"] is None
