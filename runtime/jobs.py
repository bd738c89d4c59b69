"""Turn a job type of the plan into a concrete JobRequest, quoting every data-derived value."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mummi_spec.plan import Plan
from mummi_spec.runtime.schedulers._common import shell_quote
from mummi_spec.runtime.schedulers.base import JobRequest
from mummi_spec.units import SUBSTITUTED


def render_command(command: str, values: Mapping[str, str]) -> str:
    """Substitute runtime tokens, each value one literal shell word; ``$(LAUNCHER)`` is left
    to the scheduler adapter (values never contain it, see ``shell_quote``)."""

    def repl(m: re.Match[str]) -> str:
        token = m.group(1)
        if token not in values:
            raise KeyError(f"no value for $({token})")
        return shell_quote(str(values[token]))

    return SUBSTITUTED.sub(repl, command)


@dataclass(frozen=True, slots=True)
class Selected:
    """The selection an attempt works on (spawned jobs only)."""

    sim: str
    candidate: str
    coupling: str
    setup_dir: str = ""


def state_dir(workspace: str | Path, sim: str | None, job_type: str) -> Path:
    """The directory every attempt of a job for one simulation shares (its checkpoints)."""
    return Path(workspace) / "runs" / (sim or "persistent") / f"{job_type}.state"


def attempt_request(plan: Plan, job_type: str, *, name: str, attempt: int,
                    workdir: str | Path, workspace: str | Path, plan_path: str | Path,
                    python: str, selected: Selected | None = None, restart: bool = False,
                    pythonpath: Sequence[str] = ()) -> JobRequest:
    """The request of one attempt: its command's tokens and the ``MUMMI_*`` variables every
    job has (docs/applications.md lists them), beside the campaign's and the job type's."""
    flag = "1" if restart else "0"
    state = str(state_dir(workspace, selected.sim if selected else None, job_type))
    values = {"WORKSPACE": str(workspace), "PLAN": str(plan_path), "PYTHON": python,
              "WORKDIR": str(workdir), "RESTART": flag, "STATE_DIR": state}
    env = {"MUMMI_WORKSPACE": str(workspace), "MUMMI_PLAN": str(plan_path),
           "MUMMI_JOB_TYPE": job_type, "MUMMI_ATTEMPT": str(attempt), "MUMMI_RESTART": flag,
           "MUMMI_STATE_DIR": state}
    if selected is not None:
        values |= {"SIM": selected.sim, "CANDIDATE": selected.candidate,
                   "SETUP_DIR": selected.setup_dir}
        env |= {"MUMMI_SIM": selected.sim, "MUMMI_CANDIDATE": selected.candidate,
                "MUMMI_COUPLING": selected.coupling}
        if selected.setup_dir:
            env["MUMMI_SETUP_DIR"] = selected.setup_dir
    if pythonpath:  # the campaign's own code first, then what the manager was given
        inherited = os.environ.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join([*pythonpath, *([inherited] if inherited else [])])
    return make_request(plan, job_type, name=name, workdir=workdir, values=values, env=env)


def make_request(plan: Plan, job_type: str, *, name: str, workdir: str | Path,
                 values: Mapping[str, str], env: Mapping[str, str] | None = None) -> JobRequest:
    """The request to submit one attempt of ``job_type`` (``values`` fill the tokens; ``env``
    adds to the campaign's and the job type's variables)."""
    job = plan.job(job_type)
    r = job.resources
    tokens = {"WORKDIR": str(workdir), "STOP": job.stop, **values}
    return JobRequest(
        name=name, job_type=job_type, script=render_command(job.command, tokens) + "\n",
        workdir=Path(workdir), nodes=r.nodes, tasks=r.tasks, cores_per_task=r.cores_per_task,
        gpus=r.gpus, walltime=int(job.walltime), env={**plan.env, **job.env, **(env or {})},
        nested=job.nested)
