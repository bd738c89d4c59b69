"""`mummi diff WORKSPACE NEW_SPEC`: what a spec change would do to a running campaign."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mummi_spec.compiler.compile import Compiled
from mummi_spec.compiler.diff import CampaignDiff, Change, Side, diff_plan
from mummi_spec.errors import SelectorError
from mummi_spec.frontend import Loaded
from mummi_spec.plan import LEDGER_FILE, Plan, Role
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ledgerview import LedgerView
from mummi_spec.runtime.registry import SCHEDULERS, SELECTORS
from mummi_spec.runtime.states import AttemptState, SimState
from mummi_spec.runtime.status import read_status
from mummi_spec.runtime.workspace import digest, started_with

# Settings of a job type no job ever sees: text, and what `mummi simulate` expects.
INERT = ("description", "expect")
QUEUED = (AttemptState.SUBMITTING.value, AttemptState.QUEUED.value)


@dataclass(frozen=True)
class JobImpact:
    """A job type the new spec changes, and the campaign's jobs of that type now."""

    job_type: str
    role: str
    kind: str  # changed | added | removed
    fields: tuple[str, ...]  # the settings that change, relative to the job type
    queued: int  # attempts submitted, not started
    running: int
    later: int  # selections that have not reached this job type yet
    effect: str


@dataclass(frozen=True)
class SelectorImpact:
    """A selector the new spec changes: whether its checkpoint loads under the new settings."""

    name: str
    fields: tuple[str, ...]
    resumes: bool
    why: str


@dataclass(frozen=True)
class WorkspaceDiff:
    """Everything ``mummi diff WORKSPACE NEW_SPEC`` reports."""

    plan: CampaignDiff  # the settings, plan against plan
    campaign: str
    state: str
    jobs: tuple[JobImpact, ...]
    selectors: tuple[SelectorImpact, ...]
    restarts: tuple[str, ...]
    accepted: bool
    verdict: tuple[str, ...]

    @property
    def same(self) -> bool:
        return self.accepted

    def to_json(self) -> dict[str, Any]:
        """The stable JSON document of ``mummi diff WORKSPACE NEW_SPEC --json``."""
        return {"same": self.same, "campaign": self.campaign, "state": self.state,
                "accepted": self.accepted, "verdict": list(self.verdict),
                "restarts": list(self.restarts),
                "jobs": {j.job_type: {"role": j.role, "kind": j.kind, "fields": list(j.fields),
                                      "queued": j.queued, "running": j.running,
                                      "later": j.later, "effect": j.effect} for j in self.jobs},
                "selectors": {s.name: {"fields": list(s.fields), "resumes": s.resumes,
                                       "why": s.why} for s in self.selectors},
                "plan": self.plan.to_json()}


def _job_of(change: Change) -> tuple[str, str] | None:
    """(job type, setting path under it) of a change to a job type."""
    parts = change.path.split(".")
    if change.group != "job types" or len(parts) < 4:
        return None
    return parts[3], ".".join(parts[4:])


def _later(plan: Plan, job_type: str, sims: Mapping[str, Counter[str]]) -> int:
    """Selections of the couplings running ``job_type`` that have not reached it yet."""
    n = 0
    for name, c in plan.couplings.items():
        counts = sims.get(name, Counter())
        if job_type == c.setup:
            n += counts[SimState.SELECTED.value]
        elif job_type == c.simulation:
            before = (SimState.SELECTED, SimState.SETUP, SimState.READY)
            n += sum(counts[s.value] for s in before)
    return n


def _effect(kind: str, role: str, fields: tuple[str, ...], queued: int, running: int,
            later: int, survive: bool) -> str:
    if kind == "added":
        return "a new job type: nothing of this campaign runs it yet"
    live = queued + running
    if kind == "removed":
        if live or later:
            return (f"the new plan has no such job type: its {_n(live, 'live attempt')} could "
                    f"not be tracked and {_n(later, 'selection')} waiting for it would never "
                    "run")
        return "the new plan has no such job type; none of its jobs is live or waiting"
    if all(f.split(".")[0] in INERT for f in fields):
        return "no job sees this change (a description, or what `mummi simulate` expects)"
    if role == Role.PERSISTENT.value:
        keep = ("runs on with the settings it was submitted with; the new ones apply to the "
                "next instance the manager starts (cancel it to get one)") if survive else \
            "is cancelled when the manager stops and resubmitted with the new settings"
        return f"its running instance {keep}" if live else \
            "the new settings apply when the manager next starts it"
    if not live and not later:
        return "none of its jobs is queued or running, and no selection waits for it"
    return (f"{_n(live, 'submitted attempt')} keep the settings they were submitted with; "
            f"{_n(later, 'selection')} not there yet would run with the new ones")


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


def _selectors(campaign: Campaign, new: Plan, changes: tuple[Change, ...]
               ) -> tuple[SelectorImpact, ...]:
    """Each changed selector, tried: does its checkpoint load under the new settings?"""
    fields: dict[str, list[str]] = {}
    for c in changes:
        parts = c.path.split(".")
        if c.group == "selectors" and len(parts) >= 2:
            fields.setdefault(parts[1], []).append(".".join(parts[2:]) or c.kind)
    out = []
    for name, changed in sorted(fields.items()):
        settings = new.selectors.get(name)
        path = campaign.workspace / "checkpoints" / f"{name}.npz"
        if settings is None:
            resumes, why = False, "the new plan has no such selector"
        elif not path.exists():
            resumes, why = True, "no checkpoint yet: it starts from the new settings"
        else:
            try:
                SELECTORS.get(settings.kind)(settings).load(path)
                resumes, why = True, "its checkpoint loads under the new settings"
            except SelectorError as exc:
                resumes, why = False, (f"its checkpoint does not load under the new settings "
                                       f"({exc}): the manager would refuse to start")
        out.append(SelectorImpact(name, tuple(changed), resumes, why))
    return tuple(out)


def _restarts(old: Plan, new: Plan, d: CampaignDiff, jobs: tuple[JobImpact, ...],
              survive: bool, state: str) -> tuple[str, ...]:
    if not d.changes and not d.artefacts:
        return ()
    out = ["the manager: it reads plan.json once, when it starts"
           + ("" if state == "running" else " (none is running now)")]
    persistent = sorted(j.job_type for j in jobs if j.role == Role.PERSISTENT.value
                        and j.kind == "changed" and not j.effect.startswith("no job"))
    # A persistent job reads its own streams and the feedback target sent to its scale from
    # the plan it was started with.
    scales = {c.path.split(".")[1] for c in d.changes
              if c.group == "scales" and ".emits." in c.path}
    scales |= {f.to for n, f in old.feedback.items()
               if any(c.path.startswith(f"feedback.{n}.") for c in d.changes)}
    persistent += sorted(n for n, j in old.jobs.items() if j.role == Role.PERSISTENT
                         and j.scale in scales and n not in persistent and n in new.jobs)
    if persistent:
        how = "cancel them (the manager starts new ones)" if survive else \
            "a manager restart resubmits them"
        out.append(f"persistent jobs {', '.join(persistent)}: they read their settings and the "
                   f"plan when they start; {how}")
    return tuple(out)


def _verdict(accepted: bool, found: str | None, new_digest: str, new_spec: str, state: str
             ) -> tuple[str, ...]:
    if accepted:
        return ("the workspace takes this plan: it is the one the campaign started with",)
    refused = (f"the workspace refuses this plan: a workspace takes only the plan that started "
               f"its campaign (plan.json sha256 {(found or '?')[:12]}…, this one "
               f"{new_digest[:12]}…), so that no campaign mixes selections, jobs and feedback "
               "made under two plans")
    fresh = (f"`mummi run {new_spec} --workspace NEW_WORKSPACE`: a new campaign, which starts "
             "from none of this one's selections, jobs or feedback")
    old = "the build (or the spec and profile) it was started with"
    if state == "complete":
        return (refused, f"this campaign is complete; to run the new spec: {fresh}")
    if state == "running":
        return (refused, f"to keep this campaign going: leave it running; resume it only with "
                         f"{old}",
                "to run the new spec: stop this campaign (Ctrl-C to its `mummi run`) or let it "
                f"finish, then {fresh}")
    return (refused, f"to resume this campaign: `mummi run` with {old}",
            f"to run the new spec instead: {fresh}")


def workspace_diff(campaign: Campaign, old_text: str, new: Loaded, new_build: Compiled
                   ) -> WorkspaceDiff:
    """Compare a workspace's campaign (its plan.json ``old_text``) with a compiled spec,
    against its ledger now."""
    ws = campaign.workspace
    old = campaign.plan
    status = read_status(ws) or {}
    state = str(status.get("state", "not started"))
    d = diff_plan(Side(str(ws), old.profile), old, old_text, new, new_build)
    with LedgerView(ws / LEDGER_FILE) as view, view.snapshot():
        counts = view.attempt_counts()
        sims = view.pipelines()
    survive = bool(SCHEDULERS.get(old.scheduler.type).jobs_survive_manager)
    changed: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for c in d.changes:
        hit = _job_of(c)
        if hit is not None:
            changed.setdefault(hit[0], []).append(hit[1])
            kinds[hit[0]] = c.kind if not hit[1] else "changed"
    jobs = []
    for name in sorted(changed):
        role = (old.jobs.get(name) or new_build.plan.jobs[name]).role.value
        queued = sum(counts[(name, s)] for s in QUEUED)
        running = counts[(name, AttemptState.RUNNING.value)]
        later = _later(old, name, sims)
        fields = tuple(f for f in changed[name] if f)
        jobs.append(JobImpact(name, role, kinds[name], fields, queued, running, later,
                              _effect(kinds[name], role, fields, queued, running, later,
                                      survive)))
    found = started_with(ws)
    new_digest = digest(new_build.files["plan.json"].encode("utf-8"))
    accepted = found == new_digest
    return WorkspaceDiff(d, old.name, state, tuple(jobs),
                         _selectors(campaign, new_build.plan, d.changes),
                         _restarts(old, new_build.plan, d, tuple(jobs), survive, state),
                         accepted, _verdict(accepted, found, new_digest, new.spec.file, state))
