"""What a simulated campaign shows its user: occupancy figures, a summary, a CSV and two plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mummi_spec.runtime.simulate.run import Result
from mummi_spec.runtime.simulate.world import FULL

PAPER = {"gpu_mean": 93.73, "gpu_median": 99.93, "cpu_mean": 54.12,
         "cpu_median": 50.48}  # SC'21 Fig. 5, the reference the summary prints beside ours


def _series(result: Result) -> dict[str, np.ndarray]:
    s = result.samples
    return {"t": np.array([x[0] for x in s], dtype=np.float64),
            "gpus": np.array([x[1] for x in s], dtype=np.int64),
            "cores": np.array([x[2] for x in s], dtype=np.int64),
            "queued": np.array([x[3] for x in s], dtype=np.int64),
            "types": np.array([x[4] for x in s], dtype=np.int64).reshape(len(s), -1)}


def _pct(values: np.ndarray, total: int) -> np.ndarray:
    return 100.0 * values / total if total else np.zeros(len(values))


def metrics(result: Result) -> dict[str, Any]:
    """The summary's numbers (occupancy from the samples, one a minute, as percentages)."""
    s = _series(result)
    gpu, cpu = _pct(s["gpus"], result.total_gpus), _pct(s["cores"], result.total_cores)
    after = s["t"] >= (result.full_at if result.full_at is not None else np.inf)
    ended = {t: result.ended.get(t, {}) for t in result.job_types}

    def mean(x: np.ndarray) -> float | None:
        return round(float(x.mean()), 2) if len(x) else None

    def median(x: np.ndarray) -> float | None:
        return round(float(np.median(x)), 2) if len(x) else None

    gpu_hours = float(s["gpus"][:-1] @ np.diff(s["t"])) / 3600 if len(s["t"]) > 1 else 0.0
    return {
        "campaign": result.name, "nodes": result.nodes, "hours": result.hours,
        "allocations": result.allocations, "allocation_h": round(result.allocation / 3600, 3),
        "start": result.options.start, "seed": result.options.seed,
        "gpus": result.total_gpus, "cores": result.total_cores,
        "per_second": result.per_second, "startup_s": result.startup, "poll_s": result.poll,
        "gpus_full_h": None if result.full_at is None else round(result.full_at / 3600, 3),
        "gpu_mean": mean(gpu), "gpu_median": median(gpu),
        "cpu_mean": mean(cpu), "cpu_median": median(cpu),
        "gpu_mean_after_full": mean(gpu[after]), "cpu_mean_after_full": mean(cpu[after]),
        "share_full": round(float((gpu >= 100 * FULL).mean()) * 100, 2) if len(gpu) else 0.0,
        "jobs": {t: {"started": result.started.get(t, 0),
                     "completed": ended[t].get("completed", 0),
                     "failed": ended[t].get("failed", 0),
                     "timedout": ended[t].get("timedout", 0),
                     "at_end": ended[t].get("cancelled", 0)} for t in result.job_types},
        "selections": {c: {"new": n - result.seeded.get(c, 0),
                           "carried_over": result.seeded.get(c, 0)}
                       for c, n in sorted(result.selected.items())},
        "feedback": {n: {"iterations": i, "items": k} for n, (i, k) in result.feedback.items()},
        "ingested": dict(result.ingested),
        "stands_for": {r: round(f, 2) for r, f in sorted(result.stands_for.items()) if f > 1},
        "node_hours": round(result.nodes * result.hours, 1),
        "gpu_hours_busy": round(gpu_hours, 1),
    }


def _p(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} %"


def to_text(m: dict[str, Any]) -> str:
    """The printed summary (also ``summary.txt``)."""
    rate = m["per_second"]
    throttle = "none" if not rate else f"{rate:g} jobs/s ({rate * 60:.0f}/min)"
    full = "never" if m["gpus_full_h"] is None else f"{m['gpus_full_h']:.2f} h"
    out = [
        f"campaign {m['campaign']}: {m['nodes']} nodes ({m['gpus']} GPUs, {m['cores']} cores "
        f"for jobs), {m['hours']:g} h simulated in {m['allocations']} allocation(s) of "
        f"{m['allocation_h']:g} h, {m['start']} start, seed {m['seed']}",
        f"submission throttle {throttle}, start-up delay {m['startup_s']:g} s, "
        f"poll every {m['poll_s']:g} s",
        "",
        f"GPUs full (>= 98 % busy) after {full}        (SC'21 Fig. 6: ~1 h at 1000 nodes)",
        f"{'occupancy':<12}{'mean':>9}{'median':>9}{'after full':>12}   SC'21 Fig. 5 (mean/median)",
        f"{'GPU':<12}{_p(m['gpu_mean']):>9}{_p(m['gpu_median']):>9}"
        f"{_p(m['gpu_mean_after_full']):>12}   {PAPER['gpu_mean']} % / {PAPER['gpu_median']} %",
        f"{'CPU':<12}{_p(m['cpu_mean']):>9}{_p(m['cpu_median']):>9}"
        f"{_p(m['cpu_mean_after_full']):>12}   {PAPER['cpu_mean']} % / {PAPER['cpu_median']} %",
        f"time with >= 98 % of GPUs busy: {m['share_full']:.1f} %   (SC'21: > 83 %)",
        "",
        f"{'job type':<16}{'started':>9}{'completed':>11}{'failed':>8}{'timed out':>11}"
        f"{'at end':>8}",
    ]
    for t, j in m["jobs"].items():
        out.append(f"{t:<16}{j['started']:>9}{j['completed']:>11}{j['failed']:>8}"
                   f"{j['timedout']:>11}{j['at_end']:>8}")
    out.append("")
    out.append("selections: " + ", ".join(
        f"{c} {s['new']}" + (f" (+{s['carried_over']} carried over)" if s["carried_over"] else "")
        for c, s in m["selections"].items()))
    if m["feedback"]:
        out.append("feedback: " + ", ".join(f"{n} {f['iterations']} iterations "
                                            f"({f['items']} items)"
                                            for n, f in m["feedback"].items()))
    if m["stands_for"]:
        out.append("thinned streams (one simulated item stands for): " + ", ".join(
            f"{r} {f:g}" for r, f in m["stands_for"].items()))
    out.append(f"node-hours: {m['node_hours']:,.0f} ({m['nodes']} nodes x {m['hours']:g} h); "
               f"GPU-hours busy: {m['gpu_hours_busy']:,.0f} of "
               f"{m['gpus'] * m['hours']:,.0f}")
    return "\n".join(out) + "\n"


def write_csv(result: Result, path: Path) -> None:
    """One row a sample: time, busy GPUs and cores, their shares, queued jobs, running per type."""
    s = _series(result)
    gpu, cpu = _pct(s["gpus"], result.total_gpus), _pct(s["cores"], result.total_cores)
    head = ["hours", "busy_gpus", "gpu_pct", "busy_cores", "cpu_pct", "queued",
            *(f"running_{t}" for t in result.job_types)]
    lines = [",".join(head)]
    for i in range(len(s["t"])):
        row = [f"{s['t'][i] / 3600:.4f}", str(s["gpus"][i]), f"{gpu[i]:.2f}",
               str(s["cores"][i]), f"{cpu[i]:.2f}", str(s["queued"][i]),
               *(str(v) for v in s["types"][i])]
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_occupancy(result: Result, path: Path) -> None:
    """GPU and CPU occupancy (% of the machine) over simulated hours."""
    plt = _pyplot()
    s = _series(result)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    hours = s["t"] / 3600
    ax.plot(hours, _pct(s["gpus"], result.total_gpus), label="GPUs busy", color="C0")
    ax.plot(hours, _pct(s["cores"], result.total_cores), label="CPU cores busy", color="C1")
    ax.axhline(100 * FULL, ls=":", lw=0.8, color="0.4", label="98 %")
    if result.full_at is not None:
        ax.axvline(result.full_at / 3600, ls="--", lw=0.8, color="C0",
                   label=f"GPUs full at {result.full_at / 3600:.2f} h")
    ax.set_xlim(0, result.hours)
    ax.set_ylim(0, 105)
    ax.set_xlabel("simulated hours")
    ax.set_ylabel("occupancy (%)")
    ax.set_title(f"{result.name}: predicted occupancy, {result.nodes} nodes "
                 f"({result.options.start} start)", fontsize="medium")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def plot_jobs(result: Result, path: Path) -> None:
    """Running instances of each job type over simulated hours, and queued jobs."""
    plt = _pyplot()
    s = _series(result)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    hours = s["t"] / 3600
    for i, t in enumerate(result.job_types):
        ax.plot(hours, s["types"][:, i], label=t)
    ax.plot(hours, s["queued"], label="queued (all types)", color="0.5", ls=":")
    ax.set_xlim(0, result.hours)
    ax.set_xlabel("simulated hours")
    ax.set_ylabel("running jobs")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylim(bottom=0)
    ax.set_title(f"{result.name}: running jobs per type", fontsize="medium")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_all(result: Result, out: Path) -> dict[str, Path]:
    """``summary.txt``, ``occupancy.csv``, ``occupancy.png`` and ``jobs.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / "summary.txt", "csv": out / "occupancy.csv",
             "occupancy": out / "occupancy.png", "jobs": out / "jobs.png"}
    paths["summary"].write_text(to_text(metrics(result)), encoding="utf-8")
    write_csv(result, paths["csv"])
    plot_occupancy(result, paths["occupancy"])
    plot_jobs(result, paths["jobs"])
    return paths
