"""`mummi dry-run`: what a campaign would run, shown by submitting it to the dry-run scheduler."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from mummi_spec.compiler.compile import Compiled
from mummi_spec.model import Spec
from mummi_spec.plan import Plan, Role
from mummi_spec.runtime.jobs import make_request
from mummi_spec.runtime.schedulers.base import JobRequest
from mummi_spec.runtime.schedulers.dryrun import DryRunScheduler
from mummi_spec.units import format_hms

# Stand-ins for values the runtime only knows later; relative, so reports are portable.
_WS = PurePosixPath("workspace")


def _workdir(job: str) -> PurePosixPath:
    return _WS / "jobs" / job / f"{job}-0001"


def _example(plan: Plan, job: str) -> JobRequest:
    persistent = plan.job(job).role == Role.PERSISTENT
    name = job if persistent else f"{job}-0001"
    setup = next((c.setup for c in plan.couplings.values() if c.simulation == job and c.setup),
                 None)
    values = {"CANDIDATE": "candidate-0001", "SIM": f"{job}-0001", "WORKSPACE": str(_WS),
              "PLAN": "build/plan.json", "PYTHON": "python3",
              "SETUP_DIR": str(_workdir(setup)) if setup else ""}
    workdir = _WS / "jobs" / job if persistent else _workdir(job)
    return make_request(plan, job, name=name, workdir=str(workdir), values=values)


def submissions(compiled: Compiled) -> list[JobRequest]:
    """The persistent jobs and one instance of each dynamic job type, as the manager would send."""
    plan = compiled.plan
    scheduler = DryRunScheduler(plan.scheduler)
    order = [j for j, v in plan.jobs.items() if v.role == Role.PERSISTENT]
    for c in plan.couplings.values():
        order += [j for j in (c.setup, c.simulation) if j and j not in order]
    for job in order:
        scheduler.submit(_example(plan, job))
    return scheduler.submitted


def report(spec: Spec, compiled: Compiled) -> dict[str, Any]:
    """Everything dry-run shows, as data (the json format)."""
    rp = compiled.resources
    jobs = []
    for jp in rp.jobs:
        job = spec.job(jp.name)
        jobs.append({
            "job": jp.name, "scale": jp.scale, "role": jp.role, "gpus": jp.gpus,
            "cores": jp.cores, "nodes": jp.nodes, "max_concurrent": jp.max_concurrent,
            "pool": jp.pool, "walltime": format_hms(job.walltime),
            "expected": format_hms(job.duration) if job.duration else None,
            "spawned_by": jp.spawned_by})
    study = compiled.files["study.yaml"]
    steps = [line.split("- name:", 1)[1].strip() for line in study.splitlines()
             if line.startswith("  - name:")]
    return {
        "spec": spec.file, "name": spec.name, "profile": spec.profile,
        "scheduler": spec.scheduler.type, "jobs": jobs,
        "resources": {
            "nodes": rp.nodes, "reserved_nodes": rp.reserved_nodes,
            "compute_nodes": rp.compute_nodes, "gpu_pool": rp.gpu_pool,
            "cores_per_gpu": rp.cores_per_gpu, "cpu_pool": rp.cpu_pool,
            "budgets": {b.coupling: {"gpus": b.gpus, "cores": b.cores} for b in rp.budgets},
            "busy_gpus": rp.busy_gpus, "idle_gpus": rp.idle_gpus,
            "gpu_hours_per_day": rp.gpu_hours_per_day,
            "node_hours_per_day": rp.node_hours_per_day},
        "maestro_steps": steps,
        "submissions": [{"name": r.name, "job": r.job_type, "nodes": r.nodes, "tasks": r.tasks,
                         "cores_per_task": r.cores_per_task, "gpus": r.gpus,
                         "walltime": format_hms(r.walltime), "script": r.script}
                        for r in submissions(compiled)],
        "graph": [{"from": c.source_scale, "to": c.to, "kind": "coupling", "name": c.name}
                  for c in spec.couplings] +
                 [{"from": f.source_scale, "to": f.to, "kind": "feedback", "name": f.name}
                  for f in spec.feedback],
    }


def to_text(rep: dict[str, Any]) -> str:
    """The human-readable report."""
    r = rep["resources"]
    out = [f"dry run of {rep['spec']} (profile {rep['profile'] or 'none'}, scheduler "
           f"{rep['scheduler']}): nothing is submitted", "", "jobs"]
    w = max([len(j["job"]) for j in rep["jobs"]] + [len("job")]) + 2
    s = max([len(j["scale"]) for j in rep["jobs"]] + [len("scale")]) + 2
    head = f"  {'job':<{w}}{'scale':<{s}}{'role':<12}{'per instance':<24}{'max at once':>12}" \
           f"  {'walltime':<10}{'expected':<10}spawned by"
    out.append(head)
    for j in rep["jobs"]:
        per = f"{j['cores']} cores" + (f" + {j['gpus']} GPU" if j["gpus"] else "") + \
            (f" on {j['nodes']} nodes" if j["nodes"] > 1 else "")
        out.append(f"  {j['job']:<{w}}{j['scale']:<{s}}{j['role']:<12}{per:<24}"
                   f"{j['max_concurrent']:>12}  {j['walltime']:<10}{j['expected'] or '-':<10}"
                   f"{j['spawned_by']}")
    out += ["", "resource plan",
            f"  nodes {r['nodes']} - reserved {r['reserved_nodes']} = {r['compute_nodes']} "
            "compute nodes",
            f"  GPU pool {r['gpu_pool']} (GPU jobs hold {r['cores_per_gpu']:g} cores per GPU); "
            f"CPU-only pool {r['cpu_pool']} cores",
            *(f"  {name}: {b['gpus']} GPUs, {b['cores']} CPU-only cores"
              for name, b in r["budgets"].items()),
            f"  busy GPUs {r['busy_gpus']}, idle {r['idle_gpus']}; "
            f"{r['gpu_hours_per_day']:g} GPU-hours and {r['node_hours_per_day']:g} node-hours "
            "per day",
            "", "maestro study steps, in order: " + " -> ".join(rep["maestro_steps"]),
            "", "first submissions (persistent jobs, then one instance of each job type)"]
    for s in rep["submissions"]:
        out.append(f"  {s['name']} [{s['job']}] nodes={s['nodes']} tasks={s['tasks']} "
                   f"cores/task={s['cores_per_task']} gpus={s['gpus']} walltime={s['walltime']}")
        out += [f"    $ {line}" for line in s["script"].rstrip().splitlines()]
    out += ["", "graph"]
    out += [f"  {e['from']} {'->' if e['kind'] == 'coupling' else '~>'} {e['to']}  "
            f"({e['kind']} {e['name']})" for e in rep["graph"]]
    return "\n".join(out) + "\n"
