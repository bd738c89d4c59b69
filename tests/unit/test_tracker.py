"""The tracker's pure decisions: job outcomes, retries, sim transitions, shares of the cap."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mummi_spec.runtime import tracker
from mummi_spec.runtime.ledger import SIM_STATES
from mummi_spec.runtime.schedulers.base import JobState, JobStatus

PLAIN: dict[str, object] = {}  # a job with no success or retry rule: the defaults apply
MARKED = {"success": {"exit_codes": [0], "file": "createsims.success"}}

# What the scheduler says, with the exit code it gives, -> the ledger state, for a plain job.
VERDICTS = {
    JobState.PENDING: (None, "queued"),
    JobState.RUNNING: (None, "running"),
    JobState.COMPLETED: (0, "completed"),
    JobState.FAILED: (None, "failed"),
    JobState.TIMEDOUT: (None, "timedout"),
    JobState.CANCELLED: (None, "cancelled"),
    JobState.UNKNOWN: (None, "unknown"),
}


def test_every_scheduler_state_has_a_verdict() -> None:
    assert set(VERDICTS) == set(JobState)


@pytest.mark.parametrize("state", list(JobState), ids=lambda s: s.name)
def test_outcome_of_each_scheduler_state(state: JobState, tmp_path: Path) -> None:
    code, expected = VERDICTS[state]
    got, _ = tracker.outcome(PLAIN, JobStatus(state, code, reason="why"), tmp_path)
    assert got == expected


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.RUNNING, JobState.TIMEDOUT,
                                   JobState.CANCELLED, JobState.UNKNOWN])
def test_unfinished_states_ignore_the_success_rule(state: JobState, tmp_path: Path) -> None:
    # No success file in the workdir, and still no failure: the job has not completed.
    got, reason = tracker.outcome(MARKED, JobStatus(state, reason="scheduler says"), tmp_path)
    assert got == VERDICTS[state][1]
    assert reason == "scheduler says"


def test_a_failure_without_exit_code_says_the_scheduler_reported_it(tmp_path: Path) -> None:
    assert tracker.outcome(PLAIN, JobStatus(JobState.FAILED), tmp_path) == (
        "failed", "the scheduler reports a failure")
    assert tracker.outcome(PLAIN, JobStatus(JobState.FAILED, reason="NODE_FAIL"), tmp_path) == (
        "failed", "NODE_FAIL")


@pytest.mark.parametrize(("state", "code", "codes", "expected"), [
    (JobState.COMPLETED, 0, None, "completed"),
    (JobState.COMPLETED, 3, None, "failed"),  # the scheduler's word is not enough
    (JobState.FAILED, 1, None, "failed"),
    (JobState.COMPLETED, 2, [0, 2], "completed"),
    (JobState.FAILED, 2, [0, 2], "completed"),  # a listed code is success whatever the state
    (JobState.COMPLETED, 0, [2], "failed"),
])
def test_exit_code_rule(state: JobState, code: int, codes: list[int] | None, expected: str,
                        tmp_path: Path) -> None:
    job = {"success": {"exit_codes": codes}} if codes is not None else PLAIN
    got, reason = tracker.outcome(job, JobStatus(state, code), tmp_path)
    assert got == expected
    assert (reason == f"exit code {code}") == (expected == "failed")


def test_success_file_rule(tmp_path: Path) -> None:
    done = JobStatus(JobState.COMPLETED, 0)
    got, reason = tracker.outcome(MARKED, done, tmp_path)
    assert got == "failed"
    assert "createsims.success" in reason
    (tmp_path / "createsims.success").write_text("{}")
    assert tracker.outcome(MARKED, done, tmp_path) == ("completed", "")
    # The exit code is judged first: a file left by a failed run does not make it a success.
    assert tracker.outcome(MARKED, JobStatus(JobState.COMPLETED, 1), tmp_path)[0] == "failed"


@pytest.mark.parametrize(("job", "state", "history", "expected"), [
    (PLAIN, "failed", [], True),
    (PLAIN, "failed", ["failed"], True),
    (PLAIN, "failed", ["failed", "timedout"], False),  # default limit 2
    (PLAIN, "timedout", [], True),
    (PLAIN, "lost", [], True),
    (PLAIN, "cancelled", [], False),  # not in the default `on`
    (PLAIN, "completed", [], False),
    ({"retry": {"limit": 0}}, "failed", [], False),
    ({"retry": {"limit": 1, "on": ["failed"]}}, "failed", [], True),
    ({"retry": {"limit": 1, "on": ["failed"]}}, "failed", ["failed"], False),
    ({"retry": {"limit": 1, "on": ["failed"]}}, "timedout", [], False),
    ({"retry": {"limit": 5, "on": ["timedout"]}}, "failed", [], False),
    # Lost and cancelled attempts are the manager's doing: they do not use up the limit.
    ({"retry": {"limit": 1}}, "failed", ["lost", "cancelled", "lost"], True),
    ({"retry": {"limit": 1}}, "failed", ["lost", "failed", "cancelled"], False),
])
def test_should_retry(job: dict[str, object], state: str, history: list[str],
                      expected: bool) -> None:
    assert tracker.should_retry(job, state, history) is expected


# Every change the manager makes to a simulation: the pipeline forward, a job's end, a retry
# or a refused submission putting it back in its queue, and giving up.
PIPELINE = {
    ("selected", "setup"), ("selected", "ready"),  # ready: a coupling without a setup job
    ("setup", "ready"), ("setup", "selected"), ("setup", "failed"),
    ("ready", "simulating"),
    ("simulating", "done"), ("simulating", "ready"), ("simulating", "failed"),
}
NEVER = {
    ("selected", "simulating"), ("selected", "done"), ("setup", "simulating"),
    ("setup", "done"), ("ready", "setup"), ("ready", "selected"), ("ready", "done"),
    ("simulating", "setup"), ("simulating", "selected"),
    *(("done", s) for s in SIM_STATES), *(("failed", s) for s in SIM_STATES),
}


def test_transition_table_covers_the_ledger_states() -> None:
    assert set(tracker.SIM_TRANSITIONS) == set(SIM_STATES)
    assert set().union(*tracker.SIM_TRANSITIONS.values()) <= set(SIM_STATES)


@pytest.mark.parametrize(("old", "new"), sorted(PIPELINE))
def test_pipeline_transitions_are_accepted(old: str, new: str) -> None:
    tracker.check_transition("cg-000001", old, new)


@pytest.mark.parametrize(("old", "new"), sorted(NEVER))
def test_other_transitions_are_refused(old: str, new: str) -> None:
    with pytest.raises(tracker.TransitionError, match=f"cg-000001: no transition {old} -> {new}"):
        tracker.check_transition("cg-000001", old, new)


def test_transition_from_an_unknown_state_is_refused() -> None:
    with pytest.raises(tracker.TransitionError):
        tracker.check_transition("s", "queued", "setup")


def test_job_names() -> None:
    assert tracker.job_name("cg-000007", "createsim", 2) == "cg-000007.createsim.2"
    assert tracker.job_name(None, "generator", 1) == "generator.1"


def _plan(total: int | None, shares: dict[str, float]) -> dict[str, object]:
    return {"manager": {"max_simulations": total},
            "couplings": {c: {"share": {"gpus": s}} for c, s in shares.items()}}


def test_sim_cap_splits_by_gpu_share() -> None:
    assert tracker.sim_cap(_plan(10, {"a": 0.5, "b": 0.3, "c": 0.2})) == {"a": 5, "b": 3, "c": 2}
    assert tracker.sim_cap(_plan(2000, {"cg": 0.7, "aa": 0.3})) == {"cg": 1400, "aa": 600}
    # Largest remainder; equal remainders go to the first coupling by name.
    assert tracker.sim_cap(_plan(7, {"z": 1.0, "y": 1.0, "x": 1.0})) == {"x": 3, "y": 2, "z": 2}
    assert tracker.sim_cap(_plan(10, {"big": 0.69, "small": 0.31})) == {"big": 7, "small": 3}


def test_sim_cap_without_a_total_is_unbounded() -> None:
    caps = tracker.sim_cap(_plan(None, {"a": 0.5, "b": 0.5}))
    assert set(caps) == {"a", "b"}
    assert min(caps.values()) > 10**15


def test_sim_cap_always_sums_to_the_total() -> None:
    rng = random.Random(3)
    for _ in range(300):
        shares = {f"c{i}": rng.choice([rng.random(), 1.0, 0.0001])
                  for i in range(rng.randint(1, 6))}
        total = rng.randint(1, 5000)
        caps = tracker.sim_cap(_plan(total, shares))
        assert sum(caps.values()) == total, (total, shares, caps)
        norm = sum(shares.values())
        for c, n in caps.items():  # each part is its exact share rounded up or down
            assert abs(n - total * shares[c] / norm) < 1, (c, total, shares, caps)
