"""The manager's periodic tasks (ingest, feedback): background threads, or inline when due."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mummi_spec.errors import MummiError, WorkspaceError

log = logging.getLogger("mummi.manager")


@dataclass(frozen=True)
class Task:
    """Something to run every ``period`` seconds."""

    name: str
    period: float
    fn: Callable[[], object]


def guarded(task: Task) -> None:
    """Run a task; a store outage or one bad batch must not end the campaign (a workspace
    that takes no more writes does: that is raised)."""
    try:
        task.fn()
    except WorkspaceError:
        raise
    except MummiError as exc:  # an outage or bad data, already explained: one line
        log.warning("%s failed: %s; retrying next period", task.name, exc)
    except Exception:  # a bug: keep the traceback for the report
        log.exception("%s failed; retrying next period", task.name)


class Periodic:
    """With ``threads``, each task in a thread of its own until ``stop``; without, ``run_due``
    runs the tasks whose time has come in the caller's thread (a virtual clock's way)."""

    def __init__(self, tasks: list[Task], *, threads: bool) -> None:
        self.tasks = tasks
        self.threads = threads
        self._stop = threading.Event()
        self._due = {t.name: 0.0 for t in tasks}
        self._running: list[threading.Thread] = []
        self.fatal: WorkspaceError | None = None  # what ended a task's thread

    def start(self) -> None:
        if not self.threads:
            return
        for task in self.tasks:
            t = threading.Thread(target=self._loop, args=(task,), daemon=True,
                                 name=f"mummi-{task.name}")
            t.start()
            self._running.append(t)

    def _loop(self, task: Task) -> None:
        while not self._stop.is_set():
            try:
                guarded(task)
            except WorkspaceError as exc:
                self.fatal = exc  # the manager's next tick raises it
                return
            self._stop.wait(task.period)

    def run_due(self, now: float) -> None:
        """Inline mode: each task whose period has passed, once. With threads: raise what
        ended a task's thread."""
        if self.threads:
            if self.fatal is not None:
                raise self.fatal
            return
        for task in self.tasks:
            if now >= self._due[task.name]:
                guarded(task)
                self._due[task.name] = now + task.period

    def stop(self) -> None:
        """End the threads (each finishes the pass it is in)."""
        self._stop.set()
        for t in self._running:
            t.join()
        self._running.clear()

    def run_all(self) -> None:
        """Every task once more, now (the last items of the last simulations count)."""
        for task in self.tasks:
            guarded(task)
