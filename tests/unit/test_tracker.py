"""The tracker's pure decisions: job outcomes, retries, sim transitions, shares of the cap."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mummi_spec.compiler.resources import apportion
from mummi_spec.plan import JobPlan, RetryPolicy, SuccessRule
from mummi_spec.runtime import tracker
from mummi_spec.runtime.schedulers.base import JobState, JobStatus
from mummi_spec.runtime.states import (
    SIM_TRANSITIONS,
    AttemptState,
    SimState,
    TransitionError,
    check_transition,
)
from tests import plans
from tests.conftest import SPECS

PLAIN = plans.job("plain")  # a job with no success or retry rule: the defaults apply
MARKED = plans.job("createsim", success=SuccessRule((0,), "createsims.success"))
A = AttemptState

# What the scheduler says, with the exit code it gives, -> the ledger state, for a plain job
# (None: no verdict).
VERDICTS = {
    JobState.PENDING: (None, A.QUEUED),
    JobState.RUNNING: (None, A.RUNNING),
    JobState.COMPLETED: (0, A.COMPLETED),
    JobState.FAILED: (None, A.FAILED),
    JobState.TIMEDOUT: (None, A.TIMEDOUT),
    JobState.CANCELLED: (None, A.CANCELLED),
    JobState.UNKNOWN: (None, None),
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
        A.FAILED, "the scheduler reports a failure")
    assert tracker.outcome(PLAIN, JobStatus(JobState.FAILED, reason="NODE_FAIL"), tmp_path) == (
        A.FAILED, "NODE_FAIL")


@pytest.mark.parametrize(("state", "code", "codes", "expected"), [
    (JobState.COMPLETED, 0, None, A.COMPLETED),
    (JobState.COMPLETED, 3, None, A.FAILED),  # the scheduler's word is not enough
    (JobState.FAILED, 1, None, A.FAILED),
    (JobState.COMPLETED, 2, (0, 2), A.COMPLETED),
    (JobState.FAILED, 2, (0, 2), A.COMPLETED),  # a listed code is success whatever the state
    (JobState.COMPLETED, 0, (2,), A.FAILED),
])
def test_exit_code_rule(state: JobState, code: int, codes: tuple[int, ...] | None,
                        expected: AttemptState, tmp_path: Path) -> None:
    job = plans.job(success=SuccessRule(codes)) if codes is not None else PLAIN
    got, reason = tracker.outcome(job, JobStatus(state, code), tmp_path)
    assert got == expected
    assert (reason == f"exit code {code}") == (expected is A.FAILED)


def test_success_file_rule(tmp_path: Path) -> None:
    done = JobStatus(JobState.COMPLETED, 0)
    got, reason = tracker.outcome(MARKED, done, tmp_path)
    assert got is A.FAILED
    assert "createsims.success" in reason
    (tmp_path / "createsims.success").write_text("{}")
    assert tracker.outcome(MARKED, done, tmp_path) == (A.COMPLETED, "")
    # The exit code is judged first: a file left by a failed run does not make it a success.
    assert tracker.outcome(MARKED, JobStatus(JobState.COMPLETED, 1), tmp_path)[0] is A.FAILED


def retry(limit: int, *on: str) -> JobPlan:
    """A job retried ``limit`` times on the outcomes ``on`` (default: the plan's)."""
    return plans.job(retry=RetryPolicy(limit, on) if on else RetryPolicy(limit))


@pytest.mark.parametrize(("job", "state", "history", "expected"), [
    (PLAIN, "failed", [], True),
    (PLAIN, "failed", ["failed"], True),
    (PLAIN, "failed", ["failed", "timedout"], False),  # default limit 2
    (PLAIN, "timedout", [], True),
    (PLAIN, "lost", [], True),
    (PLAIN, "cancelled", [], False),  # not in the default `on`
    (PLAIN, "completed", [], False),
    (retry(0), "failed", [], False),
    (retry(1, "failed"), "failed", [], True),
    (retry(1, "failed"), "failed", ["failed"], False),
    (retry(1, "failed"), "timedout", [], False),
    (retry(5, "timedout"), "failed", [], False),
    # Lost and cancelled attempts are the manager's doing: they do not use up the limit.
    (retry(1), "failed", ["lost", "cancelled", "lost"], True),
    (retry(1), "failed", ["lost", "failed", "cancelled"], False),
])
def test_should_retry(job: JobPlan, state: str, history: list[str], expected: bool) -> None:
    assert tracker.should_retry(job, A(state), [A(s) for s in history]) is expected


@pytest.mark.parametrize(("code", "success", "expected"), [
    (127, (0,), True), (126, (0,), True), (1, (0,), False), (None, (0,), False),
    (127, (0, 127), False),  # declared a success by the job: not a start failure
])
def test_not_runnable_exit_codes(code: int | None, success: tuple[int, ...],
                                 expected: bool) -> None:
    assert tracker.not_runnable(plans.job(success=SuccessRule(success)), code) is expected


def test_a_program_that_cannot_start_fails_naming_it_and_is_never_retried(tmp_path: Path
                                                                         ) -> None:
    job = plans.job(command="$(LAUNCHER) mummi-no-such-app --in $(WORKDIR)")
    state, reason = tracker.outcome(job, JobStatus(JobState.FAILED, 127), tmp_path)
    assert state is A.FAILED
    assert "command not found" in reason and "'mummi-no-such-app'" in reason
    assert not tracker.should_retry(job, A.FAILED, [], exit_code=127)
    assert tracker.should_retry(job, A.FAILED, [], exit_code=1)


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
    *(("done", s.value) for s in SimState), *(("failed", s.value) for s in SimState),
}


def test_transition_table_covers_every_sim_state() -> None:
    assert set(SIM_TRANSITIONS) == set(SimState)
    assert set().union(*SIM_TRANSITIONS.values()) <= set(SimState)


@pytest.mark.parametrize(("old", "new"), sorted(PIPELINE))
def test_pipeline_transitions_are_accepted(old: str, new: str) -> None:
    check_transition("cg-000001", SimState(old), SimState(new))


@pytest.mark.parametrize(("old", "new"), sorted(NEVER))
def test_other_transitions_are_refused(old: str, new: str) -> None:
    with pytest.raises(TransitionError, match=f"cg-000001: no transition {old} -> {new}"):
        check_transition("cg-000001", SimState(old), SimState(new))


def test_transition_from_a_state_of_another_kind_is_refused() -> None:
    # An attempt's state is no simulation state, even where the words could be confused.
    with pytest.raises(TransitionError):
        check_transition("s", A.QUEUED, SimState.SETUP)  # type: ignore[arg-type]


def test_job_names() -> None:
    assert tracker.job_name("cg-000007", "createsim", 2) == "cg-000007.createsim.2"
    assert tracker.job_name(None, "generator", 1) == "generator.1"


def test_sim_cap_splits_by_gpu_share() -> None:
    def caps(total: int, shares: dict[str, float]) -> dict[str, int]:
        return apportion(shares, total, whole=True)

    assert caps(10, {"a": 0.5, "b": 0.3, "c": 0.2}) == {"a": 5, "b": 3, "c": 2}
    assert caps(2000, {"cg": 0.7, "aa": 0.3}) == {"cg": 1400, "aa": 600}
    # Largest remainder; equal remainders go to the first coupling by name.
    assert caps(7, {"z": 1.0, "y": 1.0, "x": 1.0}) == {"x": 3, "y": 2, "z": 2}
    assert caps(10, {"big": 0.69, "small": 0.31}) == {"big": 7, "small": 3}


def _compiled_caps(text: str) -> dict[str, int | None]:
    from mummi_spec.compiler.compile import compile_loaded
    from mummi_spec.frontend import NO_PROFILE, load_spec_text
    from mummi_spec.plan import Plan

    compiled = compile_loaded(load_spec_text(text, "rasraf-3scale.yaml", profile=NO_PROFILE))
    plan = Plan.from_json(compiled.files["plan.json"])
    return {name: c.max_simulations for name, c in plan.couplings.items()}


def test_the_plan_splits_the_cap_by_share_and_leaves_it_unset_without_a_total() -> None:
    text = (SPECS / "rasraf-3scale.yaml").read_text()
    assert "max_simulations" in text
    caps = _compiled_caps(text)
    assert len(caps) == 2 and all(isinstance(n, int) for n in caps.values())
    without = "\n".join(line for line in text.splitlines()
                        if not line.lstrip().startswith("max_simulations:"))
    assert _compiled_caps(without) == dict.fromkeys(caps)  # None: unbounded


def test_sim_cap_always_sums_to_the_total() -> None:
    rng = random.Random(3)
    for _ in range(300):
        shares = {f"c{i}": rng.choice([rng.random(), 1.0, 0.0001])
                  for i in range(rng.randint(1, 6))}
        total = rng.randint(1, 5000)
        caps = apportion(shares, total, whole=True)
        assert sum(caps.values()) == total, (total, shares, caps)
        norm = sum(shares.values())
        for c, n in caps.items():  # each part is its exact share rounded up or down
            assert abs(n - total * shares[c] / norm) < 1, (c, total, shares, caps)
