"""The one-screen summary `mummi validate` prints for a valid spec."""

from __future__ import annotations

from mummi_spec.model import Spec
from mummi_spec.units import format_hms


def _resources(gpus: int, cores: int, nodes: int) -> str:
    parts = [f"{nodes} node{'s' if nodes > 1 else ''}"] if nodes > 1 else []
    parts.append(f"{cores} core{'s' if cores != 1 else ''}")
    if gpus:
        parts.append(f"{gpus} GPU{'s' if gpus != 1 else ''}")
    return " + ".join(parts)


def summarize(spec: Spec, profile_note: str) -> str:
    """Scales, job types, couplings, selectors, feedback and stores, one line each."""
    m = spec.machine
    out = [f"{spec.file}: valid mummi/v1 spec '{spec.name}' ({profile_note})",
           f"  machine    {m.name or '-'}: {m.nodes} node{'s' if m.nodes != 1 else ''} x "
           f"({m.cores} cores, {m.gpus} GPUs), "
           f"walltime {format_hms(m.walltime)}, "
           f"reserved {m.reserved_manager + m.reserved_services}",
           f"  scheduler  {spec.scheduler.type}" + (f", queue {spec.scheduler.queue}"
                                                    if spec.scheduler.queue and
                                                    spec.scheduler.type != "local" else ""),
           "  scales"]
    for s in spec.scales:
        out.append(f"    {s.name}: {s.description}" if s.description else f"    {s.name}")
        for j in s.jobs:
            r = j.resources
            out.append(f"      {j.role:<10} {j.name:<14} {_resources(r.gpus, r.cores, r.nodes):<26}"
                       f" walltime {format_hms(j.walltime)}, retry {j.retry_limit}"
                       + (", in a sub-instance of its own" if j.nested else ""))
        for st in s.emits:
            out.append(f"      emits      {st.name:<14} {st.kind} ({st.dim}-D) -> store {st.store}")
    out.append("  couplings")
    for c in spec.couplings:
        chain = " -> ".join(x for x in (c.setup, c.simulation) if x)
        out.append(f"    {c.name}: {c.source_scale}.{c.source_stream} -> [{c.selector}] -> "
                   f"{chain}; ready buffer {c.ready_buffer}, share GPUs {c.share_gpus:g} / "
                   f"cores {c.share_cores:g}")
    out.append("  selectors")
    for sel in spec.selectors:
        extra = (f"k={sel.k}, {sel.index} index, {len(sel.queues) or 1} queue(s)"
                 if sel.kind == "farthest_point" else
                 f"bins {list(sel.bins)}, novelty {sel.novelty:g}" if sel.kind == "binned" else "")
        out.append(f"    {sel.name}: {sel.kind}, {sel.dim}-D" + (f", {extra}" if extra else ""))
    if spec.feedback:
        out.append("  feedback")
        for f in spec.feedback:
            out.append(f"    {f.name}: {f.source_scale}.{f.source_stream} -> {f.to} every "
                       f"{format_hms(f.period)}, {f.aggregate} -> {f.target_store}/"
                       f"{f.target_namespace}/{f.target_key}")
    out.append("  stores")
    for store in spec.stores:
        where = f"{store.host}:{store.port}" if store.backend == "redis" else store.path
        out.append(f"    {store.name}: {store.backend} ({where})")
    if spec.variables:
        out.append("  variables")
        for name, value, source in spec.variables:
            out.append(f"    {name} = {value!r} (from {source})")
    return "\n".join(out)
