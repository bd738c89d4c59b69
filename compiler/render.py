"""Jinja2 rendering of the Maestro study and job templates; values are quoted by code."""

from __future__ import annotations

import functools
import json
import re
import shlex
from typing import Any

import jinja2

from mummi_spec.model import Job, Spec
from mummi_spec.plan import Plan
from mummi_spec.units import SUBSTITUTED, format_hms

# Example parameter values for running one job template by hand.
# Path-valued tokens are study variables, not parameters: Maestro pastes a parameter's value
# into its step's directory and log names, where a path's slashes break them.
PATH_TOKENS = frozenset({"SETUP_DIR"})
EXAMPLES = {"CANDIDATE": "example-candidate-0001", "SIM": "example-sim-0001",
            "SETUP_DIR": "./example-setup"}


def to_yaml(value: Any) -> str:
    """A YAML flow scalar/collection for ``value``: JSON, which YAML reads as written."""
    return json.dumps(value, sort_keys=False)


@functools.cache
def environment() -> jinja2.Environment:
    """The strict, package-data-backed template environment."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mummi_spec.templates", "."),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["to_yaml"] = to_yaml
    return env


def step_resources(nodes: int, procs: int, cores: int, gpus: int, walltime: float
                   ) -> dict[str, Any]:
    """Maestro run keys; procs is always set so a step is scheduled, never run inline."""
    out: dict[str, Any] = {"nodes": nodes, "procs": procs, "cores per task": cores,
                           "walltime": format_hms(walltime)}
    if gpus:
        out["gpus"] = gpus
    return out


def _job_cmd(job: Job) -> tuple[str, dict[str, str]]:
    used: dict[str, str] = {}

    def repl(m: re.Match[str]) -> str:
        token = m.group(1)
        if token in EXAMPLES:
            used[token] = EXAMPLES[token]
            return f"$({token})"
        return {"WORKDIR": "$(WORKSPACE)", "WORKSPACE": "$(CAMPAIGN_WORKSPACE)",
                "PLAN": "$(SPECROOT)/../plan.json", "PYTHON": "$(PYTHON)",
                "STOP": shlex.quote(job.stop), "RESTART": "0",
                "STATE_DIR": "./example-state"}[token]

    return SUBSTITUTED.sub(repl, job.command), dict(sorted(used.items()))


def render_study(spec: Spec, plan: Plan) -> str:
    """study.yaml: prepare the workspace, then the workflow manager on its reserved node."""
    walltime = spec.machine.walltime
    scheduled = spec.scheduler.type != "local"

    def run_keys(seconds: float) -> dict[str, Any]:
        if not scheduled:
            return {}
        keys = step_resources(1, 1, 1, 0, seconds)
        if spec.scheduler.type == "flux":
            # A plain job, not a sub-instance: the manager submits the campaign's jobs to the
            # instance it runs in, which a one-core nested instance could never hold.
            keys["nested"] = False
        return keys

    steps = [
        {"name": "prepare", "description": "create the workspace layout and check every store",
         "cmd": "$(MUMMI) prepare --plan \"$(SPECROOT)/plan.json\"\n", "depends": [],
         "resources": run_keys(600)},
        {"name": "manager",
         "description": "the workflow manager: persistent jobs, selection, spawning, feedback",
         "cmd": "$(MUMMI) manager --plan \"$(SPECROOT)/plan.json\"\n", "depends": ["prepare"],
         "resources": run_keys(walltime)},
    ]
    return environment().get_template("maestro/study.yaml.j2").render(
        name=spec.name, profile=spec.profile, spec_file=_spec_name(spec),
        description=spec.description or spec.name, batch=plan.scheduler.maestro_batch(),
        steps=steps)


def render_job(spec: Spec, job: Job, plan: Plan) -> str:
    """jobs/<job>.yaml: one parameterised instance of a job type."""
    cmd, used = _job_cmd(job)
    params = {k: v for k, v in used.items() if k not in PATH_TOKENS}
    variables = {k: v for k, v in used.items() if k in PATH_TOKENS}
    exports = "".join(f"export {k}={shlex.quote(v)}\n"
                      for k, v in sorted((dict(spec.env) | dict(job.env)).items()))
    r = job.resources
    resources = step_resources(r.nodes, r.tasks, r.cores_per_task, r.gpus, job.walltime)
    if spec.scheduler.type == "flux":
        resources["nested"] = job.nested  # Maestro's Flux adapter nests unless told not to
    return environment().get_template("maestro/job.yaml.j2").render(
        name=spec.name, job=job.name, role=job.role, scale=job.scale,
        spec_file=_spec_name(spec), job_description=job.description or f"{job.role} {job.name}",
        workspace=spec.workspace, batch=plan.scheduler.maestro_batch(), cmd=exports + cmd + "\n",
        resources=resources, parameters=params, variables=variables)


def _spec_name(spec: Spec) -> str:
    # Only the file name: generated files carry no absolute paths.
    return spec.file.replace("\\", "/").rsplit("/", 1)[-1]
