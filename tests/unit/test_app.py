"""The application interface: a job's context, checked items to every store, candidates,
feedback targets and SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mummi_spec import app
from mummi_spec.errors import StoreError
from mummi_spec.plan import Plan, Role
from mummi_spec.runtime.feedback import FeedbackLoop
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.records import Record, decode, encode
from mummi_spec.runtime.stores.redis import RedisStore
from tests import plans

BACKENDS = ["memory", "filesystem", "taridx", pytest.param("redis", marks=pytest.mark.redis)]
POINTS, RDFS, LOOP = "coarse.points", "fine.rdfs", "fine-to-coarse"


def make_plan(backend: str, **store: Any) -> Plan:
    """Candidates (3-D, tagged) and feedback items (2-D) in one store; a setup and a
    simulation job for the coupling; a feedback loop back to the coarse scale."""
    return plans.plan(
        stores=[plans.store(backend, "data", journal=("points",), **store)],
        streams=[plans.stream(POINTS, "data", "points", "{id}", 3, tags=("a", "b")),
                 plans.stream(RDFS, "data", "rdfs", "fb_{sim}_{n:06d}", 2, kind="feedback")],
        selectors=[plans.selector("random")],
        jobs=[plans.job("gen", role=Role.PERSISTENT, scale="coarse"),
              plans.job("prep", role=Role.SETUP), plans.job("md")],
        couplings=[plans.coupling("c", POINTS, "sel", "md", setup="prep")],
        feedback=[plans.feedback(LOOP, RDFS, ("data", "targets", "main"), to="coarse")])


@pytest.fixture(params=BACKENDS)
def plan_path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """plan.json of ``make_plan`` on each backend (redis: a fresh key prefix)."""
    extra: dict[str, Any] = {}
    if request.param == "redis":
        extra = {"prefix": f"test-{uuid.uuid4().hex}", **request.getfixturevalue("redis_server")}
    path = tmp_path / "build" / "plan.json"
    path.parent.mkdir()
    path.write_text(make_plan(request.param, **extra).to_json())
    yield path
    if request.param == "redis":
        with app.Context(path, workspace=str(tmp_path / "ws")) as ctx:
            store = ctx.campaign.store("data")
            assert isinstance(store, RedisStore)
            store.purge()


@pytest.fixture
def fs_plan(tmp_path: Path) -> Path:
    path = tmp_path / "build" / "plan.json"
    path.parent.mkdir()
    path.write_text(make_plan("filesystem").to_json())
    return path


def context(plan_path: Path, **kw: Any) -> app.Context:
    return app.Context(plan_path, workspace=str(plan_path.parent.parent / "ws"), **kw)


def test_from_env_outside_a_campaign_says_how_to_build_one() -> None:
    with pytest.raises(app.AppError, match=r"MUMMI_PLAN is not set.*app\.Context\(plan_path"):
        app.Context.from_env({})


def test_from_env_reads_every_variable(fs_plan: Path, tmp_path: Path) -> None:
    env = {"MUMMI_PLAN": str(fs_plan), "MUMMI_WORKSPACE": str(tmp_path / "ws"),
           "MUMMI_JOB_TYPE": "md", "MUMMI_ATTEMPT": "3", "MUMMI_RESTART": "1",
           "MUMMI_SIM": "c_0001", "MUMMI_CANDIDATE": "x", "MUMMI_COUPLING": "c",
           "MUMMI_SETUP_DIR": str(tmp_path / "setup"), "MUMMI_STATE_DIR": str(tmp_path / "st")}
    ctx = app.Context.from_env(env)
    assert (ctx.job_type, ctx.attempt, ctx.restart, ctx.sim, ctx.candidate_id, ctx.coupling) \
        == ("md", 3, True, "c_0001", "x", "c")
    assert (ctx.role, ctx.workspace, ctx.state_dir) == ("simulation", tmp_path / "ws",
                                                         tmp_path / "st")
    with pytest.raises(app.AppError, match="MUMMI_ATTEMPT='two' is not a whole number"):
        app.Context.from_env({**env, "MUMMI_ATTEMPT": "two"})
    with pytest.raises(app.AppError, match="job type 'nope' is not in the plan; known: gen"):
        app.Context.from_env({**env, "MUMMI_JOB_TYPE": "nope"})


def test_emit_and_read_back_on_every_backend(plan_path: Path) -> None:
    with context(plan_path, job_type="gen") as ctx:
        out = ctx.stream(POINTS)
        keys = out.emit_many([[1, 2, 3], [4.5, 5, 6]], tags=["a", None],
                             metas=[{"step": 1}, {}])
        assert keys == ["a1-000000", "a1-000001"]
        assert out.emit([0.1, 0.2, 0.3], id="mine", tag="b") == "mine"
        back = out.read("a1-000000")
        assert (back.id, back.tag, back.meta, back.stream) == ("a1-000000", "a",
                                                                {"step": 1}, POINTS)
        np.testing.assert_array_equal(back.values, [1, 2, 3])
        np.testing.assert_array_equal(out.read("mine").values,
                                      np.float32([0.1, 0.2, 0.3]))
        store = ctx.campaign.store("data")
        assert store.keys("points") == sorted([*keys, "mine"])
        # A candidate stream's items are journaled where the store keeps a journal: ingest
        # reads them from its cursor.
        if hasattr(store, "keys_after"):
            assert sorted(store.keys_after("points")[0]) == sorted([*keys, "mine"])


def test_feedback_keys_follow_the_template_with_sim_and_counter(plan_path: Path) -> None:
    with context(plan_path, job_type="md", sim="c_0007") as ctx:
        fb = ctx.stream(RDFS)
        assert fb.emit([1, 2]) == "fb_c_0007_000000"
        assert fb.emit_many([[3, 4], [5, 6]]) == ["fb_c_0007_000001", "fb_c_0007_000002"]
        assert ctx.stream(RDFS).emit([7, 8]) == "fb_c_0007_000003"  # the same stream object
        record = decode(ctx.campaign.store("data").get("rdfs", "fb_c_0007_000002"), 2)
        assert record.sim == "c_0007"


def test_the_counter_goes_on_across_processes_and_attempts_of_a_job(fs_plan: Path,
                                                                    tmp_path: Path) -> None:
    # `mummi app emit` in a shell loop is a new process each time, and a retried
    # simulation a new attempt: neither may rewrite (or, consumed, lose) an earlier key.
    state = str(tmp_path / "ws" / "runs" / "c_0001" / "md.state")
    first = context(fs_plan, job_type="md", sim="c_0001", state_dir=state)
    assert first.stream(RDFS).emit_many([[1, 2], [3, 4]]) == ["fb_c_0001_000000",
                                                               "fb_c_0001_000001"]
    again = context(fs_plan, job_type="md", sim="c_0001", state_dir=state, attempt=2)
    assert again.stream(RDFS).emit([5, 6]) == "fb_c_0001_000002"
    assert first.stream(RDFS).emit([7, 8]) == "fb_c_0001_000003"
    gen = context(fs_plan, job_type="gen", state_dir=str(tmp_path / "gen.state"), attempt=2)
    assert gen.stream(POINTS).emit([0, 0, 0]) == "a2-000000"


BAD: list[tuple[str, Callable[[app.Stream], object], str]] = [
    ("wrong dim", lambda s: s.emit([1, 2]), r"item 0: 2 values, the stream is 3-D; send 3"),
    ("NaN", lambda s: s.emit([1, np.nan, 3]), "NaN or infinity"),
    ("infinity", lambda s: s.emit_many([[1, 2, 3], [1, np.inf, 3]]), "item 1: .*NaN or inf"),
    ("beyond float32", lambda s: s.emit([1e39, 0, 0]), "beyond float32's range"),
    ("not numbers", lambda s: s.emit(["x", "y", "z"]), "values are not numbers"),
    ("unknown tag", lambda s: s.emit([1, 2, 3], tag="c"), r"tag 'c' is none of .*\(a, b\)"),
    ("path id", lambda s: s.emit([1, 2, 3], id="../x"), "unsafe candidate id '../x'"),
    ("hidden id", lambda s: s.emit([1, 2, 3], id=".hidden"), r"starts with '\.'"),
    ("slash id", lambda s: s.emit([1, 2, 3], id="a/b"), "contains a path separator"),
    ("duplicate", lambda s: s.emit_many([[1, 2, 3], [1, 2, 3]], ids=["x", "x"]),
     "key 'x' twice in one batch"),
    ("ids count", lambda s: s.emit_many([[1, 2, 3]], ids=["x", "y"]), "2 ids for 1 items"),
    ("meta NaN", lambda s: s.emit([1, 2, 3], meta={"f": float("nan")}), "meta is not plain"),
    ("meta object", lambda s: s.emit([1, 2, 3], meta={"f": object()}), "meta is not plain"),
    ("meta list", lambda s: s.emit([1, 2, 3], meta=[1]), "meta must be a mapping"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("case", "call", "match"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_input_names_the_stream_and_writes_nothing(fs_plan: Path, case: str,
                                                       call: Callable[[app.Stream], object],
                                                       match: str) -> None:
    with context(fs_plan, job_type="gen") as ctx:
        with pytest.raises(app.AppError, match=f"stream {POINTS}.*{match}"):
            call(ctx.stream(POINTS))
        assert ctx.campaign.store("data").keys("points") == []


def test_an_unknown_stream_lists_the_known_ones(fs_plan: Path) -> None:
    with context(fs_plan) as ctx, pytest.raises(
            app.AppError, match=r"no stream 'coarse.pts' in the plan; known: coarse.points, "):
        ctx.stream("coarse.pts")


def test_a_name_only_taridx_refuses_is_a_store_error_naming_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "build" / "plan.json"
    path.parent.mkdir()
    path.write_text(make_plan("taridx").to_json())
    with context(path, job_type="gen") as ctx:
        with pytest.raises(StoreError, match=f"stream {POINTS}: .*without ','"):
            ctx.stream(POINTS).emit_many([[1, 2, 3], [4, 5, 6]], ids=["ok", "a,b"])
        assert ctx.campaign.store("data").keys("points") == []


def test_candidate_is_the_selected_one(plan_path: Path) -> None:
    with context(plan_path, job_type="gen") as gen:
        key = gen.stream(POINTS).emit([1, 2, 3], id="x", tag="b", meta={"model": 2})
        # memory stores live in their Context: the simulation shares the producer's.
        sim = context(plan_path, job_type="md", sim="c_0001", candidate=key)
        sim.campaign = gen.campaign
        got = sim.candidate()
        assert (got.id, got.tag, got.meta, got.stream) == ("x", "b", {"model": 2}, POINTS)
        np.testing.assert_array_equal(got.values, [1, 2, 3])


def test_candidate_errors_say_what_is_missing(fs_plan: Path) -> None:
    with pytest.raises(app.AppError, match="this job has no candidate"):
        context(fs_plan, job_type="gen").candidate()
    with pytest.raises(app.AppError, match=r"cannot read 'gone'.*no such key"):
        context(fs_plan, job_type="md", candidate="gone").candidate()
    with pytest.raises(app.AppError, match="MUMMI_COUPLING: no coupling 'z'"):
        context(fs_plan, job_type="md", candidate="x", coupling="z").candidate()


def test_target_and_waiting_for_a_newer_one(plan_path: Path, tmp_path: Path) -> None:
    with context(plan_path, job_type="md", sim="c_0001") as ctx:
        loop = FeedbackLoop(LOOP, ctx.campaign, Ledger(tmp_path / "ledger.sqlite"))
        assert ctx.target(LOOP) is None  # before the first iteration
        assert ctx.wait_target(LOOP, timeout=0) is None
        ctx.stream(RDFS).emit_many([[1, 2], [3, 4]])
        loop.iterate()
        first = ctx.target(LOOP)
        assert first is not None
        assert (first.iteration, first.items, first.loop, first.meta) == (1, 2, LOOP,
                                                                          {"loop": LOOP})
        np.testing.assert_array_equal(first.values, [2, 3])
        again = ctx.wait_target(LOOP, 0, timeout=0)
        assert again is not None and again.iteration == 1
        assert ctx.wait_target(LOOP, 1, timeout=0) is None
        # A waiter sees the next iteration once the loop reports it.
        seen: list[app.Target | None] = []
        waiter = threading.Thread(target=lambda: seen.append(
            ctx.wait_target(LOOP, first.iteration, timeout=60, poll=0.01)))
        waiter.start()
        ctx.stream(RDFS).emit([8, 9])
        loop.iterate()
        waiter.join()
        assert seen[0] is not None
        assert (seen[0].iteration, seen[0].items) == (2, 3)
        np.testing.assert_array_equal(seen[0].values, [4, 5])
        stop = app.Stop()
        stop.requested = True
        assert ctx.wait_target(LOOP, 2, stop=stop) is None
        assert ctx.targets_for() == []  # md is on the fine scale; the loop reports to coarse
        assert ctx.targets_for("coarse") == [LOOP]
    with pytest.raises(app.AppError, match=f"no feedback loop 'x' in the plan; known: {LOOP}"):
        ctx.target("x")


def test_stop_wait_returns_at_sigterm(tmp_path: Path) -> None:
    code = ("import sys; from mummi_spec.app import Stop; stop = Stop.install(); "
            "print('ready', flush=True); print(stop.wait(600), flush=True)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.terminate()  # SIGTERM
    out, _ = child.communicate(timeout=60)
    # wait(600) said True: it returned because of the signal, not its 600 s.
    assert (out.strip(), child.returncode) == ("True", 0)


@pytest.mark.redis
def test_another_redis_client_following_the_documented_recipe_is_found_from_the_journal(
        tmp_path: Path, redis_server: dict[str, Any]) -> None:
    # docs/record-format.md: SET the item and RPUSH its key to the journal in one MULTI/EXEC.
    import redis

    prefix = f"test-{uuid.uuid4().hex}"
    path = tmp_path / "build" / "plan.json"
    path.parent.mkdir()
    path.write_text(make_plan("redis", prefix=prefix, **redis_server).to_json())
    with context(path, job_type="gen") as ctx:
        store = ctx.campaign.store("data")
        assert isinstance(store, RedisStore)
        _, cursor = store.keys_after("points")  # what ingest does when the manager starts
        item = encode(Record(np.float32([1, 2, 3])))
        client = redis.Redis(host=str(redis_server["host"]), port=int(redis_server["port"]))
        with client.pipeline(transaction=True) as pipe:
            pipe.set(f"{prefix}:points::journaled", item)
            pipe.rpush(f"{prefix}:points:#journal", "journaled")
            pipe.execute()
        client.set(f"{prefix}:points::bare", item)  # no journal entry
        assert store.keys_after("points", cursor=cursor)[0] == ["journaled"]
        assert sorted(store.keys_after("points")[0]) == ["bare", "journaled"]  # at a start
        assert ctx.stream(POINTS).read("journaled").values.tolist() == [1, 2, 3]
        store.purge()
        client.close()
