"""Toy setup job: read one selected candidate and prepare a simulation system from it."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np

from mummi_spec import app
from mummi_spec.errors import UsageError
from mummi_spec.runtime.toy._model import (
    StopFlag,
    ToyFailureError,
    job_context,
    success_name,
    uniform,
    write_file,
    write_json,
    write_success,
)

SYSTEM = "system.npz"
SYSTEM_INFO = "system.json"


def run(plan: Path, candidate: str | None, workdir: Path, fail_rate: float,
        success_file: str | None, seconds: float, coupling_name: str | None, seed: int) -> int:
    """Prepare ``workdir`` from ``candidate``; 0 on success, ``ToyFailureError`` otherwise."""
    stop = StopFlag.install()
    with job_context(plan, candidate=candidate, coupling=coupling_name) as ctx:
        coupling = ctx.coupling_plan()
        ctx.job_type = ctx.job_type or coupling.setup  # run by hand: the coupling's setup
        job = ctx.job_type or ""
        success = success_name(ctx, success_file)
        if not ctx.candidate_id:
            raise UsageError("no candidate: pass --candidate or set MUMMI_CANDIDATE")
        key = ctx.candidate_id
        try:
            cand = ctx.candidate()
        except app.AppError as exc:
            raise ToyFailureError(str(exc)) from None

        # Real setups take a while and sometimes fail; both are drawn from the candidate and
        # the attempt, so a run is reproducible and a retry gets a fresh chance.
        stop.sleep_until(time.monotonic()
                         + seconds * (2 + 2 * uniform(seed, "setup-time", key, ctx.attempt)) / 3)
        if fails(seed, key, ctx.attempt, fail_rate):
            raise ToyFailureError(f"setup of candidate {key!r} failed (attempt {ctx.attempt}, "
                                  f"simulated failure rate {fail_rate})")

        workdir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, encoding=cand.values.astype(np.float32), candidate=np.array(key))
        write_file(workdir / SYSTEM, buf.getvalue())
        info = {"candidate": key, "coupling": coupling.name, "stream": coupling.source,
                "job": job, "attempt": ctx.attempt, "tag": cand.tag, "meta": cand.meta,
                "dim": int(cand.values.size)}
        write_json(workdir / SYSTEM_INFO, info)
        write_success(workdir, success, {"candidate": key, "job": job, "attempt": ctx.attempt})
        return 0


def fails(seed: int, candidate: str, attempt: int, rate: float) -> bool:
    """Whether this attempt at setting up ``candidate`` fails, at ``--fail-rate`` ``rate``."""
    return uniform(seed, "setup-fail", candidate, attempt) < rate


def load_system(setup_dir: Path) -> tuple[np.ndarray, dict[str, object]]:
    """The encoding a setup prepared and its description; ``ToyFailureError`` if unusable."""
    try:
        with np.load(setup_dir / SYSTEM) as npz:
            encoding = np.asarray(npz["encoding"], dtype=np.float64)
        info = json.loads((setup_dir / SYSTEM_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise ToyFailureError(f"no usable system in {setup_dir} ({exc}); "
                              "did its setup job succeed?") from None
    if encoding.ndim != 1 or not np.isfinite(encoding).all() or not isinstance(info, dict):
        raise ToyFailureError(f"the system in {setup_dir} is malformed")
    return encoding, info
