"""The workflow manager: ``start``, then ``tick`` until the campaign ends, then ``stop``.

Its parts each own one thing (Parsl's job-status-poller shape): the book owns sims and job
attempts (book.py), the policy decides (policy.py), the poller reads the scheduler
(poller.py), the submitter sends jobs (submitter.py), and the periodic tasks ingest candidates
and run the feedback loops (periodic.py). The manager wires them and keeps the clock.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from mummi_spec.errors import LeaseLostError, MummiError, SelectorError, UsageError, WorkspaceError
from mummi_spec.plan import LEDGER_FILE
from mummi_spec.runtime.book import Book, Pipeline
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import FeedbackLoop, selector_weights
from mummi_spec.runtime.ingest import Guarded, Ingest
from mummi_spec.runtime.lease import Lease
from mummi_spec.runtime.ledger import CallKind, CallRow, Ledger, pick_rows
from mummi_spec.runtime.periodic import Periodic, Task
from mummi_spec.runtime.policy import Policy
from mummi_spec.runtime.poller import Poller
from mummi_spec.runtime.registry import SELECTORS
from mummi_spec.runtime.schedulers.base import TERMINAL_STATES, JobState, SchedulerAdapter
from mummi_spec.runtime.states import CampaignState, Holder
from mummi_spec.runtime.status import STATUS_FILE, write_status
from mummi_spec.runtime.submitter import Submitter
from mummi_spec.runtime.workspace import claim, job_prefix
from mummi_spec.runtime.writes import Writes
from mummi_spec.units import format_hms

log = logging.getLogger("mummi.manager")

# A run stops this long before its allocation ends (2 %, at most a minute), so that the
# checkpoint and the last feedback pass are done before the scheduler kills the manager.
ALLOCATION_MARGIN = 60.0
ALLOCATION_SHARE = 0.02
# How long the end of a run waits for the jobs it cancelled to end (past their SIGTERM), so
# that its summary and report count what the stores hold and nothing runs on unseen.
END_WAIT = 15.0


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


class Manager:
    """One campaign's workflow manager. ``run()`` returns how it ended (``CampaignState``).

    ``threads=False`` runs everything in the calling thread: ingest and feedback when due,
    submissions one after another in order (a virtual clock needs one thread of control).
    ``status_every``: seconds of clock time between ``status.json`` writes (0: each tick).
    ``allocation_margin``: how long before its allocation's end a run stops (default 2 %, at
    most a minute; a virtual clock needs none).
    ``run_token``: the lease `mummi run` took for this manager (lease.TOKEN_ENV); the manager
    takes only that one. Without it, it takes the workspace if no one holds it.
    """

    def __init__(self, campaign: Campaign, scheduler: SchedulerAdapter, *,
                 clock: Clock | None = None, threads: bool = True,
                 status_every: float = 0.0, allocation_margin: float | None = None,
                 run_token: str | None = None) -> None:
        self.campaign = campaign
        self.plan = campaign.plan
        self.ws = campaign.workspace
        self.scheduler = scheduler
        self.clock = clock or Clock()
        self.threads = threads
        self.writes = Writes(self.plan.manager.write_retry_for)
        self.ledger = Ledger(self.ws / LEDGER_FILE, self.writes)
        self.book = Book(self.plan, self.ledger, self.ws)
        self.policy = Policy(self.plan, self.book, self._select)
        self.poller = Poller(self.plan, scheduler, self.book)
        self.submitter = Submitter(campaign, scheduler, self.book, self.clock.now, self.writes,
                                   threads=threads)
        self.selectors: dict[str, Guarded] = {}
        self.rebuilt: set[str] = set()  # selectors started without a usable checkpoint
        self.ingests: dict[str, Ingest] = {}
        self.loops: dict[str, FeedbackLoop] = {}
        self.periodic = Periodic([], threads=threads)
        self.stop_requested = threading.Event()
        self.run_token = run_token
        self.lease: Lease | None = None
        self.why = ""  # why the campaign ended, once it has
        self.allocation_ended = False
        allocation = self.plan.manager.allocation
        self.margin = min(ALLOCATION_MARGIN, ALLOCATION_SHARE * allocation) \
            if allocation_margin is None else allocation_margin
        self.t0 = 0.0  # when the campaign started (its first run)
        self.run_start = 0.0  # when this run, in its allocation, started
        self.last_checkpoint = 0.0
        self.status_every = status_every
        self.last_status = -math.inf
        self.last_occupancy: tuple[int, ...] = ()

    # ============================================================ lifecycle
    def start(self) -> None:
        """Claim the workspace and its lease, open selectors, streams and loops, resume from
        the ledger, and start the persistent jobs and the periodic tasks."""
        self.lease = claim(self.campaign, self.ledger, Holder.MANAGER, self.plan.manager.tick,
                           handover=self.run_token)
        if self.lease.row.stop:  # asked before this manager started (a queue wait, say)
            self._stop_asked(self.lease.row.stop)
        self.book.prefix = job_prefix(self.campaign, self.ledger.meta("campaign_id") or "")
        self.writes.reserve(self.ws)
        # The campaign's own code (aggregates) imports from the spec's pythonpath.
        sys.path[:0] = [p for p in self.campaign.python_paths() if p not in sys.path]
        now = self.clock.now()
        if self.ledger.meta("started") is None:
            self.ledger.set_meta("started", repr(now))
        self.t0 = float(self.ledger.meta("started") or now)
        self.run_start = now
        self._open_selectors()
        self._open_streams()
        self._open_feedback()
        self.book.recover(self.scheduler, now)
        self._heartbeat()
        previous = self.ledger.meta("outcome")
        self.ledger.record_run(now, previous, sorted(self.rebuilt))
        # A failed run cancelled its jobs as a stop does: they start again as after one.
        resumed_stop = previous in (CampaignState.STOPPED, CampaignState.FAILED)
        if not self.stop_requested.is_set():
            self._submit_persistent(now, start=True, resumed_stop=resumed_stop)
        self.ledger.set_meta("outcome", CampaignState.RUNNING)
        self.periodic = Periodic(self._tasks(), threads=self.threads)
        self.periodic.start()
        self.last_checkpoint = now

    def tick(self, now: float) -> str | None:
        """One pass: due tasks, poll, decide and submit, observe. Returns ``"complete"`` once
        the campaign has ended, ``"stopped"`` when this run's allocation ends or a stop was
        requested through the workspace (``why`` says which), else None."""
        by = self.lease.renew() if self.lease is not None else None
        if by is not None:
            self._stop_asked(by)
            return CampaignState.STOPPED
        self.periodic.run_due(now)
        self.poller.poll(now)
        self._schedule(now)
        self._observe(now)
        if now - self.last_checkpoint >= self.plan.manager.checkpoint_every:
            self.checkpoint()
        mp = self.plan.manager
        why = self.policy.finished()
        if why is None and mp.stop_after is not None and now - self.t0 >= mp.stop_after:
            why = f"manager.stop_after ({format_hms(mp.stop_after)}) was reached"
        if why is not None:
            self.why = why
            log.info("campaign complete: %s", why)
            return CampaignState.COMPLETE
        if now - self.run_start >= mp.allocation - self.margin:
            self.why = (f"its allocation ({format_hms(mp.allocation)}) ended; `mummi run` "
                        "again continues the campaign")
            self.allocation_ended = True
            log.info("stopping: %s", self.why)
            return CampaignState.STOPPED
        return None

    def run(self) -> str:
        """``start``, ``tick`` every ``manager.tick`` until the end or a stop, ``stop``.

        A workspace that refuses writes for longer than ``manager.write_retry_for`` ends the
        run ``failed`` (``why`` says where and why); a manager whose lease was taken over
        ends at once, touching nothing (``LeaseLostError``).
        """
        try:
            self.start()
        except WorkspaceError as exc:
            return self.stop(self._failed(exc))
        outcome: str = CampaignState.STOPPED
        try:
            while not self.stop_requested.is_set():
                ended = self.tick(self.clock.now())
                if ended is not None:
                    outcome = ended
                    break
                self.clock.sleep(self.plan.manager.tick)
        except LeaseLostError:
            self._lost()
            raise
        except WorkspaceError as exc:
            outcome = self._failed(exc)
        except BaseException:
            self.stop(outcome)
            raise
        return self.stop(outcome)

    def _stop_asked(self, by: str) -> None:
        self.why = f"a stop was requested ({by})"
        log.info("stopping: %s", self.why)
        self.request_stop()

    def _heartbeat(self) -> None:
        """Renew the lease during the long steps of a start or a stop, as a tick does."""
        if self.lease is not None:
            self.lease.renew()

    def release(self) -> None:
        """Leave the workspace to the next manager (after ``stop`` and the summary)."""
        if self.lease is None:
            return
        try:
            self.lease.release()
        except MummiError as exc:  # a full disk: the lease ends with this process instead
            log.error("could not release the workspace's lease (%s); a rerun on this machine "
                      "takes it over at once, elsewhere once its heartbeat is stale", exc)

    def _lost(self) -> None:
        """Another process took the workspace over (this one stalled past the lease's
        bound): end without a checkpoint, a cancel or a status, which are its now."""
        log.error("this manager lost the workspace's lease; it stops without touching it")
        self.stop_requested.set()
        self.periodic.stop()
        self.writes.release()
        self.submitter.close()
        self.scheduler.close()
        self.campaign.close()

    def request_stop(self) -> None:
        """Stop spawning, checkpoint, leave a resumable workspace (from a signal handler)."""
        self.stop_requested.set()
        self.book.stopping = True
        self.clock.wake()

    def stop(self, outcome: str) -> str:
        """End the campaign (``complete``) or leave it resumable (``stopped``, ``failed``);
        returns the outcome, ``failed`` if the workspace refused the last writes."""
        self.stop_requested.set()
        self.book.stopping = True
        self.periodic.stop()
        if outcome != CampaignState.FAILED:
            try:
                self._wind_down(outcome)
            except WorkspaceError as exc:
                outcome = self._failed(exc)
        if outcome == CampaignState.FAILED:
            self._abandon()
        self.writes.release()
        self.submitter.close()
        self.scheduler.close()
        self.campaign.close()
        return outcome

    def _failed(self, exc: WorkspaceError) -> str:
        self.why = str(exc)
        log.error("campaign failed: %s", exc)
        return CampaignState.FAILED

    def _abandon(self) -> None:
        """End as a crash would, once the workspace refuses writes: the ledger holds what
        committed, and a resumed run recovers from it. Only jobs the scheduler cannot find
        again are cancelled; one try at recording the failure, no waiting."""
        self.writes.release()  # room to say why on a full disk
        ending = [] if self.scheduler.jobs_survive_manager else list(self.book.live.values())
        try:
            self.scheduler.cancel([lj.row.sched_id for lj in ending if lj.row.sched_id])
        except MummiError as exc:
            log.error("could not cancel the jobs: %s", exc)
        self.writes.retry_for = 0.0
        now = self.clock.now()
        try:
            self.book.cancel_live([lj.row.name for lj in ending], "campaign failed", now)
            self.ledger.set_meta("outcome", CampaignState.FAILED)
            self._write_status(CampaignState.FAILED, now)
        except MummiError as exc:
            log.error("could not record the failure either: %s", exc)

    def _wind_down(self, outcome: str) -> None:
        self._heartbeat()
        # The last items of the last simulations count, and make a last iteration that the
        # coarse model, still running, reads when SIGTERM comes (docs/applications.md).
        self.periodic.run_all()
        self._heartbeat()
        now = self.clock.now()
        # Finished campaign: persistent jobs are no longer needed. Stopped campaign on a
        # scheduler that cannot re-attach: cancel, and resubmit on resume. Otherwise the jobs
        # run on, found again by id when the campaign resumes.
        ending = list(self.book.live.values()) \
            if outcome == "complete" or not self.scheduler.jobs_survive_manager else []
        if ending:
            ids = [lj.row.sched_id for lj in ending if lj.row.sched_id]
            self.scheduler.cancel(ids)
            self._await_end(ids)
            self.book.cancel_live([lj.row.name for lj in ending], f"campaign {outcome}", now)
        self.checkpoint()
        self.ledger.set_meta("outcome", outcome)
        self._write_status(outcome, now)

    def _await_end(self, ids: list[str]) -> None:
        """Wait, up to ``END_WAIT``, until the scheduler says the cancelled jobs ended (or
        knows them no more): a persistent producer still writes between its SIGTERM and its
        exit, which the last report would otherwise miss."""
        deadline = self.clock.now() + END_WAIT
        while ids:
            try:
                states = self.scheduler.status(ids)
            except MummiError as exc:  # the cancel went out; what is left is the scheduler's
                log.warning("could not ask whether the cancelled jobs ended: %s", exc)
                return
            ids = [i for i in ids if states[i].state not in TERMINAL_STATES
                   and states[i].state != JobState.UNKNOWN]
            if ids and self.clock.now() >= deadline:
                log.warning("%d cancelled job(s) had not ended %.0f s after the cancel; not "
                            "waiting for them", len(ids), END_WAIT)
                return
            if ids:
                self.clock.sleep(0.1)

    # ============================================================ wiring
    def _open_selectors(self) -> None:
        ckdir = self.ws / "checkpoints"
        for name in sorted({p.plan.selector for p in self.book.pipes.values()}):
            settings = self.plan.selectors[name]
            sel = SELECTORS.get(settings.kind)(settings)
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
                                "stores and the ledger", name)
                    self.rebuilt.add(name)
            # Restored or rebuilt, it stands for every batch recorded so far.
            self.selectors[name] = Guarded(sel, name=name, batch=self.ledger.last_batch())

    def _open_streams(self) -> None:
        by_stream: dict[str, list[Pipeline]] = defaultdict(list)
        for p in self.book.pipes.values():
            by_stream[p.plan.source].append(p)
        for stream, pipes in sorted(by_stream.items()):
            guarded = [self.selectors[p.plan.selector] for p in pipes]
            known: set[str] = set()
            for p in pipes:
                known |= self.ledger.selected_candidates(p.name)
            for g in guarded:
                known.update(g.selector.known_ids())
            ingest = Ingest(stream, self.campaign, self.ledger, guarded, known,
                            clock=self.clock.now)
            self.ingests[stream] = ingest
            # A selector rebuilt from nothing gets back what the ledger says it selected, as
            # selected: later picks keep away from them and feedback weights count them.
            for p in pipes:
                if p.plan.selector in self.rebuilt:
                    chosen = [r.candidate for r in self.ledger.sims() if r.coupling == p.name]
                    ingest.restore_selected(self.selectors[p.plan.selector], chosen)

    def _open_feedback(self) -> None:
        for name, loop in sorted(self.plan.feedback.items()):
            weights = None
            g = self.selectors.get(loop.weights_from or "")
            if loop.aggregate == "weighted_mean" and g is not None:

                def lookup(g: Guarded = g, selector: str = loop.weights_from or ""
                           ) -> dict[str, float]:
                    with g.lock:  # weights rank new candidates: a call to record
                        table = g.selector.weights(normalize=False)
                        call = CallRow(self.ledger.next_call(), CallKind.WEIGHTS, selector,
                                       None, self.clock.now(), 0, g.batch)
                    self.ledger.record_call(call)
                    return table

                weights = selector_weights(self.ledger, lookup)
            self.loops[name] = FeedbackLoop(name, self.campaign, self.ledger, weights)

    def _tasks(self) -> list[Task]:
        tasks = [Task(f"ingest {s}", self.plan.manager.tick, i.run_once)
                 for s, i in self.ingests.items()]
        return tasks + [Task(f"feedback {n}", f.config.period, f.iterate)
                        for n, f in self.loops.items()]

    # ============================================================ deciding
    def _schedule(self, now: float) -> None:
        if self.stop_requested.is_set() or not self.submitter.ready(now):
            return
        if self.book.persistent_retry:
            self._submit_persistent(now)
            if not self.submitter.ready(now):  # refused again: that was this round's try
                return
        self.submitter.submit(self.policy.decide(now))

    def _submit_persistent(self, now: float, *, start: bool = False,
                           resumed_stop: bool = False) -> None:
        due = self.book.persistent_due(start=start, resumed_stop=resumed_stop)
        self.submitter.submit([self.book.new_attempt(job_type, None, now) for job_type in due])

    def _select(self, pipe: Pipeline, n: int, now: float) -> None:
        g = self.selectors[pipe.plan.selector]
        with g.lock:
            ids = g.selector.select(n)
            call = CallRow(self.ledger.next_call(), CallKind.SELECT, pipe.plan.selector,
                           pipe.name, now, n, g.batch,
                           pick_rows(ids, g.selector.last_picks()))
        # A selector restored from a checkpoint older than the ledger offers again what it
        # chose after that checkpoint; the book skips those, the ledger has them already.
        self.book.select(pipe, ids, now, call)

    # ============================================================ observing
    def busy(self) -> tuple[int, int]:
        """GPUs and cores held by running attempts."""
        return self.book.running[0], self.book.running[1]

    def _observe(self, now: float) -> None:
        gpus, cores = self.busy()
        running = self.book.running[2]
        sample = (gpus, cores, running, len(self.book.live) - running)
        if sample != self.last_occupancy:
            self.ledger.record_occupancy(now - self.t0, *sample)
            self.last_occupancy = sample
        if now - self.last_status >= self.status_every:
            self._write_status(CampaignState.RUNNING, now)
            self.last_status = now

    def _write_status(self, state: str, now: float) -> None:
        status = self.snapshot(state, now)
        self.writes.run(self.ws / STATUS_FILE, lambda: write_status(self.ws, status))

    def snapshot(self, state: str, now: float | None = None) -> dict[str, Any]:
        """What status.json holds."""
        now = self.clock.now() if now is None else now
        book = self.book
        jobs: dict[str, Counter[str]] = defaultdict(Counter)
        for lj in book.live.values():
            jobs[lj.row.job_type][lj.row.state.value] += 1
        for (_, job_type), ends in book.history.items():
            for s in ends:
                jobs[job_type][s.value] += 1
        sims = Counter(s.state.value for s in book.sims.values())
        gpus, cores = self.busy()
        pools = self.plan.pools
        out: dict[str, Any] = {
            "campaign": self.plan.name, "state": state, "elapsed": round(now - self.t0, 1),
            "candidates": {s: {"ingested": i.ingested, "rejected": i.rejected,
                               "examples": [list(e) for e in i.examples],
                               **({"outside": i.outside} if i.outside else {})}
                           for s, i in self.ingests.items()},
            "refused": {"count": self.submitter.refused, "last": self.submitter.refusal},
            "selected": {p.name: p.selected for p in book.pipes.values()},
            "sims": dict(sorted(sims.items())),
            "jobs": {t: dict(sorted(c.items())) for t, c in sorted(jobs.items())},
            "feedback": {n: dict(zip(("iteration", "items"),
                                     self.ledger.feedback_state(n)[:2], strict=True))
                         for n in self.loops},
            "busy": {"gpus": gpus, "cores": cores},
            "unrunnable": dict(sorted(book.unrunnable.items())),
            "pool": {"gpus": pools.gpus_held, "cores": pools.cores_held},
        }
        if self.why:
            out["why"] = self.why
        if self.allocation_ended:
            out["allocation_ended"] = True
        if self.writes.retried:
            out["writes"] = self.writes.state()
        lost = {**{f"candidates {s}": i.watch.note for s, i in self.ingests.items()},
                **{f"feedback {n}": f.watch.note for n, f in self.loops.items()}}
        if any(lost.values()):  # items a store's server lost in a restart
            out["lost"] = {what: note for what, note in sorted(lost.items()) if note}
        return out

    def checkpoint(self) -> None:
        """Save every selector; the previous checkpoint is kept as a fallback."""
        ckdir = self.ws / "checkpoints"
        self.writes.run(ckdir, lambda: ckdir.mkdir(parents=True, exist_ok=True))
        for name, g in self.selectors.items():
            path, prev = ckdir / f"{name}.npz", ckdir / f"{name}.prev.npz"

            def save(path: Path = path, prev: Path = prev, g: Guarded = g) -> None:
                with g.lock:
                    if path.exists():
                        path.replace(prev)  # keep one good checkpoint while writing the next
                    g.selector.save(path)

            self.writes.run(path, save)
        self.last_checkpoint = self.clock.now()
