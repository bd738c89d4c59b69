"""Toy simulation job: a random walk around a prepared system, writing frames and feedback."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import numpy as np

from mummi_spec.errors import UsageError
from mummi_spec.plan import Plan
from mummi_spec.runtime.toy._model import (
    StopFlag,
    job_context,
    projection,
    rng,
    success_name,
    uniform,
    write_json,
    write_success,
)
from mummi_spec.runtime.toy.setup import load_system

DEFAULT_STEPS = 20  # for stops in physical units ("600 ns"), which the toy cannot honour
FEEDBACK_EVERY = 5  # steps between feedback items (and one at the end)
PULL, KICK = 0.1, 0.3  # the walk: pulled back towards the system, kicked by noise each step
FEEDBACK_NOISE = 0.05
_STEPS = re.compile(r"\s*(\d+)\s*steps?\s*", re.IGNORECASE)


def steps_of(stop: str) -> int:
    """``"20 steps"`` -> 20; any other stop -> ``DEFAULT_STEPS``."""
    m = _STEPS.fullmatch(stop)
    return int(m.group(1)) if m else DEFAULT_STEPS


def binned_bounds(plan: Plan, stream: str, dim: int) -> np.ndarray | None:
    """The ``[low, high]`` rows of a binned selector reading ``stream``, if one does."""
    for coupling in plan.couplings.values():
        selector = plan.selectors.get(coupling.selector)
        if coupling.source == stream and selector is not None and selector.kind == "binned":
            bounds = np.asarray(selector.bounds, dtype=np.float64)
            if bounds.shape == (dim, 2):
                return bounds
    return None


def hangs(seed: int, candidate: str, attempt: int, rate: float) -> bool:
    """Whether this attempt at simulating ``candidate`` hangs, at ``--hang-rate`` ``rate``."""
    return uniform(seed, "simulate-hang", candidate, attempt) < rate


def run(plan: Path, sim: str | None, setup_dir: Path, workdir: Path, stop: str,
        frames: str | None, feedback: str | None, success_file: str | None,
        step_seconds: float, coupling_name: str | None, seed: int, hang_rate: float = 0.0
        ) -> int:
    """Walk ``steps_of(stop)`` steps, writing a frame each step and feedback every few.

    An attempt drawn to hang (``hangs``) writes nothing and waits for SIGTERM, as a stalled
    simulation does until its walltime ends it.
    """
    flag = StopFlag.install()
    with job_context(plan, sim=sim, coupling=coupling_name) as ctx:
        if not ctx.sim:
            raise UsageError("no simulation id: pass --sim or set MUMMI_SIM")
        sim = ctx.sim
        encoding, info = load_system(setup_dir)
        # Run by hand, the job is the simulation of the coupling the setup served.
        if ctx.coupling is None and info.get("coupling"):
            ctx.coupling = str(info["coupling"])
        job = ctx.job_type or ctx.coupling_plan().simulation
        ctx.job_type = job
        success = success_name(ctx, success_file)
        outs = {name: ctx.stream(name) for name in (frames, feedback) if name}
        counts = dict.fromkeys(outs, 0)
        bounds = binned_bounds(ctx.plan, frames, outs[frames].plan.dim) if frames else None
        # Fixed maps from the state to each output: frames and feedback are functions of it.
        maps = {name: projection(out.plan.dim, encoding.size, seed, name)
                for name, out in outs.items()}
        n_steps = steps_of(stop)
        candidate = str(ctx.candidate_id or info.get("candidate") or sim)
        if hangs(seed, candidate, ctx.attempt, hang_rate):
            print(f"toy simulate: {sim} hangs (attempt {ctx.attempt}, simulated hang rate "
                  f"{hang_rate})", flush=True)
            flag.sleep_until(math.inf)
        walk = rng(seed, "simulate", sim)
        state = encoding.copy()
        print(f"toy simulate: {sim} runs {n_steps} steps", flush=True)  # the log's first line
        deadline = time.monotonic()
        for step in range(1, n_steps + 1):
            deadline += step_seconds
            flag.sleep_until(deadline)
            state += PULL * (encoding - state) + KICK * walk.standard_normal(state.size)
            if frames:
                frame = maps[frames] @ state
                if bounds is not None:
                    # Squash into the selector's box (strictly inside: the top edge is no bin).
                    unit = 0.0005 + 0.999 * (np.tanh(frame / 3.0) + 1.0) / 2.0
                    frame = bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * unit
                outs[frames].emit(frame, meta={"step": step})
                counts[frames] += 1
            if feedback and (step % FEEDBACK_EVERY == 0 or step == n_steps):
                out = outs[feedback]
                item = maps[feedback] @ state
                out.emit(item + FEEDBACK_NOISE * walk.standard_normal(out.plan.dim),
                         meta={"step": step})
                counts[feedback] += 1
        flag.check()
        workdir.mkdir(parents=True, exist_ok=True)
        write_json(workdir / "result.json",
                   {"sim": sim, "steps": n_steps, "candidate": info.get("candidate"),
                    "frames": counts.get(frames or "", 0),
                    "feedback": counts.get(feedback or "", 0),
                    # The device the scheduler bound this run to, as a GPU code would log it.
                    "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "state": [round(float(v), 6) for v in state]})
        write_success(workdir, success, {"sim": sim, "job": job, "attempt": ctx.attempt})
        return 0
