"""The typed plan: written and read by one class, every default resolved, every setting used."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.errors import SpecErrors
from mummi_spec.frontend import NO_PROFILE, load_spec, load_spec_text
from mummi_spec.plan import NESTED_INSTANCES, FluxOptions, LocalOptions, Plan, PlanError
from mummi_spec.runtime.jobs import make_request
from mummi_spec.runtime.registry import SCHEDULERS
from mummi_spec.runtime.schedulers._common import SubmitThrottle
from mummi_spec.runtime.schedulers.base import JobRequest
from mummi_spec.runtime.schedulers.lsf import render_batch_script
from tests.conftest import SPECS

CASES = [(spec, profile) for spec in ("mini.yaml", "rasraf-3scale.yaml", "neuroreceptor.yaml")
         for profile in (NO_PROFILE, "local")]


def _spec(scheduler: str, extra: str = "", coupling: str = "max_pending: 8") -> str:
    return f"""
spec: mummi/v1
name: plan-test
machine: {{name: box, nodes: 2, walltime: "01:00:00", node: {{cores: 8, gpus: 2}}}}
scheduler: {{type: {scheduler}{extra}}}
stores: {{data: {{backend: filesystem}}}}
scales:
  coarse:
    jobs: {{gen: {{role: persistent, command: gen, walltime: "01:00:00"}}}}
    emits: {{points: {{kind: candidates, dim: 2, store: data}}}}
  fine:
    jobs:
      sim: {{role: simulation, command: sim $(SIM), walltime: "00:10:00",
            resources: {{gpus: 1, cores_per_task: 2}}}}
selectors: {{pick: {{kind: random, dim: 2}}}}
couplings:
  c: {{from: coarse.points, to: fine, selector: pick, simulation: sim, ready_buffer: 3,
      {coupling}, share: {{gpus: 1.0}}}}
"""


def _plan(text: str) -> Plan:
    return compile_loaded(load_spec_text(text, "t.yaml")).plan


@pytest.mark.parametrize(("spec", "profile"), CASES)
def test_every_reference_plan_reads_back_as_written(spec: str, profile: str) -> None:
    compiled = compile_loaded(load_spec(SPECS / spec, profile=profile))
    text = compiled.files["plan.json"]
    assert Plan.from_json(text) == compiled.plan
    assert Plan.from_json(text).to_json() == text


def test_another_version_or_a_damaged_plan_is_refused_with_the_fix(tmp_path: Path) -> None:
    data = _plan(_spec("local")).to_data()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({**data, "plan_version": 1}))
    with pytest.raises(PlanError, match=r"plan version 1, this mummi reads 3; compile the spec"):
        Plan.read(path)
    data["couplings"]["c"]["max_pendng"] = data["couplings"]["c"].pop("max_pending")
    path.write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"plan\.json: \$\.couplings\.c: unknown key\(s\) "
                                        r"max_pendng; missing key\(s\) max_pending"):
        Plan.read(path)
    with pytest.raises(PlanError, match="no such plan; compile the spec first"):
        Plan.read(tmp_path / "nope.json")


def test_an_unset_max_pending_is_resolved_by_the_compiler() -> None:
    # It crashed the manager with a TypeError when the spec left it out.
    c = _plan(_spec("local", coupling="max_selections_per_iteration: 5")).couplings["c"]
    sim_slots = 2  # 2 nodes - 1 reserved for the manager = 1 node of 2 GPUs
    assert c.max_pending == c.ready_buffer + sim_slots == 5


def test_flux_options_and_the_burst_reach_the_adapters_settings() -> None:
    # Before, the flux adapter read uri/urgency and the throttle read submit_burst, but no
    # spec could set them (the schema refused them, the compiler never wrote them).
    plan = _plan(_spec("flux", ", options: {uri: 'local:///run/flux/local', "
                               "urgency: 20}, throttle: {per_second: 5, burst: 4}"))
    s = plan.scheduler
    assert s.flux == FluxOptions(uri="local:///run/flux/local", urgency=20)
    throttle = SubmitThrottle.from_settings(s)
    assert (throttle.rate, throttle.burst) == (5.0, 4.0)
    assert s.batch == {}  # flux's options are its adapter's, not Maestro's batch keys
    local = _plan(_spec("local", ", options: {max_workers: 3, kill_grace: 9}")).scheduler
    assert local.local == LocalOptions(max_workers=3, kill_grace=9)


def test_a_nested_job_type_reaches_its_requests_and_only_flux_takes_it() -> None:
    text = _spec("flux").replace("cores_per_task: 2}", "cores_per_task: 2}, nested: true")
    plan = _plan(text)
    assert (plan.jobs["sim"].nested, plan.jobs["gen"].nested) == (True, False)
    request = make_request(plan, "sim", name="s", workdir="w", values={"SIM": "s"})
    assert request.nested and not make_request(plan, "gen", name="g", workdir="w",
                                                values={}).nested
    for other in ("local", "slurm", "lsf"):
        with pytest.raises(SpecErrors) as caught:
            _plan(text.replace("type: flux", f"type: {other}"))
        (error,) = caught.value.errors
        assert str(error).startswith(f"t.yaml:14:62: error: job 'sim' asks for a nested "
                                     f"instance, which the {other} scheduler cannot give")
        assert "drop 'nested'" in (error.hint or "") and "scheduler type flux" in error.hint
    # false asks for nothing: every scheduler takes it
    assert not _plan(_spec("slurm").replace("cores_per_task: 2}", "cores_per_task: 2}, "
                                            "nested: false")).jobs["sim"].nested


def test_the_schedulers_that_nest_are_the_adapters_that_can() -> None:
    able = {name for name in SCHEDULERS.names() if name != "dryrun"
            and getattr(SCHEDULERS.get(name), "nested_instances", False)}
    assert able == NESTED_INSTANCES


def test_no_queue_is_sent_unless_the_spec_names_one() -> None:
    # A Slurm spec without a queue got `batch` in the study and `debug` from the adapter; the
    # flux adapter sent `debug` too, which a real Flux refuses ('not a valid queue').
    for scheduler in ("slurm", "flux", "lsf"):
        s = _plan(_spec(scheduler)).scheduler
        assert s.queue is None
        assert s.maestro_batch().get("queue", "") == ""
    named = _plan(_spec("slurm", ", queue: gpu")).scheduler
    assert named.maestro_batch()["queue"] == "gpu"


def test_slurm_and_lsf_options_become_directives_of_every_job(tmp_path: Path) -> None:
    # Before, scheduler.options reached study.yaml only, never the jobs the manager submits.
    s = _plan(_spec("lsf", ", queue: pbatch, options: {alloc_flags: smt4, x: true, "
                           "q2: false}")).scheduler
    text = render_batch_script(JobRequest("j", "t", "true", tmp_path), s)
    assert "#BSUB -q pbatch\n" in text
    assert "#BSUB -alloc_flags smt4\n#BSUB -x\n" in text
    assert "q2" not in text


@pytest.mark.parametrize(("spec", "profile"), CASES)
def test_the_study_and_the_runtime_ask_the_scheduler_the_same_way(spec: str,
                                                                   profile: str) -> None:
    compiled = compile_loaded(load_spec(SPECS / spec, profile=profile))
    batch = compiled.plan.scheduler.maestro_batch()
    study = compiled.files["study.yaml"]
    for key, value in batch.items():
        assert f"  {key}: {json.dumps(value)}" in study


def test_the_plan_is_frozen() -> None:
    plan = _plan(_spec("local"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.couplings["c"].ready_buffer = 9  # type: ignore[misc]
