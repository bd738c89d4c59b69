"""The workflow manager: ingest, select, spawn and track jobs, feedback; resumes from its ledger."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mummi_spec.errors import MummiError, SchedulerError, SelectorError, UsageError
from mummi_spec.runtime import tracker
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import FeedbackLoop, selector_weights
from mummi_spec.runtime.ingest import Guarded, Ingest
from mummi_spec.runtime.jobs import make_request
from mummi_spec.runtime.ledger import LIVE_JOB_STATES, JobRow, Ledger
from mummi_spec.runtime.registry import SELECTORS
from mummi_spec.runtime.schedulers.base import JobState, SchedulerAdapter
from mummi_spec.runtime.status import write_status

log = logging.getLogger("mummi.manager")

_SUBMIT_THREADS = 4  # a few submitters hide sbatch's round trip; more only contend on slurmctld
_MAX_BACKOFF = 60.0


def check_workspace(campaign: Campaign, ledger: Ledger) -> None:
    """Claim the workspace for this plan, or refuse a plan other than the one that started it."""
    digest = hashlib.sha256(campaign.plan_path.read_bytes()).hexdigest()
    found = ledger.meta("plan_sha256")
    if found is None:
        ledger.set_meta("plan_sha256", digest)
        ledger.set_meta("campaign", campaign.plan["name"])
    elif found != digest:
        raise UsageError(
            f"workspace {campaign.workspace} holds campaign '{ledger.meta('campaign')}' started "
            "from a different plan.json; resuming it with this plan would mix two campaigns. "
            "Use another --workspace, or recompile the spec the campaign was started with")


class Clock:
    """Wall-clock time; ``mummi simulate`` swaps in a virtual one."""

    def __init__(self) -> None:
        self._wake = threading.Event()

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def wake(self) -> None:
        self._wake.set()


@dataclass
class Live:
    """A job the manager is tracking."""

    row: JobRow
    coupling: str | None
    role: str


@dataclass
class Pipeline:
    """One coupling's queues: selected sims waiting for setup, set-up sims waiting for a GPU."""

    name: str
    config: dict[str, Any]
    cap: int
    waiting: list[str] = dataclasses.field(default_factory=list)
    ready: list[str] = dataclasses.field(default_factory=list)
    selected: int = 0
    chosen: set[str] = dataclasses.field(default_factory=set)  # candidates it ever selected


class _InlineExecutor(Executor):
    """Runs each call at once in the caller's thread: submissions one by one, in order."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


class Manager:
    """One campaign's workflow manager. ``run()`` returns ``"complete"`` or ``"stopped"``.

    ``threads=False`` runs everything in the calling thread: ingest and feedback when due,
    submissions one after another in order (a virtual clock needs one thread of control).
    ``status_every``: seconds of clock time between ``status.json`` writes (0: each iteration).
    """

    def __init__(self, campaign: Campaign, scheduler: SchedulerAdapter, *,
                 clock: Clock | None = None, threads: bool = True,
                 status_every: float = 0.0) -> None:
        self.c = campaign
        self.plan = campaign.plan
        self.ws = campaign.workspace
        self.sched = scheduler
        self.clock = clock or Clock()
        self.threads = threads
        self.ledger = Ledger(self.ws / "ledger.sqlite")
        self.stop_requested = threading.Event()
        self.live: dict[str, Live] = {}
        self.history: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.attempts: Counter[tuple[str, str]] = Counter()  # highest attempt number used
        self.persistent_retry: set[str] = set()  # persistent jobs whose submission was refused
        self.unrunnable: dict[str, str] = {}  # job type -> why its program cannot be started
        self.sims: dict[str, tuple[str, str, str]] = {}  # sim -> (coupling, candidate, state)
        self.setup_dirs: dict[str, str] = {}
        self.used: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # coupling -> gpus, cores
        self.count: Counter[str] = Counter()  # live instances per job type
        self.live_by: Counter[tuple[str | None, str]] = Counter()  # per (coupling, job type)
        self._running = [0, 0, 0]  # GPUs, cores and number of the live jobs now running
        self.by_sched_id: dict[str, str] = {}  # scheduler id -> name, of live jobs
        caps = tracker.sim_cap(self.plan)
        self.pipes = {n: Pipeline(n, cfg, caps[n])
                      for n, cfg in sorted(self.plan["couplings"].items())}
        self.selectors: dict[str, Guarded] = {}
        self.ingests: dict[str, Ingest] = {}
        self.loops: dict[str, FeedbackLoop] = {}
        self.backoff_until = 0.0
        self.backoff = 1.0
        self.t0 = 0.0
        self.last_checkpoint = 0.0
        self.last_poll = 0.0
        self.status_every = status_every
        self.last_status = -math.inf
        self.last_occupancy: tuple[int, ...] = ()
        self._exhausted_ticks = 0
        self._bg: list[threading.Thread] = []
        self._pool: Executor = ThreadPoolExecutor(
            _SUBMIT_THREADS, thread_name_prefix="mummi-submit") if threads else _InlineExecutor()

    # ================================================================ setup
    def _check_plan(self) -> None:
        check_workspace(self.c, self.ledger)
        if self.ledger.meta("started") is None:
            self.ledger.set_meta("started", repr(self.clock.now()))
        self.t0 = float(self.ledger.meta("started") or self.clock.now())

    def _open_selectors(self) -> None:
        ckdir = self.ws / "checkpoints"
        used = {p.config["selector"] for p in self.pipes.values()}
        for name in sorted(used):
            cfg = self.plan["selectors"][name]
            sel = SELECTORS.get(cfg["kind"])(cfg, seed=int(cfg.get("seed", 0)))
            for path in (ckdir / f"{name}.npz", ckdir / f"{name}.prev.npz"):
                if not path.exists():
                    continue
                try:
                    sel.load(path)
                    log.info("selector %s restored from %s", name, path.name)
                    break
                except SelectorError as exc:
                    log.error("%s; trying the previous checkpoint", exc)
            else:
                if any(ckdir.glob(f"{name}*.npz")):
                    raise UsageError(f"every checkpoint of selector '{name}' in {ckdir} is "
                                     "unreadable; refusing to restart it from nothing")
                if self.ledger.sims():
                    log.warning("selector %s has no checkpoint yet: rebuilding it from the "
                                "stores", name)
            self.selectors[name] = Guarded(sel)

    def _open_streams(self) -> None:
        by_stream: dict[str, list[str]] = defaultdict(list)
        for p in self.pipes.values():
            by_stream[p.config["from"]].append(p.name)
        for stream, couplings in sorted(by_stream.items()):
            guarded = [self.selectors[self.pipes[c].config["selector"]] for c in couplings]
            known: set[str] = set()
            for c in couplings:
                known |= self.ledger.selected_candidates(c)
            for g in guarded:
                known.update(g.selector.known_ids())  # type: ignore[attr-defined]
            self.ingests[stream] = Ingest(stream, self.c, self.ledger, guarded, known)

    def _open_feedback(self) -> None:
        for name, cfg in sorted(self.plan.get("feedback", {}).items()):
            weights = None
            src = cfg.get("weights_from")
            if cfg["aggregate"] == "weighted_mean" and src in self.selectors:
                g = self.selectors[src]

                def lookup(g: Guarded = g) -> dict[str, float]:
                    with g.lock:
                        return g.selector.weights(normalize=False)

                weights = selector_weights(self.ledger, lookup)
            self.loops[name] = FeedbackLoop(name, self.c, self.ledger, weights)

    def _recover(self) -> None:
        """Rebuild the in-memory queues from the ledger; finish what a crash interrupted."""
        for row in self.ledger.sims():
            self.sims[row.sim] = (row.coupling, row.candidate, row.state)
            if row.setup_dir:
                self.setup_dirs[row.sim] = row.setup_dir
            pipe = self.pipes.get(row.coupling)
            if pipe is None:
                continue
            pipe.selected += 1
            pipe.chosen.add(row.candidate)
            if row.state == "selected":
                pipe.waiting.append(row.sim)
            elif row.state == "ready":
                pipe.ready.append(row.sim)
        jobs = self.ledger.jobs()
        latest: dict[tuple[str | None, str], JobRow] = {}
        for j in jobs:
            key = (j.sim or "", j.job_type)
            self.attempts[key] = max(self.attempts[key], j.attempt)
            if j.state not in LIVE_JOB_STATES:
                self.history[key].append(j.state)
            latest[(j.sim, j.job_type)] = j
        live = [j for j in latest.values() if j.state in LIVE_JOB_STATES]
        status = self.sched.status([j.sched_id for j in live if j.sched_id]) if live else {}
        for j in live:
            st = status.get(j.sched_id or "")
            if st is None or st.state == JobState.UNKNOWN:
                # Submitted by an earlier manager whose jobs this scheduler cannot re-attach.
                self.ledger.set_job(j.name, "lost", reason="manager restarted",
                                    t=self.clock.now())
                self._ended(j, "lost", "manager restarted", track=False)
            else:
                self._track(j)
        # Sims whose last job ended (or was cancelled at a stop) without the sim moving on.
        for sim, (coupling, _, state) in sorted(self.sims.items()):
            if state not in ("setup", "simulating"):
                continue
            cfg = self.pipes[coupling].config
            job_type = cfg["setup"] if state == "setup" else cfg["simulation"]
            last = latest.get((sim, job_type))
            if last is None or last.state in ("cancelled", "lost", "submitting"):
                self._ended(last or JobRow("", job_type, sim, 0, "lost", None, "", 0, 0),
                            "lost", "never ran to an end", track=False)
            elif last.state not in LIVE_JOB_STATES:
                self._ended(last, last.state, last.reason or "", track=False)

    # ================================================================= run
    def run(self) -> str:
        self._check_plan()
        self._open_selectors()
        self._open_streams()
        self._open_feedback()
        self._recover()
        self._start_persistent()
        self.ledger.set_meta("outcome", "running")
        self._start_background()
        tick = float(self.plan["manager"]["tick"])
        stop_after = float(self.plan["manager"].get("stop_after") or 0) or None
        self.last_checkpoint = self.clock.now()
        outcome = "stopped"
        try:
            while not self.stop_requested.is_set():
                now = self.clock.now()
                if not self.threads:
                    self._run_due(now)
                self._poll(now)
                self._schedule(now)
                self._observe(now)
                if now - self.last_checkpoint >= float(self.plan["manager"]["checkpoint_every"]):
                    self.checkpoint()
                if self._finished():
                    outcome = "complete"
                    break
                if stop_after is not None and now - self.t0 >= stop_after:
                    log.info("stop_after (%.0f s) reached", stop_after)
                    outcome = "complete"
                    break
                self.clock.sleep(tick)
        finally:
            self._shutdown(outcome)
        return outcome

    def request_stop(self) -> None:
        """Stop spawning, checkpoint, leave a resumable workspace (from a signal handler)."""
        self.stop_requested.set()
        self.clock.wake()

    # ======================================================= background work
    def _periodic(self) -> list[tuple[str, float, Callable[[], object]]]:
        tick = float(self.plan["manager"]["tick"])
        tasks: list[tuple[str, float, Callable[[], object]]] = [
            (f"ingest {s}", tick, i.run_once) for s, i in self.ingests.items()]
        tasks += [(f"feedback {n}", float(f.config["period"]), f.iterate)
                  for n, f in self.loops.items()]
        return tasks

    def _start_background(self) -> None:
        self._due = {name: 0.0 for name, _, _ in self._periodic()}
        if not self.threads:
            return
        for name, period, fn in self._periodic():
            t = threading.Thread(target=self._loop, args=(name, period, fn), daemon=True,
                                 name=f"mummi-{name}")
            t.start()
            self._bg.append(t)

    def _loop(self, name: str, period: float, fn: Callable[[], object]) -> None:
        while not self.stop_requested.is_set():
            self._guarded(name, fn)
            self.stop_requested.wait(period)

    def _run_due(self, now: float) -> None:
        for name, period, fn in self._periodic():
            if now >= self._due[name]:
                self._guarded(name, fn)
                self._due[name] = now + period

    @staticmethod
    def _guarded(name: str, fn: Callable[[], object]) -> None:
        # A store outage or one bad batch must not end the campaign: log it, try next period.
        try:
            fn()
        except MummiError as exc:  # an outage or bad data, already explained: one line
            log.warning("%s failed: %s; retrying next period", name, exc)
        except Exception:  # a bug: keep the traceback for the report
            log.exception("%s failed; retrying next period", name)

    # ========================================================== submission
    def _start_persistent(self) -> None:
        resumed_stop = self.ledger.meta("outcome") == "stopped"
        for name, job in sorted(self.plan["jobs"].items()):
            if job["role"] != "persistent":
                continue
            if any(lj.row.job_type == name for lj in self.live.values()):
                continue
            ends = self.history[("", name)]
            if ends and not ((ends[-1] in ("cancelled", "lost") and resumed_stop)
                             or tracker.should_retry(job, ends[-1], ends[:-1])):
                continue  # completed, or failed for good, or ended with a finished campaign
            self._submit([(name, None, None)])

    def _submit(self, batch: list[tuple[str, str | None, str | None]], reserved: bool = False
                ) -> None:
        """Submit ``(job type, sim, coupling)`` instances, a few at a time in parallel.

        ``reserved``: the scheduling pass already counted their resources.
        """
        prepared = []
        now = self.clock.now()
        for job_type, sim, coupling in batch:
            job = self.plan["jobs"][job_type]
            # Every attempt gets its own name and directory, even one that never ran: a job
            # orphaned by a killed manager may still be writing into the old one.
            attempt = self.attempts[(sim or "", job_type)] + 1
            self.attempts[(sim or "", job_type)] = attempt
            name = tracker.job_name(sim, job_type, attempt)
            workdir = self.ws / "runs" / (sim or "persistent") / f"{job_type}.{attempt}"
            res = job["resources"]  # gpus and cores are per instance, over all its nodes
            row = JobRow(name, job_type, sim, attempt, "submitting", None, str(workdir),
                         res["gpus"], res["cores"])
            values = {"WORKSPACE": str(self.ws), "PLAN": str(self.c.plan_path),
                      "PYTHON": sys.executable, "WORKDIR": str(workdir)}
            env = {"MUMMI_WORKSPACE": str(self.ws), "MUMMI_PLAN": str(self.c.plan_path),
                   "MUMMI_JOB_TYPE": job_type, "MUMMI_ATTEMPT": str(attempt)}
            if sim is not None and coupling is not None:
                candidate = self.sims[sim][1]
                values |= {"SIM": sim, "CANDIDATE": candidate,
                           "SETUP_DIR": self.setup_dirs.get(sim, "")}
                env |= {"MUMMI_SIM": sim, "MUMMI_CANDIDATE": candidate, "MUMMI_COUPLING": coupling}
            request = make_request(self.plan, job_type, name=name, workdir=workdir, values=values)
            request = dataclasses.replace(request, env={**request.env, **env})
            self.ledger.add_job(row, now)
            self._hold(row, coupling, job["role"], reserve=not reserved)
            prepared.append((row, request))
        futures = [self._pool.submit(self.sched.submit, req) for _, req in prepared]
        refused = 0
        for (row, _), fut in zip(prepared, futures, strict=True):
            try:
                sched_id = fut.result()
            except SchedulerError as exc:
                # Refused: not the job's fault, so not charged; back off before trying again.
                log.warning("submission of %s refused: %s; backing off %.0f s", row.name, exc,
                            self.backoff)
                refused += 1
                self.ledger.set_job(row.name, "lost", reason=f"submission refused: {exc}",
                                    t=self.clock.now())
                self._release(row.name)
                self._requeue(row)
                continue
            self.ledger.set_job(row.name, "queued", sched_id=sched_id)
            self._restate(self.live[row.name], state="queued", sched_id=sched_id)
        # Once per round, not per refused job: a refused batch of 500 would otherwise jump
        # straight to the longest wait.
        if refused:
            self.backoff_until = self.clock.now() + self.backoff
            self.backoff = min(self.backoff * 2, _MAX_BACKOFF)
        elif prepared:
            self.backoff = 1.0

    def _hold(self, row: JobRow, coupling: str | None, role: str, reserve: bool = True
              ) -> None:
        self.live[row.name] = Live(row, coupling, role)
        self.live_by[(coupling, row.job_type)] += 1
        if row.sched_id:
            self.by_sched_id[row.sched_id] = row.name
        self._count_running(row, +1)
        if reserve:
            self._reserve(coupling, row.job_type, +1)

    def _release(self, name: str) -> Live | None:
        live = self.live.pop(name, None)
        if live is not None:
            self.live_by[(live.coupling, live.row.job_type)] -= 1
            self.by_sched_id.pop(live.row.sched_id or "", None)
            self._count_running(live.row, -1)
            self._reserve(live.coupling, live.row.job_type, -1)
        return live

    def _restate(self, live: Live, **changes: Any) -> None:
        """Change a live job's row; every change goes through here, so the counts stay right
        without a pass over all live jobs each iteration."""
        self._count_running(live.row, -1)
        live.row = dataclasses.replace(live.row, **changes)
        self._count_running(live.row, +1)
        if live.row.sched_id:
            self.by_sched_id[live.row.sched_id] = live.row.name

    def _count_running(self, row: JobRow, sign: int) -> None:
        if row.state == "running":
            self._running[0] += sign * row.gpus
            self._running[1] += sign * row.cores
            self._running[2] += sign

    def _track(self, row: JobRow) -> None:
        coupling = self.sims[row.sim][0] if row.sim else None
        self._hold(row, coupling, self.plan["jobs"][row.job_type]["role"])

    def _requeue(self, row: JobRow) -> None:
        """Put a sim whose job must run again at the front of the queue it came from."""
        if row.sim is None:
            self.persistent_retry.add(row.job_type)
            return
        coupling, _, state = self.sims[row.sim]
        pipe = self.pipes[coupling]
        if state == "setup":
            self._set_sim(row.sim, "selected")
            pipe.waiting.insert(0, row.sim)
        elif state == "simulating":
            self._set_sim(row.sim, "ready")
            pipe.ready.insert(0, row.sim)

    # ============================================================ tracking
    def _poll(self, now: float) -> None:
        if now - self.last_poll < float(self.plan["scheduler"]["poll"]) or not self.live:
            return
        self.last_poll = now
        ids = self.by_sched_id
        # An adapter that can tell which jobs changed state since it last reported them
        # offers ``changed(ids)`` (same answer, unchanged ids left out): with thousands of
        # long simulations, most polls then look at a few jobs instead of all of them.
        changed = getattr(self.sched, "changed", None)
        for sched_id, st in (changed or self.sched.status)(list(ids)).items():
            name = ids.get(sched_id)
            live = self.live.get(name or "")
            if live is None:
                continue
            state, reason = tracker.outcome(self.plan["jobs"][live.row.job_type], st,
                                            Path(live.row.workdir))
            if state in ("unknown", live.row.state):
                continue
            if state in ("queued", "running"):
                self.ledger.set_job(live.row.name, state)
                self._restate(live, state=state)
                continue
            self.ledger.set_job(live.row.name, state, exit_code=st.exit_code,
                                reason=reason or None, t=now)
            self._release(live.row.name)
            self._ended(live.row, state, reason, exit_code=st.exit_code)

    def _ended(self, row: JobRow, state: str, reason: str, track: bool = True,
               exit_code: int | None = None) -> None:
        """Move the pipeline on after a job ended in ``state``."""
        key = (row.sim or "", row.job_type)
        job = self.plan["jobs"][row.job_type]
        history = self.history[key]
        if track and state != "lost":
            history.append(state)
        if state != "completed":
            log.info("job %s ended %s%s", row.name, state, f": {reason}" if reason else "")
        if state == "failed" and tracker.not_runnable(job, exit_code):
            self._mark_unrunnable(row.job_type, reason)
        if row.sim is None:  # a persistent job
            if state != "completed" and (state in ("lost", "cancelled") or tracker.should_retry(
                    job, state, history[:-1], exit_code)) and not self.stop_requested.is_set():
                self._submit([(row.job_type, None, None)])
            return
        coupling = self.sims[row.sim][0]
        pipe = self.pipes[coupling]
        is_setup = row.job_type == pipe.config.get("setup")
        if state == "completed":
            if is_setup:
                self.setup_dirs[row.sim] = row.workdir
                self._set_sim(row.sim, "ready", setup_dir=row.workdir)
                pipe.ready.append(row.sim)
            else:
                self._set_sim(row.sim, "done", t=self.clock.now())
            return
        if state in ("lost", "cancelled") or tracker.should_retry(job, state, history[:-1],
                                                                  exit_code):
            self._requeue(row)  # it competes for resources like any other instance
        else:
            self._set_sim(row.sim, "failed", reason=f"{row.job_type}: {state} {reason}".strip(),
                          t=self.clock.now())

    def _mark_unrunnable(self, job_type: str, reason: str) -> None:
        """Start no more jobs of a type whose program is missing: every instance would fail
        the same way. Its couplings stop; their queued selections stay for a resumed run."""
        if job_type not in self.unrunnable:
            self.unrunnable[job_type] = reason
            log.error("job type %s cannot run: %s; no more %s jobs are started and the "
                      "couplings that need it stop (`mummi run` again resumes them once the "
                      "program is there)", job_type, reason, job_type)

    def _stalled(self, pipe: Pipeline) -> bool:
        return bool(self.unrunnable.keys() & {pipe.config["simulation"], pipe.config.get("setup")})

    def _set_sim(self, sim: str, state: str, **kw: Any) -> None:
        coupling, candidate, old = self.sims[sim]
        if old != state:
            tracker.check_transition(sim, old, state)
        self.ledger.set_sim(sim, state, **kw)
        self.sims[sim] = (coupling, candidate, state)

    # ========================================================== scheduling
    def _fits(self, pipe: Pipeline, job_type: str) -> bool:
        return self._slots(pipe, job_type) > 0

    def _slots(self, pipe: Pipeline, job_type: str) -> int:
        """How many more instances of ``job_type`` its coupling's budget and cap allow now."""
        job = self.plan["jobs"][job_type]
        r = job["resources"]
        budget = self.plan["resources"]["budgets"][pipe.name]
        gpus, cores = self.used[pipe.name]
        free = (budget["gpus"] - gpus) // max(r["gpus"], 1) if job["pool"] == "gpu" \
            else (budget["cores"] - cores) // max(r["cores"], 1)
        return int(max(0, min(free, int(job["max_concurrent"]) - self.count[job_type])))

    def _schedule(self, now: float) -> None:
        if self.stop_requested.is_set() or now < self.backoff_until:
            return
        if self.persistent_retry:
            retry, self.persistent_retry = sorted(self.persistent_retry), set()
            self._submit([(job_type, None, None) for job_type in retry])
            if now < self.backoff_until:  # refused again: that was this round's attempt
                return
        per_iteration = int(self.plan["scheduler"].get("per_iteration") or 1 << 30)
        batch: list[tuple[str, str | None, str | None]] = []
        for pipe in self.pipes.values():
            if self._stalled(pipe):
                continue
            cfg = pipe.config
            sim_type, setup_type = cfg["simulation"], cfg.get("setup")
            # 1. Set-up simulations onto free GPUs, oldest first.
            while pipe.ready and len(batch) < per_iteration and self._fits(pipe, sim_type):
                sim = pipe.ready.pop(0)
                self._set_sim(sim, "simulating")
                self._hold_pending(batch, sim_type, sim, pipe)
            in_setup = self.live_by[(pipe.name, setup_type)] if setup_type else 0
            want = int(cfg["ready_buffer"]) + self._slots(pipe, sim_type)
            # 2. Setups, so that ready + setting-up covers the buffer and the free GPUs.
            while pipe.waiting and len(batch) < per_iteration:
                if setup_type is None:
                    sim = pipe.waiting.pop(0)
                    self._set_sim(sim, "ready")
                    pipe.ready.append(sim)
                    continue
                if len(pipe.ready) + in_setup >= want or not self._fits(pipe, setup_type):
                    break
                sim = pipe.waiting.pop(0)
                self._set_sim(sim, "setup")
                self._hold_pending(batch, setup_type, sim, pipe)
                in_setup += 1
            # 3. Selection, bounded by back-pressure, the per-iteration cap and the campaign cap.
            pending = len(pipe.waiting) + in_setup + len(pipe.ready)
            need = want - pending
            n = min(need, int(cfg["max_pending"]) - pending,
                    int(cfg["max_selections_per_iteration"]), pipe.cap - pipe.selected)
            if n > 0:
                self._select(pipe, n, now)
        if batch:
            self._submit(batch, reserved=True)

    def _hold_pending(self, batch: list[tuple[str, str | None, str | None]], job_type: str,
                      sim: str, pipe: Pipeline) -> None:
        # Reserve the resources now so later decisions in this tick see them taken.
        batch.append((job_type, sim, pipe.name))
        self._reserve(pipe.name, job_type, +1)

    def _reserve(self, coupling: str | None, job_type: str, sign: int) -> None:
        """Count an instance (and its GPUs or cores against its coupling's budget) in or out."""
        self.count[job_type] += sign
        job = self.plan["jobs"][job_type]
        r = job["resources"]
        if coupling is None:
            return
        if job["pool"] == "gpu":
            self.used[coupling][0] += sign * r["gpus"]
        else:
            self.used[coupling][1] += sign * r["cores"]

    def _select(self, pipe: Pipeline, n: int, now: float) -> None:
        g = self.selectors[pipe.config["selector"]]
        with g.lock:
            ids = g.selector.select(n)
        # A selector restored from a checkpoint older than the ledger offers again what it
        # chose after that checkpoint; the ledger has those already.
        ids = [c for c in ids if c not in pipe.chosen]
        if not ids:
            return
        seq = self.ledger.next_seq()
        scale = pipe.config["to"]
        rows = [(f"{scale}-{seq + i:06d}", pipe.name, cand, seq + i, now)
                for i, cand in enumerate(ids)]
        self.ledger.add_sims(rows)  # durable before anything is submitted for them
        for sim, _, cand, _, _ in rows:
            self.sims[sim] = (pipe.name, cand, "selected")
            pipe.waiting.append(sim)
            pipe.chosen.add(cand)
        pipe.selected += len(rows)

    # ======================================================== observation
    def busy(self) -> tuple[int, int]:
        return self._running[0], self._running[1]

    def _observe(self, now: float) -> None:
        gpus, cores = self.busy()
        running = self._running[2]
        queued = len(self.live) - running
        sample = (gpus, cores, running, queued)
        if sample != self.last_occupancy:
            self.ledger.record_occupancy(now - self.t0, *sample)
            self.last_occupancy = sample
        if now - self.last_status >= self.status_every:
            write_status(self.ws, self.snapshot("running", now))
            self.last_status = now

    def snapshot(self, state: str, now: float | None = None) -> dict[str, Any]:
        now = self.clock.now() if now is None else now
        jobs: dict[str, Counter[str]] = defaultdict(Counter)
        for lj in self.live.values():
            jobs[lj.row.job_type][lj.row.state] += 1
        for (_, job_type), ends in self.history.items():
            for s in ends:
                jobs[job_type][s] += 1
        sims = Counter(s for _, _, s in self.sims.values())
        gpus, cores = self.busy()
        res = self.plan["resources"]
        return {
            "campaign": self.plan["name"], "state": state, "elapsed": round(now - self.t0, 1),
            "candidates": {s: {"ingested": i.ingested, "rejected": i.rejected}
                           for s, i in self.ingests.items()},
            "selected": {p.name: p.selected for p in self.pipes.values()},
            "sims": dict(sorted(sims.items())),
            "jobs": {t: dict(sorted(c.items())) for t, c in sorted(jobs.items())},
            "feedback": {n: dict(zip(("iteration", "items"),
                                     self.ledger.feedback_state(n)[:2], strict=True))
                         for n in self.loops},
            "busy": {"gpus": gpus, "cores": cores},
            "unrunnable": dict(sorted(self.unrunnable.items())),
            "pool": {"gpus": res["gpu_pool"], "cores": res["gpu_pool"] * res["cores_per_gpu"]
                     + res["cpu_pool"]},
        }

    def _finished(self) -> bool:
        if any(lj.role != "persistent" for lj in self.live.values()):
            return False
        active = [p for p in self.pipes.values() if not self._stalled(p)]
        if any(p.waiting or p.ready for p in active):
            return False
        if all(p.selected >= p.cap for p in active):
            return True
        # Sources exhausted: no persistent job left, no sim in flight, nothing to select. A
        # persistent job the scheduler refused is not gone: it is submitted again.
        if self.persistent_retry or any(lj.role == "persistent" for lj in self.live.values()):
            self._exhausted_ticks = 0
            return False
        self._exhausted_ticks += 1
        return self._exhausted_ticks > 3 * max(1, len(self.ingests)) + 10

    # ============================================================ shutdown
    def checkpoint(self) -> None:
        ckdir = self.ws / "checkpoints"
        ckdir.mkdir(parents=True, exist_ok=True)
        for name, g in self.selectors.items():
            path, prev = ckdir / f"{name}.npz", ckdir / f"{name}.prev.npz"
            with g.lock:
                if path.exists():
                    path.replace(prev)  # keep one good checkpoint while writing the next
                g.selector.save(path)
        self.last_checkpoint = self.clock.now()

    def _shutdown(self, outcome: str) -> None:
        self.stop_requested.set()
        for t in self._bg:
            t.join()
        survives = bool(getattr(self.sched, "jobs_survive_manager", False))
        ending = [lj for lj in self.live.values()
                  if outcome == "complete" or not survives]
        if ending:
            # Finished campaign: persistent jobs are no longer needed. Stopped campaign on a
            # scheduler that cannot re-attach: cancel, and resubmit on resume.
            self.sched.cancel([lj.row.sched_id for lj in ending if lj.row.sched_id])
            for lj in ending:
                self.ledger.set_job(lj.row.name, "cancelled", reason=f"campaign {outcome}",
                                    t=self.clock.now())
                # Off the live set too, so the final status counts it cancelled, not running.
                self._release(lj.row.name)
                self.history[(lj.row.sim or "", lj.row.job_type)].append("cancelled")
        for stream, ingest in self.ingests.items():
            self._guarded(f"ingest {stream}", ingest.run_once)
        for name, loop in self.loops.items():  # the last items of the last simulations count
            self._guarded(f"feedback {name}", loop.iterate)
        self.checkpoint()
        self.ledger.set_meta("outcome", outcome)
        write_status(self.ws, self.snapshot(outcome))
        self._pool.shutdown(wait=True)
        self.sched.close()
        self.c.close()
