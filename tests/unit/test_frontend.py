"""Loader traps, variables, profiles and the model: the front end's own logic."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mummi_spec.cli import main
from mummi_spec.errors import SpecErrors
from mummi_spec.frontend import NO_PROFILE, load_spec, load_spec_text
from mummi_spec.loader import load_text
from mummi_spec.units import parse_duration

ROOT = Path(__file__).resolve().parents[2]
BASE = (ROOT / "tests" / "errors" / "unknown-selector.yaml").read_text().replace("pik", "pick")


def test_yaml11_traps_stay_strings():
    data, _ = load_text("a: 1:30:00\nb: on\nc: yes\nd: 017\ne: 2024-01-02\nf: 12\ng: true\n"
                        "h: 1.5\ni: null\n", "t.yaml")
    assert data == {"a": "1:30:00", "b": "on", "c": "yes", "d": "017", "e": "2024-01-02",
                    "f": 12, "g": True, "h": 1.5, "i": None}


def test_unquoted_walltime_is_a_duration():
    spec = load_spec_text(BASE.replace('walltime: "4:00:00"', "walltime: 4:00:00"), "x.yaml").spec
    assert spec.job("md").walltime == 4 * 3600


def test_every_key_and_value_is_located():
    _, smap = load_text("a:\n  b: [1, {c: 2}]\n", "t.yaml")
    assert str(smap.keys[("a", "b")]) == "t.yaml:2:3"
    assert str(smap.values[("a", "b", 1, "c")]) == "t.yaml:2:14"
    assert str(smap.locate(("a", "b", 1, "c", "missing"))) == "t.yaml:2:14"


@pytest.mark.parametrize(("text", "seconds"), [("1:30:00", 5400), ("1-00:00:00", 86400),
                                               ("90s", 90), ("1.5h", 5400), ("10m", 600),
                                               ("2d", 172800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_variables_from_environment_retype_plain_scalars():
    text = BASE.replace("  nodes: 4\n", "  nodes: ${NODES}\n").replace(
        "workspace: ./ws", 'workspace: "${ROOT:-/scratch}/ws"')
    loaded = load_spec_text(text, "v.yaml", env={"NODES": "16"})
    assert loaded.spec.machine.nodes == 16
    assert loaded.spec.workspace == "/scratch/ws"
    assert ("NODES", "16", "environment") in loaded.spec.variables
    assert ("ROOT", "/scratch", "default") in loaded.spec.variables


def test_quoted_variable_stays_a_string_and_fails_the_schema():
    text = BASE.replace("  nodes: 4\n", '  nodes: "${NODES}"\n')
    with pytest.raises(SpecErrors, match="not of type 'integer'"):
        load_spec_text(text, "v.yaml", env={"NODES": "16"})


def test_shell_escape_is_left_for_the_shell():
    text = BASE.replace("command: md $(SETUP_DIR)", "command: md $(SETUP_DIR) $${HOME}")
    assert load_spec_text(text, "e.yaml", env={}).spec.job("md").command.endswith("${HOME}")


def test_profile_merges_and_relocates():
    text = BASE + "profiles:\n  small:\n    machine: {nodes: 2}\n"
    base = load_spec_text(text, "p.yaml", profile=NO_PROFILE)
    small = load_spec_text(text, "p.yaml", profile="small")
    assert (base.spec.machine.nodes, small.spec.machine.nodes) == (4, 2)
    assert small.spec.machine.cores == base.spec.machine.cores
    assert small.smap.locate(("machine", "nodes")).line == text.count("\n")


def test_a_profile_may_add_sections_the_base_leaves_out_but_no_new_names():
    assert "\nmanager:" not in BASE and "\nenv:" not in BASE
    text = BASE + ("profiles:\n  small:\n    manager: {tick: 2s}\n    env: {OMP_NUM_THREADS: 1}\n"
                   "    scheduler: {options: {max_workers: 3}}\n")
    small = load_spec_text(text, "p.yaml", profile="small").spec
    assert small.manager.tick == 2.0 and dict(small.env) == {"OMP_NUM_THREADS": "1"}
    assert dict(small.scheduler.options) == {"max_workers": 3}
    with pytest.raises(SpecErrors, match=r"profile overrides \$\.stores\.extra, which the base "
                                         r"spec does not define"):
        load_spec_text(BASE + "profiles:\n  x:\n    stores: {extra: {backend: redis}}\n",
                       "p.yaml", profile="x")
    with pytest.raises(SpecErrors, match=r"\$\.feedback\.again, which the base spec"):
        load_spec_text(BASE + "profiles:\n  x:\n    feedback: {again: {period: 1m}}\n",
                       "p.yaml", profile="x")


def test_default_profile_applies_unless_disabled():
    text = BASE.replace("workspace: ./ws\n", "workspace: ./ws\ndefault_profile: small\n") + \
        "profiles:\n  small:\n    machine: {nodes: 2}\n"
    assert load_spec_text(text, "p.yaml").spec.profile == "small"
    assert load_spec_text(text, "p.yaml", profile=NO_PROFILE).spec.profile is None


@pytest.mark.parametrize("spec", ["mini.yaml", "rasraf-3scale.yaml"])
@pytest.mark.parametrize("profile", [NO_PROFILE, "local"])
def test_reference_specs_validate(spec, profile):
    loaded = load_spec(ROOT / "specs" / spec, profile=profile)
    assert not loaded.warnings
    assert loaded.spec.profile == (profile or None)


def test_reference_specs_match_the_papers():
    summit = load_spec(ROOT / "specs" / "rasraf-3scale.yaml", profile=NO_PROFILE).spec
    assert (summit.machine.cores, summit.machine.gpus) == (42, 6)
    cont = summit.job("continuum").resources
    assert (cont.nodes, cont.tasks) == (150, 3600)
    assert summit.job("createsim").resources.cores == 24
    assert summit.job("backmapping").resources.cores == 18
    patch = summit.selector("patch-selector")
    assert (patch.dim, len(patch.queues), {q.capacity for q in patch.queues}) == (9, 5, {35000})
    assert summit.selector("frame-selector").kind == "binned"
    assert {f.period for f in summit.feedback} == {600.0}
    mini = load_spec(ROOT / "specs" / "mini.yaml", profile=NO_PROFILE).spec
    assert (mini.machine.cores, mini.machine.gpus) == (56, 8)
    assert mini.selector("sampler").dim == 32
    for name in ("createsim", "cganalysis"):
        r = mini.job(name).resources
        assert (r.gpus, r.cores) == (1, 6)
    assert mini.job("cganalysis").stop == "600 ns"


def test_validate_prints_a_summary(capsys):
    assert main(["validate", str(ROOT / "specs" / "rasraf-3scale.yaml"), "--no-profile"]) == 0
    out = capsys.readouterr().out
    assert "createsim" in out and "frame-selector: binned, 3-D" in out
    # MuMMI ran its GPU simulations in Flux sub-instances; the summary says which
    nested = [line.split()[1] for line in out.splitlines() if "sub-instance" in line]
    assert nested == ["cg", "aa"]


_lines = BASE.splitlines(keepends=True)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_specs_exit_cleanly(data, tmp_path_factory, capsys):
    """Deleting, duplicating or corrupting lines never yields anything but exit 0 or 2."""
    lines = list(_lines)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "garble", "indent", "value"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "garble":
            lines[i] = data.draw(st.text(max_size=20)) + "\n"
        elif op == "indent":
            lines[i] = "  " + lines[i]
        else:
            key = lines[i].split(":")[0]
            value = data.draw(st.sampled_from(["-1", "0", "[]", "{}", "x", "1:00", "null",
                                               "99999999999", "true", "'${X}'", "$(NOPE)"]))
            lines[i] = f"{key}: {value}\n"
        if not lines:
            break
    path = tmp_path_factory.mktemp("fuzz") / "spec.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_raw_bytes_never_crash(raw, tmp_path_factory, capsys):
    path = tmp_path_factory.mktemp("bytes") / "spec.yaml"
    path.write_bytes(raw)
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "internal error" not in err


def test_variable_holding_broken_yaml_is_a_located_error_not_a_crash():
    text = BASE.replace("  nodes: 4\n", "  nodes: ${NODES}\n")
    with pytest.raises(SpecErrors, match="not of type 'integer'"):
        load_spec_text(text, "v.yaml", env={"NODES": "a: ["})


def test_an_empty_profile_is_a_located_error_not_a_crash():
    text = (ROOT / "specs" / "rasraf-3scale.yaml").read_text()
    start = text.index("\n  local:\n") + 1
    end = text.index("\n", text.index("\n  local:\n") + 1)
    broken = text[:start] + "  local: null\n" + "\n".join(
        line for line in text[end + 1:].splitlines() if not line.startswith("    "))
    with pytest.raises(SpecErrors, match=r"profiles\.local: None is not of type 'object'"):
        load_spec_text(broken, "p.yaml", env={})


def test_a_user_aggregate_is_imported_from_the_spec_s_pythonpath(tmp_path, capsys):
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "labfold.py").write_text(
        "def fold(values, weights, previous):\n    return values.mean(axis=0)\n\n"
        "def old(values, weights):\n    return values.mean(axis=0)\n")
    text = BASE.replace("aggregate: mean", 'aggregate: "labfold:fold"') + \
        "pythonpath: [apps]\n"
    spec = tmp_path / "lab.yaml"
    spec.write_text(text)
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    assert main(["validate", str(spec)]) == 0  # relative to the spec, wherever mummi runs
    assert load_spec(spec).spec.pythonpath == (str(tmp_path / "apps"),)
    spec.write_text(text.replace("labfold:fold", "labfold:old"))
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "'labfold:old' must take (values, weights, previous)" in err
    assert f"{spec}:" in err and "Traceback" not in err
