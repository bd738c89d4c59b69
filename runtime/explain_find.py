"""What an id names in a campaign's record: every kind it matches, or close matches if none."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from mummi_spec.errors import MummiError
from mummi_spec.runtime.explain import Attempt, CandidateChain, Explainer, SimChain
from mummi_spec.runtime.explain_names import Overview, overviews
from mummi_spec.runtime.history import History
from mummi_spec.runtime.ledger import sql_text


class UnknownIdError(MummiError):
    """No candidate, sim, job, feedback item or name of the campaign is this id."""


@dataclass(frozen=True)
class JobFound:
    """A job attempt, and the chain of its sim (None: a persistent job)."""

    attempt: Attempt
    chain: SimChain | None
    via: str | None = None  # how it was found when not by its name (a scheduler id)


@dataclass(frozen=True)
class ItemFound:
    """A feedback item: each loop that consumed it, the iteration and the sim that wrote it."""

    key: str
    consumed: list[tuple[str, int, str | None, str]]  # loop, iteration, sim, target


Found = JobFound | SimChain | CandidateChain | ItemFound | Overview


def find(h: History, ident: str) -> list[Found]:
    """Everything ``ident`` names, in the order job, sim, candidate, feedback item, name;
    ``UnknownIdError`` with the closest known ids when it names nothing."""
    ex = Explainer(h)
    out: list[Found] = []
    job = ex.attempt(ident)
    if job is not None:
        out.append(JobFound(*job))
    else:
        for name in ex.by_sched_id(ident):
            found = ex.attempt(name)
            if found is not None:
                out.append(JobFound(*found, via=f"scheduler id {ident}"))
    sim = ex.sim(ident)
    if sim is not None:
        out.append(sim)
    cand = ex.candidate(ident)
    if cand is not None:
        out.append(cand)
    consumed = ex.item(ident)
    if consumed:
        out.append(ItemFound(ident, consumed))
    out += overviews(h, ident)
    if not out:
        close = difflib.get_close_matches(ident, known_ids(h, ident), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else \
            "; `mummi status` and summary.txt show the ids explain takes"
        raise UnknownIdError(f"{h.workspace}: no candidate, sim, job, scheduler id, feedback "
                             f"item or name {ident!r} in campaign {h.plan.name!r}{hint}")
    return out


def known_ids(h: History, near: str) -> list[str]:
    """Ids a typo of ``near`` could be: all sims, jobs and names, and the candidates and
    feedback items of about its length that start with its first character (those tables
    may hold millions)."""
    plan = h.plan
    ids = [plan.name, *plan.streams, *plan.couplings, *plan.jobs, *plan.feedback,
           *plan.selectors]
    ids += [r[0] for r in h.rows("SELECT sim FROM sims")]
    ids += [r[0] for r in h.rows("SELECT name FROM jobs")]
    ids += [str(r[0]) for r in h.rows("SELECT sched_id FROM jobs WHERE sched_id IS NOT NULL")]
    args = (near[:1], len(near) - 2, len(near) + 2)
    for table in ("arrivals", "consumed", "rejected"):
        ids += [sql_text(r[0]) for r in h.rows(
            f"SELECT DISTINCT key FROM {table} WHERE substr(key, 1, 1) = ? AND "
            "length(key) BETWEEN ? AND ?", args)]
    return sorted(set(ids))
