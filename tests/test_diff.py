"""`mummi diff`: semantic changes located in both specs, their consequences, diff(1) exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mummi_spec.cli import main
from mummi_spec.compiler.diff import diff_files
from mummi_spec.frontend import NO_PROFILE

ROOT = Path(__file__).resolve().parent.parent
DIFF = Path(__file__).parent / "diff"
BASE = DIFF / "base.yaml"
RASRAF = ROOT / "specs" / "rasraf-3scale.yaml"
HEADER = "# an edited copy of tests/diff/base.yaml\n#\n"  # shifts every line of the copy by 2

# (edit of base.yaml, group, path, old, new, line in base.yaml); each edit keeps the line count.
EDITS = [
    ("ready_buffer: 8", "ready_buffer: 4",
     "couplings", "couplings.macro-to-micro.ready_buffer", 8, 4, 79),
    ("          cores_per_task: 2\n          gpus: 1",
     "          cores_per_task: 2\n          gpus: 2",
     "job types", "scales.micro.jobs.sim.resources.gpus", 1, 2, 58),
    ("k: 5", "k: 7", "selectors", "selectors.picker.k", 5, 7, 70),
    ("  models:\n    backend: filesystem", "  models:\n    backend: taridx",
     "stores", "stores.models.backend", "filesystem", "taridx", 26),
    ('          cores_per_task: 4\n        walltime: "01:00:00"',
     '          cores_per_task: 8\n        walltime: "01:00:00"',
     "job types", "scales.micro.jobs.setup.resources.cores_per_task", 4, 8, 51),
]


def _edited(tmp_path: Path, edits, name: str = "new.yaml", header: str = HEADER) -> Path:
    text = BASE.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    out = tmp_path / name
    out.write_text(header + text, encoding="utf-8")
    return out


def _run(capsys, *argv):
    code = main(["diff", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    hits = [i for i, line in enumerate(lines, 1) if line.rstrip() == needle]
    assert len(hits) == 1, needle
    return hits[0]


def test_reordered_reformatted_copy_is_the_same(capsys):
    d = diff_files(BASE, DIFF / "reordered.yaml")
    assert d.same and d.changes == () and d.artefacts == () and d.concurrency == ()
    code, out, err = _run(capsys, BASE, DIFF / "reordered.yaml")
    assert (code, err) == (0, "")
    assert "no differences" in out
    code, out, _ = _run(capsys, BASE, DIFF / "reordered.yaml", "--json")
    doc = json.loads(out)["base"]
    assert code == 0 and doc["same"] is True and doc["changes"] == []


def test_a_spec_against_itself_is_the_same_for_every_profile(capsys):
    assert _run(capsys, RASRAF, RASRAF)[0] == 0
    assert _run(capsys, RASRAF, RASRAF, "--no-profile")[0] == 0
    assert _run(capsys, RASRAF, RASRAF, "--old-profile", "", "--no-profile")[0] == 0


def test_changed_settings_are_grouped_and_located_in_both_specs(tmp_path):
    new = _edited(tmp_path, [(e[0], e[1]) for e in EDITS])
    d = diff_files(BASE, new)
    assert not d.same
    got = {c.path: c for c in d.changes}
    assert sorted(got) == sorted(e[3] for e in EDITS)
    for _, _, group, path, old, new_value, line in EDITS:
        c = got[path]
        assert (c.group, c.kind, c.old, c.new) == (group, "changed", old, new_value), path
        assert (c.old_at.file, c.old_at.line) == (str(BASE), line), path
        assert (c.new_at.file, c.new_at.line) == (str(new), line + 2), path
    # Groups in report order: stores, job types, couplings, selectors.
    assert [c.group for c in d.changes] == ["stores", "job types", "job types", "couplings",
                                            "selectors"]
    # Two GPUs per sim -> half as many sims; twice the cores per setup -> fewer setups. By
    # hand, node by node (9 compute nodes of 32 cores and 4 GPUs; gen holds 4 cores on one):
    # before, sims hold 2 cores per GPU, leaving 20 + 8 x 24 cores: 5 + 8 x 6 = 53 setups of
    # 4 cores; after, 1 core per GPU leaves 24 + 8 x 28: 3 + 8 x 3 = 27 setups of 8 cores.
    assert {s.name: (s.old, s.new) for s in d.concurrency} == {"setup": (53, 27),
                                                                "sim": (36, 18)}
    assert {s.name: (s.old, s.new) for s in d.totals} == {
        "gpu_hours": (432.0, 432.0), "node_hours": (120.0, 120.0)}  # 36 GPUs, 10 nodes, 12 h
    assert d.artefacts == (("jobs/setup.yaml", "changed"), ("jobs/sim.yaml", "changed"),
                           ("manifest.json", "changed"), ("plan.json", "changed"))


def test_cores_per_task_alone_changes_concurrency_and_the_job_template(tmp_path):
    new = _edited(tmp_path, [EDITS[4][:2]], header="")
    d = diff_files(BASE, new)
    assert [(c.path, c.old_at.line, c.new_at.line) for c in d.changes] == [
        ("scales.micro.jobs.setup.resources.cores_per_task", 51, 51)]
    assert [(s.name, s.old, s.new) for s in d.concurrency] == [("setup", 53, 26)]
    assert [n for n, _ in d.artefacts] == ["jobs/setup.yaml", "manifest.json", "plan.json"]


def test_text_report(tmp_path, capsys):
    new = _edited(tmp_path, [(e[0], e[1]) for e in EDITS])
    code, out, err = _run(capsys, BASE, new)
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[:2] == [f"--- {BASE} (base spec)", f"+++ {new} (base spec)"]
    i = lines.index("couplings (1 change)")
    assert lines[i + 1:i + 3] == ["  ~ couplings.macro-to-micro.ready_buffer: 8 → 4",
                                  f"      {BASE}:79 → {new}:81"]
    assert '  ~ stores.models.backend: "filesystem" → "taridx"' in lines
    assert "    setup  53 → 27" in lines and "    sim    36 → 18" in lines
    assert "  GPU-hours per allocation (12:00:00): 432 → 432 (unchanged)" in lines
    assert lines[-1] == ("  compiled artefacts that differ: jobs/setup.yaml, jobs/sim.yaml, "
                         "manifest.json, plan.json")


def test_json_matches_the_text(tmp_path, capsys):
    new = _edited(tmp_path, [(e[0], e[1]) for e in EDITS])
    _, text, _ = _run(capsys, BASE, new)
    code, out, _ = _run(capsys, BASE, new, "--json")
    whole = json.loads(out)
    assert whole["profiles"] == {} and whole["only_in"] == {}  # base.yaml has no profile
    doc = whole["base"]
    assert code == 1 and doc["same"] is False and whole["same"] is False
    assert doc["old"] == {"file": str(BASE), "profile": None}
    assert len(doc["changes"]) == len(EDITS)
    for c in doc["changes"]:
        assert f"~ {c['path']}: {json.dumps(c['old'])} → {json.dumps(c['new'])}" in text
        where = f"{c['old_at']['file']}:{c['old_at']['line']} → " \
                f"{c['new_at']['file']}:{c['new_at']['line']}"
        assert where in text
        assert f"{c['group']} (" in text
    cons = doc["consequences"]
    for job, shift in cons["max_concurrent"].items():
        assert re.search(rf"^    {job} +{shift['old']} → {shift['new']}$", text, re.M)
    assert cons["gpu_hours"] == {"old": 432.0, "new": 432.0}  # per 12 h allocation
    assert ", ".join(cons["artefacts"]) in " ".join(text.split())  # the list may wrap
    assert set(cons["artefacts"].values()) == {"changed"}


@pytest.mark.parametrize("direction", ["added", "removed"])
def test_added_and_removed_scale_job_type_coupling_and_selector(direction):
    old, new = (BASE, DIFF / "added.yaml") if direction == "added" else \
        (DIFF / "added.yaml", BASE)
    d = diff_files(old, new)
    one_sided = [(c.group, c.path) for c in d.changes if c.kind == direction]
    assert one_sided == [("scales", "scales.micro.emits.frames"), ("scales", "scales.nano"),
                         ("job types", "scales.nano.jobs.nanosim"),
                         ("couplings", "couplings.micro-to-nano"),
                         ("selectors", "selectors.frame-picker")]
    added = DIFF / "added.yaml"
    for c in d.changes:
        if c.kind != direction:
            continue
        there, nowhere = (c.new_at, c.old_at) if direction == "added" else (c.old_at, c.new_at)
        assert nowhere is None and there.file == str(added)
    job = next(c for c in d.changes if c.path == "scales.nano.jobs.nanosim")
    body = job.new if direction == "added" else job.old
    assert body["resources"] == {"nodes": 1, "tasks": 1, "cores_per_task": 2, "gpus": 1}
    at = job.new_at if direction == "added" else job.old_at
    assert at.line == _line_of(added, "      nanosim:")
    share = next(c for c in d.changes if c.path == "couplings.macro-to-micro.share.gpus")
    assert share.kind == "changed"
    shifts = {s.name: (s.old, s.new) for s in d.concurrency}
    assert shifts == ({"nanosim": (None, 18), "sim": (36, 18)} if direction == "added" else
                      {"nanosim": (18, None), "sim": (18, 36)})
    assert ("jobs/nanosim.yaml", direction) in d.artefacts


def test_removed_job_type_within_a_scale(tmp_path):
    new = _edited(tmp_path, [
        ("      setup:\n        role: setup\n"
         "        command: setup --candidate $(CANDIDATE) --outdir $(WORKDIR)\n"
         "        resources:\n          cores_per_task: 4\n        walltime: \"01:00:00\"\n", ""),
        ("    setup: setup\n", ""),
        ("        command: sim --simdir $(SETUP_DIR) --outdir $(WORKDIR)",
         "        command: sim --candidate $(CANDIDATE) --outdir $(WORKDIR)")])
    d = diff_files(BASE, new)
    got = {c.path: c for c in d.changes}
    gone = got["scales.micro.jobs.setup"]
    assert (gone.group, gone.kind, gone.old_at.line, gone.new_at) == ("job types", "removed", 47,
                                                                      None)
    assert (got["couplings.macro-to-micro.setup"].old,
            got["couplings.macro-to-micro.setup"].new) == ("setup", None)
    assert {s.name: (s.old, s.new) for s in d.concurrency} == {"setup": (53, None)}
    assert ("jobs/setup.yaml", "removed") in d.artefacts


def test_profile_against_base_points_at_the_profile_lines(capsys):
    code, out, err = _run(capsys, RASRAF, RASRAF, "--old-profile", "", "--new-profile", "local",
                          "--json")
    assert (code, err) == (1, "")
    doc = json.loads(out)
    assert (doc["old"]["profile"], doc["new"]["profile"]) == (None, "local")
    got = {c["path"]: c for c in doc["changes"]}

    def lines(path):
        c = got[path]
        return c["old_at"]["line"] if c["old_at"] else None, c["new_at"]["line"]

    machine = [c["path"] for c in doc["changes"] if c["group"] == "machine"]
    assert "machine.name" in machine and "machine.nodes" in machine
    assert got["machine.name"]["old"] == "summit" and got["machine.name"]["new"] == "laptop"
    assert lines("machine.name") == (_line_of(RASRAF, "  name: summit"),
                                     _line_of(RASRAF, "      name: laptop"))
    assert lines("machine.nodes") == (_line_of(RASRAF, "  nodes: 1000"),
                                      _line_of(RASRAF, "      nodes: 1"))
    # A store's backend set by the profile; options nobody wrote, the defaults of each side's
    # scheduler, at the line of the scheduler that has them.
    assert lines("stores.frames.backend")[1] == _line_of(
        RASRAF, "      frames: {backend: filesystem}")
    local = _line_of(RASRAF, '    scheduler: {type: "${MUMMI_SCHEDULER:-local}", '
                             'throttle: {per_second: 50}, poll: 0.2s}')
    assert lines("scheduler.options.max_workers") == (None, local)
    assert got["scheduler.options.urgency"]["old_at"]["line"] == _line_of(RASRAF, "scheduler:")
    assert lines("profile") == (None, _line_of(RASRAF, "  local:"))
    assert got["scheduler.type"]["new"] == "local"
    # --no-profile on both sides, then --new-profile for one: the same diff.
    code, out2, _ = _run(capsys, RASRAF, RASRAF, "--no-profile", "--new-profile", "local",
                         "--json")
    assert code == 1 and json.loads(out2) == doc


def test_profile_flag_applies_to_both_sides(capsys):
    code, out, _ = _run(capsys, RASRAF, RASRAF, "--profile", "local", "--old-profile", "")
    assert code == 1 and "+++ " + str(RASRAF) + " (profile local)" in out
    assert _run(capsys, RASRAF, RASRAF, "--profile", "local")[0] == 0


@pytest.mark.parametrize("side", ["old", "new"])
def test_broken_spec_on_either_side_is_a_located_error(tmp_path, capsys, side):
    bad = _edited(tmp_path, [("selector: picker", "selector: pickr")], "bad.yaml", header="")
    argv = (BASE, bad) if side == "new" else (bad, BASE)
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (2, "")
    assert f"{bad}:76:15: error: unknown selector 'pickr'" in err
    assert "hint: did you mean 'picker'?" in err and "Traceback" not in err


def test_both_sides_broken_reports_both(tmp_path, capsys):
    bad = _edited(tmp_path, [("selector: picker", "selector: pickr")], "bad.yaml", header="")
    worse = _edited(tmp_path, [("k: 5", "k: five")], "worse.yaml", header="")
    code, _, err = _run(capsys, bad, worse)
    assert code == 2
    assert f"{bad}:76:15:" in err and f"{worse}:70:" in err and err.endswith("2 errors\n")


def test_missing_file_and_unknown_profile_exit_2(tmp_path, capsys):
    code, out, err = _run(capsys, tmp_path / "nope.yaml", BASE)
    assert (code, out) == (2, "")
    assert "nope.yaml" in err and "cannot read the spec" in err and "Traceback" not in err
    code, _, err = _run(capsys, RASRAF, RASRAF, "--new-profile", "locl")
    assert code == 2 and "unknown profile 'locl'" in err and "did you mean 'local'" in err


def test_no_profile_is_the_front_ends_spelling():
    # `--old-profile ''` is passed to the front end as NO_PROFILE, the base spec.
    assert NO_PROFILE == ""
    d = diff_files(RASRAF, RASRAF, NO_PROFILE, "local")
    assert (d.old.profile, d.new.profile) == (None, "local")


def test_the_base_specs_are_compared_first_then_each_profile(tmp_path, capsys):
    # Only the base changes (60 % of the GPUs instead of all) and the local profile sets its
    # own share: comparing the default profiles alone said the campaigns were the same.
    text = (ROOT / "specs" / "mini.yaml").read_text(encoding="utf-8")
    local = "        ready_buffer: 1\n        max_pending: 4\n"
    assert text.count(local) == 1 and text.count("share: {gpus: 1.0, cores: 1.0}") == 1
    text = text.replace(local, local + "        share: {gpus: 1.0, cores: 1.0}\n")
    old, new = tmp_path / "mini.yaml", tmp_path / "mini-60.yaml"
    old.write_text(text)
    new.write_text(text.replace("    share: {gpus: 1.0, cores: 1.0}",
                                "    share: {gpus: 0.6, cores: 1.0}", 1))
    code, out, err = _run(capsys, old, new)
    assert (code, err) == (1, "")
    assert out.startswith(f"--- {old} (base spec)\n+++ {new} (base spec)\n")
    assert "  ~ couplings.structures-to-cg.share.gpus: 1.0 → 0.6" in out
    # validate's warning, in the diff too: 0.6 x 496 = 297.6 -> 297 GPUs used
    assert "  + warning: 199 of 496 GPUs stay idle with these shares" in out
    assert "  GPU-hours per allocation (36:00:00): 17,856 → 10,692" in out  # 297 x 36 h
    assert out.endswith("profile local: no differences between the two specs\n")
    code, out, _ = _run(capsys, old, new, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["same"] is False and doc["profiles"]["local"]["same"] is True
    assert [w["kind"] for w in doc["base"]["consequences"]["warnings"]] == ["added"]
