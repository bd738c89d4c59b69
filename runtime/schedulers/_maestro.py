"""The bridge to Maestro's script adapters: step building, state table, captured messages."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from maestrowf.abstracts.enums import State
from maestrowf.datastructures.core import StudyStep
from maestrowf.interfaces import ScriptAdapterFactory

from mummi_spec.runtime.schedulers._common import hms, per_node
from mummi_spec.runtime.schedulers.base import JobRequest, JobState

# Every Maestro State by name; the unit tests check the table covers the whole enum.
MAESTRO_STATES: Mapping[str, JobState] = {
    "INITIALIZED": JobState.PENDING,
    "PENDING": JobState.PENDING,
    "WAITING": JobState.PENDING,
    "QUEUED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "FINISHING": JobState.RUNNING,
    "FINISHED": JobState.COMPLETED,
    "DRYRUN": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "INCOMPLETE": JobState.FAILED,
    "HWFAILURE": JobState.FAILED,
    "TIMEDOUT": JobState.TIMEDOUT,
    "CANCELLED": JobState.CANCELLED,
    "UNKNOWN": JobState.UNKNOWN,
    "NOTFOUND": JobState.UNKNOWN,
}


def from_maestro(state: State | None) -> JobState:
    """Our state for a Maestro ``State``; ``None`` (Maestro lost the job) is UNKNOWN."""
    return JobState.UNKNOWN if state is None else MAESTRO_STATES[state.name]


def adapter(key: str, **batch: Any) -> Any:
    """A Maestro script adapter instance for ``key`` built from a batch block."""
    return ScriptAdapterFactory.get_adapter(key)(**batch)


def step_for(job: JobRequest, cmd: str) -> StudyStep:
    """A Maestro step for ``job``; ``procs`` and ``nodes`` are always set, so Maestro
    treats it as scheduled and never runs it inline (which would block)."""
    step = StudyStep()
    step.name = job.name
    # Slurm's header pastes the description inside double quotes: keep it one plain word.
    step.description = re.sub(r"[^A-Za-z0-9_.-]", "_", job.job_type)
    gpus = per_node(job.gpus, job.nodes) if job.gpus > 0 else ""
    step.run.update({
        "cmd": cmd,
        "nodes": job.nodes,
        "procs": job.tasks,
        "cores per task": job.cores_per_task if job.cores_per_task > 1 else "",
        "gpus": gpus,  # "" means none: CPU-only jobs must not ask for a GPU
        "walltime": hms(job.walltime),
    })
    return step


class _ThreadCapture(logging.Handler):
    """Collects the records the current thread logs, so concurrent submits keep theirs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextmanager
def captured_messages(logger_name: str) -> Iterator[list[str]]:
    """Maestro reports a refused submission's stderr only in a log record; keep it."""
    logger = logging.getLogger(logger_name)
    handler = _ThreadCapture()
    # Whatever another part of the process did to logging (a raised root level, a disabled
    # logger), the reason sbatch gave must reach the user.
    disabled, level = logger.disabled, logger.level
    logger.disabled = False
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled
