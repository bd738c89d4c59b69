"""The manager's writes to its workspace ride out a full or read-only disk, then fail clearly."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mummi_spec.errors import WorkspaceError
from mummi_spec.runtime.backoff import retrying

log = logging.getLogger("mummi.manager")
T = TypeVar("T")

# SQLite's primary result codes for a disk that refuses a write: READONLY, IOERR, FULL and
# CANTOPEN (https://www.sqlite.org/rescode.html). Any other is a bug or a damaged file.
_SQLITE_DISK = frozenset({8, 10, 13, 14})
# The same from the system: full, over quota, read-only, failing, or no longer ours to write.
# A missing file or program (ENOENT) is not the disk's doing, nor is it cured by waiting.
_ERRNO_DISK = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES})
# Disk space held while the manager runs and freed when a full disk ends it, so that it can
# still say why: status.json and a ledger commit take a few pages.
RESERVE = 256 << 10
RESERVE_FILE = ".mummi-reserve"


def disk_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is the disk refusing a write (full, read-only, failing), not a bug."""
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; 3.10 takes them all
        return code is None or code & 0xFF in _SQLITE_DISK
    return isinstance(exc, OSError) and exc.errno in _ERRNO_DISK


def _what(path: Path, exc: BaseException) -> str:
    """``cannot write <file>: <cause>``, naming the file the system call names if it does."""
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else path
        return f"cannot write {where}: {exc.strerror or exc}"
    return f"cannot write {path}: {exc}"


class Writes:
    """The workspace's writes, each retried for up to ``retry_for`` seconds; shared by the
    manager's threads, it keeps how many were retried and the last failure.

    The ledger, job directories and scripts, checkpoints, status and summary all go through
    ``run``: a write the disk refuses is tried again with bounded back-off (a warning each
    time) for up to ``manager.write_retry_for``; then a ``WorkspaceError`` names the path and
    the cause, and the manager ends ``failed``, leaving a workspace that ``mummi run``
    resumes as after a crash.
    """

    def __init__(self, retry_for: float = 0.0) -> None:
        self.retry_for = retry_for
        self.retried = 0
        self.last = ""
        self._lock = threading.Lock()
        self._reserved: Path | None = None

    def run(self, path: Path, fn: Callable[[], T]) -> T:
        """``fn()``, which writes ``path``: tried again while the disk refuses it."""
        first: list[float] = []

        def warn(exc: Exception, delay: float) -> None:
            text = _what(path, exc)
            with self._lock:
                self.retried += 1
                self.last = text
            first.append(time.monotonic())
            log.warning("%s; retrying in %.1f s", text, delay)

        try:
            out = retrying(fn, transient=disk_fault, retry_for=self.retry_for, warn=warn)
        except Exception as exc:
            if not disk_fault(exc):
                raise
            raise WorkspaceError(
                f"{_what(path, exc)} (still after {self.retry_for:g} s of retries, "
                "manager.write_retry_for); free space or make it writable, then `mummi run` "
                "again resumes the campaign") from None
        if first:  # said again once the disk takes writes: the warnings may not have landed
            log.warning("wrote %s after %d retries over %.1f s; carrying on", path, len(first),
                        time.monotonic() - first[0])
        return out

    def reserve(self, workspace: Path) -> None:
        """Hold ``RESERVE`` bytes of the workspace's disk, for ``release`` to give back when
        a full disk ends the run: enough to record why (status, ledger, log)."""
        path = workspace / RESERVE_FILE

        def hold() -> None:
            with open(path, "wb") as fh:
                fh.write(b"\0" * RESERVE)  # written, not sparse: the blocks are really held
                fh.flush()
                os.fsync(fh.fileno())

        self.run(path, hold)
        self._reserved = path

    def release(self) -> None:
        """Give the reserved space back."""
        if self._reserved is not None:
            with contextlib.suppress(OSError):
                self._reserved.unlink()
            self._reserved = None

    def state(self) -> dict[str, object]:
        """What ``status.json`` says of them."""
        with self._lock:
            return {"retried": self.retried, "last": self.last}


def refused(directory: Path) -> str | None:
    """Why ``directory`` takes no write now (``cannot write <file>: <cause>``), if it does
    not: what a manager that could not record its own failure ran into."""
    probe = directory / f".mummi-probe.{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 4096)  # a page: a full file system refuses it, an empty file not
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return f"cannot write in {directory}: {exc.strerror or exc}" if disk_fault(exc) \
            else None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None
