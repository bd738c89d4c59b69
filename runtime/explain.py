"""`mummi explain`: the whole recorded chain of one candidate, simulation or job attempt.

A candidate's arrival (stream, ingest pass, batch, time), the select call that chose it (its
rank, queue and score, what else that call returned), every setup and simulation attempt
(scheduler id, state, exit code, reason, directory), the feedback items its simulation wrote,
the iteration that consumed each and the target record that iteration wrote. Names shown by
``mummi status`` (streams, couplings, job types, feedback loops, selectors, the campaign) are
explained by explain_names.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mummi_spec.runtime.history import History


@dataclass(frozen=True)
class Arrival:
    """One time a candidate reached its stream's selectors."""

    stream: str
    t: float  # seconds from the campaign's start
    ingest_pass: int
    batch: int
    position: int  # 1-based, in the batch
    of: int  # items in the batch
    tag: str | None


@dataclass(frozen=True)
class Mate:
    """Another id the same select call returned."""

    candidate: str
    rank: int
    sim: str | None


@dataclass(frozen=True)
class Selection:
    """The select call that chose a candidate for a coupling."""

    selector: str
    call: int
    t: float
    asked: int
    returned: int
    rank: int
    queue: str
    score: float | None
    after_batch: int
    mates: list[Mate]


@dataclass(frozen=True)
class Attempt:
    """One job attempt as the ledger has it."""

    name: str
    job_type: str
    attempt: int
    state: str
    sched_id: str | None
    exit_code: int | None
    reason: str | None
    directory: str  # relative to the workspace when inside it
    submitted: float | None
    started: float | None
    ended: float | None


@dataclass(frozen=True)
class Iteration:
    """Items of one sim that one feedback iteration consumed, and the target it wrote."""

    loop: str
    iteration: int
    items: list[str]
    target: str  # store:namespace/key


@dataclass(frozen=True)
class SimChain:
    """A simulation from its candidate's arrival to the feedback it fed."""

    sim: str
    coupling: str
    candidate: str
    state: str
    reason: str | None
    selected: float
    ended: float | None
    arrivals: list[Arrival]
    selection: Selection | None
    attempts: list[Attempt]
    feedback: list[Iteration]


@dataclass(frozen=True)
class CandidateChain:
    """A candidate: its arrivals, any rejection, and each simulation made of it."""

    candidate: str
    arrivals: list[Arrival]
    rejected: list[tuple[str, str]]  # (stream, reason)
    sims: list[SimChain] = field(default_factory=list)


class Explainer:
    """Looks ids up in a workspace's record."""

    def __init__(self, history: History) -> None:
        self.h = history
        self.t0 = history.started

    def _rel(self, t: float | None) -> float | None:
        return None if t is None else round(float(t) - self.t0, 3)

    def _dir(self, path: str) -> str:
        try:
            return str(Path(path).relative_to(self.h.workspace.resolve()))
        except ValueError:
            return path

    # ------------------------------------------------------------- pieces
    def arrivals(self, candidate: str) -> list[Arrival]:
        rows = self.h.rows("SELECT b.stream, b.t, b.pass, b.batch, a.pos, b.n, a.tag FROM "
                           "arrivals a JOIN batches b ON a.batch = b.batch WHERE a.key = ? "
                           "ORDER BY b.batch", (candidate,))
        return [Arrival(s, round(float(t) - self.t0, 3), p, b, pos + 1, n, tag)
                for s, t, p, b, pos, n, tag in rows]

    def selection(self, sim: str, candidate: str) -> Selection | None:
        rows = self.h.rows("SELECT p.call, p.rank, p.queue, p.score, c.selector, c.t, c.asked, "
                           "c.after_batch FROM picks p JOIN calls c ON c.call = p.call "
                           "WHERE p.candidate = ? AND p.sim = ?", (candidate, sim))
        if not rows:
            return None
        call, rank, queue, score, selector, t, asked, after = rows[0]
        mates = [Mate(c, r, s) for c, r, s in self.h.rows(
            "SELECT candidate, rank, sim FROM picks WHERE call = ? ORDER BY rank", (call,))]
        return Selection(selector, call, round(float(t) - self.t0, 3), asked, len(mates), rank,
                         queue,
                         score, after, [m for m in mates if m.candidate != candidate])

    def attempts(self, sim: str | None, name: str | None = None) -> list[Attempt]:
        where, arg = ("sim = ?", sim) if name is None else ("name = ?", name)
        rows = self.h.rows("SELECT name, job_type, attempt, state, sched_id, exit_code, reason,"
                           " workdir, submitted_at, started_at, ended_at FROM jobs WHERE "
                           f"{where} ORDER BY rowid", (arg,))
        return [Attempt(n, jt, a, st, i, x, why, self._dir(w), self._rel(sub), self._rel(sta),
                        self._rel(end)) for n, jt, a, st, i, x, why, w, sub, sta, end in rows]

    def feedback(self, sim: str) -> list[Iteration]:
        return [Iteration(loop, it, json.loads(keys), self._target(loop))
                for loop, it, keys in self.h.rows(
                    "SELECT loop, iteration, keys FROM fed WHERE sim = ? ORDER BY iteration, "
                    "loop", (sim,))]

    def _target(self, loop: str) -> str:
        f = self.h.plan.feedback.get(loop)
        return "-" if f is None else f"{f.target.store}:{f.target.namespace}/{f.target.key}"

    # ------------------------------------------------------------- chains
    def sim(self, sim: str) -> SimChain | None:
        rows = self.h.rows("SELECT coupling, candidate, state, reason, selected_at, ended_at "
                           "FROM sims WHERE sim = ?", (sim,))
        if not rows:
            return None
        coupling, cand, state, reason, selected, ended = rows[0]
        stream = self.h.plan.couplings[coupling].source \
            if coupling in self.h.plan.couplings else None
        return SimChain(sim, coupling, cand, state, reason, round(float(selected) - self.t0, 3),
                        self._rel(ended),
                        [a for a in self.arrivals(cand) if stream in (None, a.stream)],
                        self.selection(sim, cand), self.attempts(sim), self.feedback(sim))

    def candidate(self, candidate: str) -> CandidateChain | None:
        arrivals = self.arrivals(candidate)
        rejected = [(s, why) for s, why in self.h.rows(
            "SELECT stream, reason FROM rejected WHERE key = ? ORDER BY stream", (candidate,))]
        sims = [self.sim(s) for s, in self.h.rows(
            "SELECT sim FROM sims WHERE candidate = ? ORDER BY seq", (candidate,))]
        if not (arrivals or rejected or sims):
            return None
        return CandidateChain(candidate, arrivals, rejected, [s for s in sims if s])

    def attempt(self, name: str) -> tuple[Attempt, SimChain | None] | None:
        found = self.attempts(None, name)
        if not found:
            return None
        sim = self.h.rows("SELECT sim FROM jobs WHERE name = ?", (name,))[0][0]
        return found[0], self.sim(sim) if sim else None

    def by_sched_id(self, sched_id: str) -> list[str]:
        return [n for n, in self.h.rows("SELECT name FROM jobs WHERE sched_id = ? ORDER BY "
                                        "rowid", (sched_id,))]

    def item(self, key: str) -> list[tuple[str, int, str | None, str]]:
        """(loop, iteration, sim, target) of each loop that consumed feedback item ``key``."""
        out = []
        for loop, it in self.h.rows("SELECT loop, iteration FROM consumed WHERE key = ? "
                                    "ORDER BY loop", (key,)):
            by = [sim for sim, keys in self.h.rows("SELECT sim, keys FROM fed WHERE loop = ? "
                                                   "AND iteration = ?", (loop, it))
                  if key in json.loads(keys)]
            out.append((loop, it, by[0] if by else None, self._target(loop)))
        return out

