"""Failing setups and hung simulations: retried to the limit, failed with a reason, GPUs busy.

The mini campaign runs through `mummi run` on the local scheduler with 12 candidates, so every
candidate is selected and the toy applications' draws (per candidate and attempt) decide each
attempt's fate in advance: the test predicts the whole ledger and compares.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mummi_spec.loader import load_file
from mummi_spec.runtime.toy.setup import fails
from mummi_spec.runtime.toy.simulate import hangs
from tests.conftest import SPECS
from tests.integration.test_campaign import run_cli

CANDIDATES = [f"structure_{i:06d}" for i in range(12)]  # the generator's keys, all selected
FAIL_RATE, HANG_RATE = 0.4, 0.3
SETUP_LIMIT, SIM_LIMIT = 2, 1
WALLTIME = 8  # seconds; a toy simulation of 10 short steps needs about one
MAX_HUNG = 5  # hung attempts hold a GPU a whole walltime each: they bound the test's length
GPUS = 2  # the local profile's machine
TOY = "$(PYTHON) -m mummi_spec.runtime.toy"

Attempts = dict[str, list[tuple[str, str]]]


def until_success(bad: list[bool]) -> list[bool]:
    """The attempts made of those the limit allows: up to the first that goes well."""
    return bad[:bad.index(False) + 1] if False in bad else bad


def predict(seed: int) -> Attempts:
    """Each candidate's attempts (job type, end state), as the toy's draws decide them."""
    out: Attempts = {}
    for key in CANDIDATES:
        tries = until_success([fails(seed, key, n, FAIL_RATE)
                               for n in range(1, SETUP_LIMIT + 2)])
        out[key] = [("createsim", "failed" if f else "completed") for f in tries]
        if tries[-1]:
            continue
        tries = until_success([hangs(seed, key, n, HANG_RATE) for n in range(1, SIM_LIMIT + 2)])
        out[key] += [("cganalysis", "timedout" if h else "completed") for h in tries]
    return out


def cases(attempts: list[tuple[str, str]]) -> set[str]:
    """What a candidate's attempts exercise: retried to success, or exhausted, per job type."""
    found = set()
    for job, bad in (("createsim", "failed"), ("cganalysis", "timedout")):
        states = [s for j, s in attempts if j == job]
        if bad in states:
            found.add(f"{job} {'retried' if states[-1] == 'completed' else 'exhausted'}")
    return found


def pick_seed() -> int:
    """The first seed under which every case happens at least once, with few hangs."""
    want = {f"{j} {c}" for j in ("createsim", "cganalysis") for c in ("retried", "exhausted")}
    for seed in range(1000):
        plan = predict(seed)
        hung = sum(s == "timedout" for a in plan.values() for _, s in a)
        if hung <= MAX_HUNG and set().union(*map(cases, plan.values())) == want:
            return seed
    raise AssertionError("no seed exercises every case")


def write_spec(path: Path, seed: int) -> None:
    """specs/mini.yaml's local profile with failing setups and hanging simulations."""
    raw = load_file(SPECS / "mini.yaml")[0]  # our loader: `on:` stays a key, not YAML 1.1 True
    local = raw["profiles"]["local"]
    local["scales"]["structures"]["jobs"]["generator"]["command"] = (
        f"{TOY} generator --plan $(PLAN) --stream structures.latent --count 12 --every 0")
    jobs = local["scales"]["cg"]["jobs"]
    jobs["createsim"] |= {
        "command": f"{TOY} setup --plan $(PLAN) --candidate $(CANDIDATE) --workdir $(WORKDIR) "
                   f"--seed {seed} --fail-rate {FAIL_RATE} --seconds 0.3",
        "retry": {"limit": SETUP_LIMIT, "on": ["failed", "timedout"]}}
    jobs["cganalysis"] |= {
        "command": f"{TOY} simulate --plan $(PLAN) --sim $(SIM) --setup $(SETUP_DIR) "
                   f"--workdir $(WORKDIR) --stop $(STOP) --feedback cg.feedback --seed {seed} "
                   f"--hang-rate {HANG_RATE} --step-seconds 0.05",
        "walltime": f"{WALLTIME}s", "stop": "10 steps",
        "retry": {"limit": SIM_LIMIT, "on": ["failed", "timedout"]}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    cwd = tmp_path_factory.mktemp("job-failures")
    seed = pick_seed()
    write_spec(cwd / "spec.yaml", seed)
    # A manager that stops retrying or leaks a GPU never finishes: fail, do not hang.
    proc = run_cli("run", "spec.yaml", cwd=cwd, timeout=240, MUMMI_SCHEDULER="local")
    ws = cwd / "workspace" / "mini-mummi-local"
    db = sqlite3.connect(f"file:{ws / 'ledger.sqlite'}?mode=ro", uri=True)
    yield {"proc": proc, "ws": ws, "expected": predict(seed), "db": db}
    db.close()


def attempts_by_candidate(db: sqlite3.Connection) -> Attempts:
    out: Attempts = defaultdict(list)
    for cand, job, state in db.execute(
            "SELECT s.candidate, j.job_type, j.state FROM jobs j JOIN sims s ON j.sim = s.sim "
            "ORDER BY s.candidate, j.job_type DESC, j.attempt"):  # createsim before cganalysis
        out[cand].append((job, state))
    return dict(out)


def test_the_campaign_completes_and_reports_its_failures(run: dict[str, Any]) -> None:
    proc, ws, db = run["proc"], run["ws"], run["db"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((ws / "status.json").read_text())["state"] == "complete"
    counts = dict(db.execute("SELECT job_type || ' ' || state, COUNT(*) FROM jobs "
                             "GROUP BY job_type, state"))
    sims = dict(db.execute("SELECT state, COUNT(*) FROM sims GROUP BY state"))
    summary = (ws / "summary.txt").read_text()
    for text in (proc.stdout, summary):  # the table `mummi run` ends with, and the file
        row = next(line.split() for line in text.splitlines() if line.startswith("createsim "))
        assert int(row[4]) == counts["createsim failed"] > 0  # column 'failed'
        row = next(line.split() for line in text.splitlines() if line.startswith("cganalysis "))
        assert int(row[5]) == counts["cganalysis timedout"] > 0  # column 'timedout'
        assert f"simulations: done {sims['done']}, failed {sims['failed']}" in text
    for sim, cand, reason in db.execute("SELECT sim, candidate, reason FROM sims "
                                        "WHERE state = 'failed'"):
        assert f"failed {sim} ({cand}): {reason}" in summary


def test_every_attempt_ends_as_drawn_and_retries_stop_at_the_limit(run: dict[str, Any]) -> None:
    found = attempts_by_candidate(run["db"])
    assert found == run["expected"]  # a timed-out sim not retried, or retried once too often
    limits = {"createsim": SETUP_LIMIT, "cganalysis": SIM_LIMIT}
    for (sim, job, n) in run["db"].execute("SELECT sim, job_type, MAX(attempt) FROM jobs "
                                          "WHERE sim IS NOT NULL GROUP BY sim, job_type"):
        assert n <= limits[job] + 1, sim


def test_each_ended_attempt_and_failed_sim_has_its_reason(run: dict[str, Any]) -> None:
    db = run["db"]
    ends = db.execute("SELECT state, exit_code, reason FROM jobs WHERE state IN "
                      "('timedout', 'failed')").fetchall()
    assert {s for s, _, _ in ends} == {"timedout", "failed"}
    for state, code, reason in ends:
        if state == "timedout":  # GNU timeout's codes: stopped by TERM, or KILLed after grace
            assert code in (124, 137) and f"walltime of {WALLTIME} s" in reason
        else:
            assert (code, reason) == (1, "exit code 1")
    sims = db.execute("SELECT candidate, state, reason FROM sims").fetchall()
    assert len(sims) == len(CANDIDATES)
    for cand, state, reason in sims:
        last_job, last_state = run["expected"][cand][-1]
        if last_state == "completed":
            assert (state, reason) == ("done", None)
        else:
            assert state == "failed" and reason.startswith(f"{last_job}: {last_state} ")
            assert ("walltime" in reason) == (last_state == "timedout")


def idle_while_waiting(db: sqlite3.Connection) -> list[tuple[float, float]]:
    """Spans when a GPU was held by no job while a selected simulation held none."""
    held = db.execute("SELECT sim, gpus, submitted_at, ended_at FROM jobs "
                      "WHERE gpus > 0").fetchall()
    sims = db.execute("SELECT sim, selected_at, COALESCE(ended_at, 1e300) FROM sims").fetchall()
    edges = sorted({t for *_, a, b in held + sims for t in (a, b)} - {1e300})
    spans: list[tuple[float, float]] = []
    for a, b in itertools.pairwise(edges):
        mid = (a + b) / 2
        holding = {s: g for s, g, x, y in held if x <= mid < y}
        waiting = any(x <= mid < y and s not in holding for s, x, y in sims)
        if sum(holding.values()) < GPUS and waiting:
            if spans and spans[-1][1] == a:  # one span, however many edges inside
                a = spans.pop()[0]
            spans.append((a, b))
    return spans


def test_gpus_keep_working_while_jobs_fail_and_hang(run: dict[str, Any]) -> None:
    # Busy means held by the manager: a job holds its GPU from submission to its recorded end
    # (the local scheduler starts it at once). The occupancy table counts only jobs a poll has
    # seen running, so it dips for a tick at every hand-over and says nothing about waiting
    # work. A slot free while a selected simulation had no job is waste only beyond the
    # manager's reaction time (a poll and a tick, 0.4 s here); a slot leaked by a failed job,
    # or a manager waiting on a hung one, leaves it free for most of a walltime or for good,
    # so half a walltime separates the two with a wide margin on a busy machine.
    db = run["db"]
    spans = idle_while_waiting(db)
    assert max((b - a for a, b in spans), default=0.0) < WALLTIME / 2, spans
    # Not vacuous: other simulations ran to completion while a hung one held its GPU.
    overlaps = db.execute(
        "SELECT COUNT(*) FROM jobs h JOIN jobs o ON o.sim != h.sim WHERE h.state = 'timedout' "
        "AND o.job_type = 'cganalysis' AND o.state = 'completed' "
        "AND o.submitted_at >= h.submitted_at AND o.ended_at <= h.ended_at").fetchone()[0]
    assert overlaps > 0
    assert max(b for (b,) in db.execute("SELECT busy_gpus FROM occupancy")) <= GPUS
