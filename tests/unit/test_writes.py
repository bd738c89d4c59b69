"""The workspace's writes: retried with bounded back-off while the disk refuses them, then a
WorkspaceError naming the path and the cause; other errors at once."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from mummi_spec.errors import WorkspaceError
from mummi_spec.runtime import backoff
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.writes import Writes, refused
from tests.conftest import fill, mounted

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/ws/runs/x")


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff, "FIRST_DELAY", 0.01)
    monkeypatch.setattr(backoff, "MAX_DELAY", 0.02)


def failing(times: int, exc: BaseException) -> Callable[[], str]:
    left = [times]

    def fn() -> str:
        if left[0]:
            left[0] -= 1
            raise exc
        return "written"

    return fn


def test_a_refused_write_is_retried_warned_and_counted(caplog):
    writes = Writes(retry_for=10.0)
    with caplog.at_level(logging.WARNING, "mummi.manager"):
        assert writes.run(Path("/ws/runs"), failing(2, FULL)) == "written"
    assert writes.state() == {"retried": 2,
                              "last": "cannot write /ws/runs/x: No space left on device"}
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "cannot write /ws/runs/x: No space left on device; retrying in 0.0 s"
    assert lines[-1].startswith("wrote /ws/runs after 2 retries over ")
    assert lines[-1].endswith("; carrying on")


def test_past_retry_for_it_fails_naming_the_path_and_the_cause():
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    readonly.sqlite_errorcode = 8  # type: ignore[attr-defined]  # SQLITE_READONLY
    with pytest.raises(WorkspaceError) as info:
        Writes(retry_for=0.05).run(Path("/ws/ledger.sqlite"), failing(1000, readonly))
    assert str(info.value) == (
        "cannot write /ws/ledger.sqlite: attempt to write a readonly database (still after "
        "0.05 s of retries, manager.write_retry_for); free space or make it writable, then "
        "`mummi run` again resumes the campaign")


@pytest.mark.parametrize("exc", [
    FileNotFoundError(errno.ENOENT, "No such file or directory", "sbatch"),
    sqlite3.OperationalError("no such table: jobs"),
    KeyError("a bug"),
])
def test_errors_that_are_not_the_disk_are_raised_at_once(exc):
    if isinstance(exc, sqlite3.OperationalError):
        exc.sqlite_errorcode = 1  # type: ignore[attr-defined]  # SQLITE_ERROR
    writes = Writes(retry_for=10.0)
    with pytest.raises(type(exc)):
        writes.run(Path("/ws"), failing(1, exc))
    assert writes.retried == 0


def test_the_ledger_rides_out_a_real_full_disk(tmp_path, caplog):
    # Room for the schema, and for the rows once the filler is gone.
    with mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", at=tmp_path):
        ledger = Ledger(tmp_path / "ledger.sqlite", Writes(retry_for=30.0))
        filler = fill(tmp_path)
        rows = [(f"s{i:06d}", "c", f"cand-{i:06d}-" + "x" * 200, i, 0.0) for i in range(200)]

        class FreeOnWarning(logging.Handler):  # the operator frees space when warned
            def emit(self, record: logging.LogRecord) -> None:
                if "retrying" in record.getMessage():
                    filler.unlink(missing_ok=True)

        logger = logging.getLogger("mummi.manager")
        handler = FreeOnWarning()
        logger.addHandler(handler)
        try:
            with caplog.at_level(logging.WARNING, "mummi.manager"):
                ledger.add_sims(iter(rows))  # an iterator: a retry must write the rows again
        finally:
            logger.removeHandler(handler)
        assert ledger.writes.retried >= 1
        assert f"cannot write {tmp_path / 'ledger.sqlite'}: database or disk is full" \
            in caplog.text
        assert len(ledger.sims()) == 200
        ledger.close()


def test_a_directory_that_takes_no_write_says_why(tmp_path):
    assert refused(tmp_path) is None
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    with mounted("-t", "tmpfs", "-o", "size=64k", "tmpfs", at=tmp_path):
        fill(tmp_path)
        assert refused(tmp_path) == f"cannot write in {tmp_path}: No space left on device"
