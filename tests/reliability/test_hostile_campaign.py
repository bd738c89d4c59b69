"""A mini campaign fed hostile candidate ids and bad items: nothing runs, nothing escapes, it ends.

Ids a shell would misread run with the id intact (every data value is quoted); ids no store
accepts as a name ('..', '/', '\\', control characters, a leading '.') and encodings with NaN,
the wrong dimension or no record at all are rejected one by one with the reason in the ledger.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.compiler.emit import write
from mummi_spec.errors import StoreError
from mummi_spec.frontend import load_spec
from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.feedback import REJECTED_SUFFIX
from mummi_spec.runtime.records import Record, encode
from mummi_spec.runtime.stores.common import check_name
from tests.conftest import SPECS
from tests.integration.test_campaign import check_campaign, run_cli
from tests.reliability.hostile import HOSTILE, canaries

PREFIX = "structure_"  # the stream's key template is structure_{id}


def _safe(key: str) -> bool:
    try:
        check_name("key", key)
        return True
    except StoreError:
        return False


HOSTILE_KEYS = [PREFIX + v for v in HOSTILE]
RUNNABLE = [k for k in HOSTILE_KEYS if _safe(k)]
UNSAFE = {  # key -> what its rejection reason says
    **{k: "control character" for k in HOSTILE_KEYS if not _safe(k)},
    PREFIX + "..": "'..'",
    PREFIX + "a..b": "'..'",
    PREFIX + "back\\slash": "path separator",
}
BAD_RECORDS = {  # key -> (bytes, what its rejection reason says)
    PREFIX + "nan": (encode(Record(np.array([1.0, np.nan, *[0.0] * 6]))), "NaN"),
    PREFIX + "wrongdim": (encode(Record(np.zeros(5))), "dim 8"),
    PREFIX + "garbage": (b"\x00\xffnot a record at all", "not a record"),
}
BAD_FEEDBACK = "fb_garbage_000001"


def _corner(i: int) -> np.ndarray:
    """Far from the toy's clusters and from each other: farthest-point picks these first."""
    point = np.zeros(8)
    point[i % 8] = 60.0 * (1 if i < 8 else -1)
    return point


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Campaign]:
    cwd = tmp_path_factory.mktemp("hostile")
    write(cwd / "build", compile_loaded(load_spec(SPECS / "mini.yaml")).files)
    c = Campaign.open(cwd / "build" / "plan.json")
    assert len(RUNNABLE) <= 16 and len(UNSAFE) >= 4
    # Written as files, past the store's checks, as a foreign generator could.
    latent = c.workspace / "latent" / c.stream("structures.latent").namespace
    latent.mkdir(parents=True)
    for i, key in enumerate(RUNNABLE):
        (latent / key).write_bytes(encode(Record(_corner(i))))
    for i, key in enumerate(UNSAFE):
        (latent / key).write_bytes(encode(Record(_corner(i))))
    for key, (data, _) in BAD_RECORDS.items():
        (latent / key).write_bytes(data)
    feedback = c.workspace / "feedback" / c.stream("cg.feedback").namespace
    feedback.mkdir(parents=True)
    (feedback / BAD_FEEDBACK).write_bytes(b"half a frame")
    proc = run_cli("run", "build", cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd, c


def _db(c: Campaign) -> sqlite3.Connection:
    return sqlite3.connect(c.workspace / "ledger.sqlite")


def test_campaign_completes_with_every_selection_done(campaign: tuple[Path, Campaign]) -> None:
    check_campaign(campaign[0])


def test_no_hostile_id_ever_reached_a_shell(campaign: tuple[Path, Campaign]) -> None:
    cwd, _ = campaign
    assert canaries(cwd, Path.cwd()) == []


def test_hostile_ids_ran_with_the_id_intact(campaign: tuple[Path, Campaign]) -> None:
    _, c = campaign
    rows = _db(c).execute("SELECT candidate, state, setup_dir FROM sims").fetchall()
    hostile = [(cand, state, setup) for cand, state, setup in rows if cand in RUNNABLE]
    assert len(hostile) >= 5, rows  # the far corners were chosen first
    for cand, state, setup in hostile:
        assert state == "done"
        info = json.loads((Path(setup) / "system.json").read_text())
        assert info["candidate"] == cand  # what the setup job read is what was selected


def test_unsafe_ids_and_bad_records_are_rejected_once_with_a_reason(
        campaign: tuple[Path, Campaign]) -> None:
    _, c = campaign
    rejected = dict(_db(c).execute(
        "SELECT key, reason FROM rejected WHERE stream = 'structures.latent'").fetchall())
    expected = {**UNSAFE, **{k: why for k, (_, why) in BAD_RECORDS.items()}}
    assert set(rejected) == set(expected)
    for key, why in expected.items():
        assert why in rejected[key], (key, rejected[key])
    log = (c.workspace / "manager.log").read_text()
    assert "rejected" in log and "will retry" not in log  # once, never re-read every pass
    status = json.loads((c.workspace / "status.json").read_text())
    assert status["candidates"]["structures.latent"]["rejected"] == len(expected)
    selected = {cand for (cand,) in _db(c).execute("SELECT candidate FROM sims")}
    assert not selected & set(expected)


def test_unreadable_feedback_item_is_set_aside(campaign: tuple[Path, Campaign]) -> None:
    _, c = campaign
    stream = c.stream("cg.feedback")
    store = c.store(stream.store)
    assert store.keys(stream.namespace + REJECTED_SUFFIX) == [BAD_FEEDBACK]
    assert "unreadable item" in (c.workspace / "manager.log").read_text()


def test_every_job_directory_and_file_lies_inside_the_workspace(
        campaign: tuple[Path, Campaign]) -> None:
    cwd, c = campaign
    ws = c.workspace.resolve()
    workdirs = [Path(w) for (w,) in _db(c).execute("SELECT workdir FROM jobs")]
    assert workdirs
    for w in workdirs:
        assert w.resolve().is_relative_to(ws / "runs"), w
    for folder, dirs, files in os.walk(ws):
        for name in dirs + files:
            assert (Path(folder) / name).resolve().is_relative_to(ws), Path(folder) / name
    assert sorted(p.name for p in cwd.iterdir()) == ["build", "workspace"]
