"""The runtime plan: everything the workflow manager needs, as plain sorted JSON data."""

from __future__ import annotations

from typing import Any

from mummi_spec.compiler.resources import ResourcePlan
from mummi_spec.model import Job, Spec, format_hms

PLAN_VERSION = 1


def _job(job: Job, rp: ResourcePlan) -> dict[str, Any]:
    r = job.resources
    jp = next((j for j in rp.jobs if j.name == job.name), None)
    return {
        "scale": job.scale, "role": job.role, "description": job.description,
        "command": job.command, "walltime": job.walltime, "walltime_hms": format_hms(job.walltime),
        "resources": {"nodes": r.nodes, "tasks": r.tasks, "cores_per_task": r.cores_per_task,
                      "gpus": r.gpus, "cores": r.cores},
        "stop": job.stop,
        "retry": {"limit": job.retry_limit, "on": sorted(job.retry_on)},
        "success": {"exit_codes": list(job.success_codes), "file": job.success_file},
        "expect": {"duration": job.duration, "duration_sd": job.duration_sd,
                   "failure_rate": job.failure_rate},
        "env": dict(job.env),
        "max_concurrent": jp.max_concurrent if jp else 0,
        "pool": jp.pool if jp else "unused",
    }


def build_plan(spec: Spec, rp: ResourcePlan) -> dict[str, Any]:
    """The plan.json document for ``spec`` with its resource plan."""
    m = spec.machine
    s = spec.scheduler
    return {
        "plan_version": PLAN_VERSION,
        "name": spec.name,
        "description": spec.description,
        "profile": spec.profile,
        "workspace": spec.workspace,
        "env": dict(spec.env),
        "machine": {"name": m.name, "nodes": m.nodes, "walltime": m.walltime,
                    "node": {"cores": m.cores, "gpus": m.gpus, "memory_gb": m.memory_gb},
                    "reserved": {"manager": m.reserved_manager, "services": m.reserved_services}},
        "scheduler": {"type": s.type, "queue": s.queue, "bank": s.bank, "host": s.host,
                      "qos": s.qos, "reservation": s.reservation, "options": dict(s.options),
                      "max_submit_per_second": s.per_second, "per_iteration": s.per_iteration,
                      "poll": s.poll, "expect": {"startup": s.startup}},
        "resources": {
            "compute_nodes": rp.compute_nodes, "gpu_pool": rp.gpu_pool, "cpu_pool": rp.cpu_pool,
            "cores_per_gpu": rp.cores_per_gpu, "busy_gpus": rp.busy_gpus,
            "idle_gpus": rp.idle_gpus, "gpu_hours_per_day": rp.gpu_hours_per_day,
            "node_hours_per_day": rp.node_hours_per_day,
            "budgets": {b.coupling: {"gpus": b.gpus, "cores": b.cores} for b in rp.budgets},
        },
        "stores": {st.name: {"name": st.name, "backend": st.backend, "path": st.path,
                             **({"host": st.host, "port": st.port, "db": st.db,
                                 "password_env": st.password_env, "prefix": st.name}
                                if st.backend == "redis" else {})}
                   for st in spec.stores},
        "jobs": {j.name: _job(j, rp) for j in spec.jobs()},
        "streams": {st.ref: {"scale": st.scale, "name": st.name, "kind": st.kind, "dim": st.dim,
                             "store": st.store, "namespace": st.namespace, "key": st.key,
                             "tags": list(st.tags), "every": st.every, "count": st.count}
                    for st in spec.streams()},
        "selectors": {sel.name: {
            "kind": sel.kind, "dim": sel.dim, "seed": sel.seed,
            "warmup": {"min_candidates": sel.min_candidates, "random_first": sel.random_first},
            **({"k": sel.k, "index": {"type": sel.index, "nlist": sel.nlist,
                                      "nprobe": sel.nprobe},
                "queues": {q.name: {"ratio": q.ratio, "capacity": q.capacity}
                           for q in sel.queues}} if sel.kind == "farthest_point" else {}),
            **({"bins": list(sel.bins), "bounds": [list(b) for b in sel.bounds],
                "novelty": sel.novelty} if sel.kind == "binned" else {}),
        } for sel in spec.selectors},
        "couplings": {c.name: {
            "from": f"{c.source_scale}.{c.source_stream}", "to": c.to, "selector": c.selector,
            "setup": c.setup, "simulation": c.simulation, "ready_buffer": c.ready_buffer,
            "max_pending": c.max_pending,
            "max_selections_per_iteration": c.max_selections_per_iteration,
            "share": {"gpus": c.share_gpus, "cores": c.share_cores},
        } for c in spec.couplings},
        "feedback": {f.name: {
            "from": f"{f.source_scale}.{f.source_stream}", "to": f.to, "period": f.period,
            "aggregate": f.aggregate, "workers": f.workers, "max_items": f.max_items,
            "weights_from": _weights_selector(spec, f.source_scale),
            "target": {"store": f.target_store, "namespace": f.target_namespace,
                       "key": f.target_key},
        } for f in spec.feedback},
        "manager": {"tick": spec.manager.tick, "checkpoint_every": spec.manager.checkpoint_every,
                    "stop_after": spec.manager.stop_after or m.walltime,
                    "max_simulations": spec.manager.max_simulations},
    }


def _weights_selector(spec: Spec, fine_scale: str) -> str | None:
    # Selector weights for a fine scale's feedback come from the coupling that feeds it.
    return next((c.selector for c in spec.couplings if c.to == fine_scale), None)
