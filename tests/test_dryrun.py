"""`mummi dry-run`: the job table a reader can check by hand, through the dry-run scheduler."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from mummi_spec.cli import main
from mummi_spec.runtime.jobs import render_command

SPEC = str(Path(__file__).resolve().parent.parent / "specs" / "rasraf-3scale.yaml")


def test_json_report_has_the_hand_checkable_numbers(capsys):
    assert main(["dry-run", SPEC, "--no-profile", "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    most = {j["job"]: j["max_concurrent"] for j in rep["jobs"]}
    assert most == {"continuum": 1, "createsim": 414, "cg": 4112, "backmapping": 415,
                    "aa": 1762}  # checked by hand in test_compile.py
    assert rep["maestro_steps"] == ["prepare", "manager"]
    sent = [s["job"] for s in rep["submissions"]]
    assert sent[0] == "continuum" and sorted(sent[1:]) == ["aa", "backmapping", "cg",
                                                           "createsim"]
    assert {(e["from"], e["to"], e["kind"]) for e in rep["graph"]} == {
        ("macro", "cg", "coupling"), ("cg", "aa", "coupling"), ("cg", "macro", "feedback"),
        ("aa", "cg", "feedback")}


def test_text_report_lists_every_job_type(capsys):
    assert main(["dry-run", SPEC, "--no-profile"]) == 0
    out = capsys.readouterr().out
    assert "nothing is submitted" in out
    assert "979 compute nodes" in out and "CPU-only pool 19,896 cores" in out
    assert ("829 node(s): 6 GPUs and 42 cores free -> 6 GPU slots (18 cores held), 24 cores "
            "for CPU-only jobs") in out
    assert ("150 node(s) beside continuum: 6 GPUs and 18 cores free -> 6 GPU slots (18 cores "
            "held), 0 cores for CPU-only jobs") in out
    for job in ("continuum", "createsim", "cg", "backmapping", "aa"):
        assert f"[{job}]" in out


@pytest.mark.parametrize(("fmt", "marker"), [("dot", "digraph"), ("mermaid", "flowchart LR")])
def test_graph_formats(fmt, marker, capsys):
    assert main(["dry-run", SPEC, "--format", fmt]) == 0
    assert capsys.readouterr().out.startswith(marker)


def test_data_values_are_shell_quoted():
    nasty = "x'; rm -rf / #$(touch pwned)"
    cmd = render_command("run --id $(CANDIDATE) --out $(WORKDIR)",
                         {"CANDIDATE": nasty, "WORKDIR": "a b"})
    assert shlex.split(cmd) == ["run", "--id", nasty, "--out", "a b"]
