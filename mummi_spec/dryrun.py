"""`mummi dry-run`: what a campaign would run, shown by submitting it to the dry-run scheduler."""

from __future__ import annotations

import sys
from pathlib import PurePosixPath
from typing import Any

from mummi_spec.compiler.compile import Compiled
from mummi_spec.model import Spec
from mummi_spec.plan import CouplingPlan, Plan, Role
from mummi_spec.runtime.jobs import Selected, attempt_request
from mummi_spec.runtime.schedulers.base import JobRequest
from mummi_spec.runtime.schedulers.dryrun import DryRunScheduler
from mummi_spec.units import format_hms, per_allocation


def _candidate(plan: Plan, coupling: CouplingPlan) -> str:
    """The key a first item of the coupling's candidate stream has (its whole id)."""
    template = plan.stream(coupling.source).key
    try:
        return template.format_map({"id": "000001", "n": 1, "sim": "producer"})
    except (KeyError, ValueError, IndexError):
        return template


def _example(plan: Plan, job: str, workspace: PurePosixPath, build: PurePosixPath
             ) -> JobRequest:
    """The first attempt of ``job`` as ``mummi run`` would submit it."""
    coupling = next((c for c in sorted(plan.couplings.values(), key=lambda c: c.name)
                     if job in (c.setup, c.simulation)), None)
    runs = workspace / "runs"
    selected = None
    if coupling is None:
        name, workdir = f"{job}.1", runs / "persistent" / f"{job}.1"
    else:
        sim = f"{coupling.to}-000001"
        name, workdir = f"{sim}.{job}.1", runs / sim / f"{job}.1"
        setup_dir = str(runs / sim / f"{coupling.setup}.1") \
            if coupling.setup and job != coupling.setup else ""
        selected = Selected(sim, _candidate(plan, coupling), coupling.name, setup_dir)
    return attempt_request(plan, job, name=name, attempt=1, workdir=str(workdir),
                           workspace=str(workspace), plan_path=str(build / "plan.json"),
                           python=sys.executable, selected=selected,
                           pythonpath=plan.pythonpath)


def submissions(compiled: Compiled, build: str = "build") -> list[JobRequest]:
    """The persistent jobs and the first attempt of each spawned job type, as ``mummi run``
    would send them (the workspace as the spec names it, the build in ``build``)."""
    plan = compiled.plan
    scheduler = DryRunScheduler(plan.scheduler)
    order = [j for j, v in plan.jobs.items() if v.role == Role.PERSISTENT]
    for c in plan.couplings.values():
        order += [j for j in (c.setup, c.simulation) if j and j not in order]
    workspace = PurePosixPath(plan.workspace)
    for job in order:
        scheduler.submit(_example(plan, job, workspace, PurePosixPath(build)))
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
        "allocation_s": spec.machine.walltime,
        "scheduler": spec.scheduler.type, "jobs": jobs,
        "resources": {
            "nodes": rp.nodes, "reserved_nodes": rp.reserved_nodes,
            "compute_nodes": rp.compute_nodes, "node": {
                "cores": spec.machine.cores, "gpus": spec.machine.gpus,
                "memory_gb": spec.machine.memory_gb,
                "oversubscribe": spec.machine.oversubscribe},
            "groups": [{"count": g.count, "gpus": g.gpus, "cores": g.cores,
                        "memory_gb": g.memory_gb, "gpu_slots": g.gpu_slots,
                        "cpu_cores": g.cpu_cores, "beside": list(g.hosts)}
                       for g in rp.groups],
            "gpu_pool": rp.gpu_pool, "cores_per_gpu": rp.cores_per_gpu,
            "cpu_pool": rp.cpu_pool,
            "budgets": {b.coupling: {"gpus": b.gpus, "cores": b.cores} for b in rp.budgets},
            "busy_gpus": rp.busy_gpus, "idle_gpus": rp.idle_gpus,
            "gpu_hours": rp.gpu_hours,
            "node_hours": rp.node_hours},
        "maestro_steps": steps,
        "submissions": [{"name": r.name, "job": r.job_type, "nodes": r.nodes, "tasks": r.tasks,
                         "cores_per_task": r.cores_per_task, "gpus": r.gpus,
                         "walltime": format_hms(r.walltime), "workdir": str(r.workdir),
                         "env": dict(r.env), "script": r.script}
                        for r in submissions(compiled)],
        "graph": [{"from": c.source_scale, "to": c.to, "kind": "coupling", "name": c.name}
                  for c in spec.couplings] +
                 [{"from": f.source_scale, "to": f.to, "kind": "feedback", "name": f.name}
                  for f in spec.feedback],
    }


def _hours(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.2f}"


def _group_line(g: dict[str, Any], cores_per_gpu: float) -> str:
    beside = f" beside {', '.join(g['beside'])}" if g["beside"] else ""
    held = f" ({g['gpu_slots'] * cores_per_gpu:g} cores held)" if g["gpu_slots"] else ""
    return (f"  {g['count']:,} node(s){beside}: {g['gpus']} GPUs and {g['cores']} cores free -> "
            f"{g['gpu_slots']} GPU slots{held}, {g['cpu_cores']} cores for CPU-only jobs")


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
    node = r["node"]
    shape = f"{node['cores']} cores" + (f" (each shared {node['oversubscribe']} ways)"
                                        if node["oversubscribe"] > 1 else "") \
        + f", {node['gpus']} GPUs" + (f", {node['memory_gb']:g} GB" if node["memory_gb"] else "")
    out += ["", f"resource plan (a node: {shape})",
            f"  nodes {r['nodes']} - reserved {r['reserved_nodes']} = {r['compute_nodes']} "
            "compute nodes",
            *(_group_line(g, r["cores_per_gpu"]) for g in r["groups"]),
            f"  GPU pool {r['gpu_pool']:,} (GPU jobs hold {r['cores_per_gpu']:g} cores per "
            f"GPU); CPU-only pool {r['cpu_pool']:,} cores",
            *(f"  {name}: {b['gpus']:,} GPUs, {b['cores']:,} CPU-only cores"
              for name, b in r["budgets"].items()),
            f"  busy GPUs {r['busy_gpus']}, idle {r['idle_gpus']}; "
            f"{_hours(r['gpu_hours'])} GPU-hours and {_hours(r['node_hours'])} node-hours "
            f"{per_allocation(rep['allocation_s'])}",
            "", "maestro study steps, in order: " + " -> ".join(rep["maestro_steps"]),
            "", "first submissions (persistent jobs, then one instance of each job type)"]
    for s in rep["submissions"]:
        out.append(f"  {s['name']} [{s['job']}] nodes={s['nodes']} tasks={s['tasks']} "
                   f"cores/task={s['cores_per_task']} gpus={s['gpus']} walltime={s['walltime']}")
        out.append(f"    in {s['workdir']}")
        out += [f"    $ {line}" for line in s["script"].rstrip().splitlines()]
        mummi = sorted(k for k in s["env"] if k.startswith("MUMMI_"))
        out.append("    env: " + " ".join(f"{k}={s['env'][k]}" for k in mummi))
    out += ["", "graph"]
    out += [f"  {e['from']} {'->' if e['kind'] == 'coupling' else '~>'} {e['to']}  "
            f"({e['kind']} {e['name']})" for e in rep["graph"]]
    return "\n".join(out) + "\n"
