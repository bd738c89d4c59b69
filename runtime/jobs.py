"""Turn a job type of the plan into a concrete JobRequest, quoting every data-derived value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mummi_spec.checks import SUBSTITUTED
from mummi_spec.runtime.schedulers._common import shell_quote
from mummi_spec.runtime.schedulers.base import JobRequest


def render_command(command: str, values: Mapping[str, str]) -> str:
    """Substitute runtime tokens, each value one literal shell word; ``$(LAUNCHER)`` is left
    to the scheduler adapter (values never contain it, see ``shell_quote``)."""

    def repl(m: re.Match[str]) -> str:
        token = m.group(1)
        if token not in values:
            raise KeyError(f"no value for $({token})")
        return shell_quote(str(values[token]))

    return SUBSTITUTED.sub(repl, command)


def make_request(plan: Mapping[str, Any], job_name: str, *, name: str, workdir: Path,
                 values: Mapping[str, str]) -> JobRequest:
    """The request to submit one instance of ``job_name`` (``values`` fills the tokens)."""
    job = plan["jobs"][job_name]
    r = job["resources"]
    tokens = dict(values)
    tokens.setdefault("WORKDIR", str(workdir))
    tokens.setdefault("STOP", job.get("stop", ""))
    env = {**plan.get("env", {}), **job.get("env", {})}
    return JobRequest(
        name=name, job_type=job_name, script=render_command(job["command"], tokens) + "\n",
        workdir=workdir, nodes=r["nodes"], tasks=r["tasks"], cores_per_task=r["cores_per_task"],
        gpus=r["gpus"], walltime=int(job["walltime"]), env={k: str(v) for k, v in env.items()})
