"""Flux jobspecs of our jobs: each node's share of the instance, sub-instances, $(LAUNCHER)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mummi_spec.runtime.schedulers._common import per_node, scheduler_name
from mummi_spec.runtime.schedulers.base import JobRequest

# job-exec's kill-timeout when a broker does not say (flux-config-exec(5)): seconds.
KILL_TIMEOUT = 5.0
# Stand-ins for a job's own values in a template jobspec. The template holds no NUL of its
# own (no path, name or queue can: the kernel's strings end at one), and a value put in is
# never read again, whatever it holds.
_DIR, _NAME, _SCHED, _BODY, _ENV = "\0DIR\0", "\0NAME\0", "\0SCHED\0", "\0BODY\0", "\0ENV\0"
_MARKS = re.compile(r'\\u0000(DIR|NAME|SCHED|BODY)\\u0000|\{"\\u0000ENV\\u0000":""\}')


def per_node_share(job: JobRequest) -> tuple[int, int]:
    """Cores and GPUs the job holds on each of its nodes. A spec's resources are per instance,
    tasks and GPUs spread evenly over its nodes (rounded up, as the fit check counts them)."""
    return per_node(job.tasks, job.nodes) * job.cores_per_task, per_node(job.gpus, job.nodes)


def build_jobspec(flux_job: Any, job: JobRequest, workdir: Path, body: str, *,
                  queue: str | None = None, bank: str | None = None,
                  kill_timeout: float = KILL_TIMEOUT,
                  environment: Mapping[str, str] | None = None) -> Any:
    """A ``JobspecV1`` for ``job``: its resources, walltime (seconds), name, logs, the absolute
    ``workdir`` it runs in and ``environment`` (default: this process's).

    ``body`` is the job's bash script, carried in the jobspec (``flux job info ID jobspec``):
    a script file per job cost as much as the rest of a submission, a metadata operation
    more on a parallel file system. The allocation is one slot per node holding that node's
    share of the instance, never a slot per task: 4 tasks with 1 GPU ask for 1 GPU, which
    the tasks share (per-task slots asked for 4). A ``nested`` job's script runs in a
    sub-instance owning the allocation, where ``$(LAUNCHER)`` = ``flux run``; otherwise Flux
    starts one copy per task. ``kill_timeout`` is the enclosing instance's (seconds between
    SIGTERM and SIGKILL).
    """
    cores, gpus = per_node_share(job)
    command = ["/bin/bash", "-c", body, job.name]  # the name is the script's $0
    # Given here, not set afterwards: flux-python copies os.environ for a jobspec without one.
    common = {"num_nodes": job.nodes, "queue": queue, "bank": bank, "cwd": str(workdir),
              "environment": dict(os.environ) if environment is None else environment}
    if job.nested:
        # A cancel or the walltime sends the sub-instance SIGTERM; it must stop its own jobs
        # (SIGTERM, then SIGKILL after its kill-timeout) and remove its rundir before the
        # enclosing instance SIGKILLs it, or their tasks live on, orphaned, and the rundir
        # stays in /tmp. Half the enclosing timeout leaves it time to (1.5 s here with 1 s).
        conf = {"exec": {"kill-timeout": f"{kill_timeout / 2:g}s"}}
        spec = flux_job.JobspecV1.from_nest_command(
            command, num_slots=job.nodes, cores_per_slot=cores, gpus_per_slot=gpus or None,
            conf=conf, **common)
    else:
        spec = flux_job.JobspecV1.from_command(
            command, num_tasks=job.nodes, cores_per_task=cores, gpus_per_task=gpus or None,
            **common)
        # The job's tasks share their node's slot (RFC 25: a total count, not one per slot).
        spec.jobspec["tasks"][0]["count"] = {"total": job.tasks}
    spec.setattr("system.job.name", job.sched_name or job.name)  # what find() looks up
    spec.duration = max(int(job.walltime), 1)  # seconds; 0 would mean unlimited
    spec.stdout = f"{job.name}.out"
    spec.stderr = f"{job.name}.err"
    return spec


def launcher_for(job: JobRequest) -> str:
    """What ``$(LAUNCHER)`` means inside the job's script."""
    if not job.nested:
        return ""  # Flux already runs the script once per task
    launcher = f"flux run -N {job.nodes} -n {job.tasks} -c {job.cores_per_task}"
    if job.gpus and job.gpus % job.tasks == 0:
        return f"{launcher} -g {job.gpus // job.tasks}"
    if job.gpus:
        # Fewer GPUs than tasks: they share the instance's GPUs, which the job's environment
        # (CUDA_VISIBLE_DEVICES, from the enclosing instance) already names.
        return f"{launcher} -o gpu-affinity=off"
    return launcher


class JobspecTexts:
    """The jobspec text of each job. flux-python builds one template per shape (resources,
    walltime, sub-instance): building each job's took four times what the rest of a
    submission costs us. A job's directory, name, script and the environment (encoded once
    per batch) go into a copy of the text; ``kill_timeout`` is asked for at the first nested
    job.
    """

    def __init__(self, flux_job: Any, *, queue: str | None, bank: str | None,
                 kill_timeout: Callable[[], float]) -> None:
        self._flux_job = flux_job
        self._queue, self._bank = queue, bank
        self._kill_timeout = kill_timeout
        self._templates: dict[tuple[int, int, int, int, int, bool], str] = {}

    def text(self, job: JobRequest, workdir: Path, body: str, environment: str) -> str:
        """``job``'s jobspec (see ``build_jobspec``); ``environment``: JSON of the variables
        every job gets. ``SchedulerError`` for a scheduler name ``scheduler_name`` refuses."""
        if not workdir.is_absolute():
            raise ValueError(f"{workdir}: a job's work directory must be absolute here")
        values = {"DIR": _inner(str(workdir)), "NAME": job.name,
                  "SCHED": scheduler_name(job), "BODY": _inner(body)}  # checked: no escapes
        return _MARKS.sub(lambda m: values[m[1]] if m[1] else environment,
                          self._template(job))

    def _template(self, job: JobRequest) -> str:
        key = (job.nodes, job.tasks, job.cores_per_task, job.gpus, int(job.walltime),
               job.nested)
        template = self._templates.get(key)
        if template is None:
            spec = build_jobspec(
                self._flux_job, JobRequest(
                    _NAME, job.job_type, "", Path(_DIR), nodes=job.nodes, tasks=job.tasks,
                    cores_per_task=job.cores_per_task, gpus=job.gpus, walltime=job.walltime,
                    nested=job.nested, sched_name=_SCHED),
                Path(_DIR), _BODY, queue=self._queue, bank=self._bank,
                kill_timeout=self._kill_timeout() if job.nested else KILL_TIMEOUT,
                environment={_ENV: ""})
            # Compact, so the environment's stand-in has one spelling.
            template = json.dumps(json.loads(spec.dumps()), separators=(",", ":"))
            self._templates[key] = template
        return template


def _inner(text: str) -> str:
    """``text`` as the inside of a JSON string."""
    return json.dumps(text)[1:-1]


def environment_json(environment: Mapping[str, str]) -> str:
    """The environment as JSON for ``JobspecTexts.text``."""
    return json.dumps(dict(environment), separators=(",", ":"))
