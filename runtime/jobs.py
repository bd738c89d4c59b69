"""Turn a job type of the plan into a concrete JobRequest, quoting every data-derived value."""

from __future__ import annotations

import re
from collections.abc import Mapping
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
        gpus=r.gpus, walltime=int(job.walltime), env={**plan.env, **job.env, **(env or {})})
