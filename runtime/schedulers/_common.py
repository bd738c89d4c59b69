"""Helpers every adapter shares: option parsing, name checks, env export, submission throttle."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence, Set
from pathlib import Path

from mummi_spec.errors import SchedulerError
from mummi_spec.plan import NESTED_INSTANCES, Scalar, SchedulerPlan
from mummi_spec.runtime.schedulers.base import (
    TERMINAL_STATES,
    JobRequest,
    JobStatus,
    SchedulerAdapter,
)
from mummi_spec.units import format_hms

# No leading "." (hidden files, "..") nor "-" (read as an option by sbatch and friends).
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_JOB_ID = re.compile(r"[0-9]+")  # Slurm's and LSF's
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# Maestro's `$(LAUNCHER)` token, optionally with a legacy `[nodes,procs]` allocation.
_LAUNCHER = re.compile(r"\$\(LAUNCHER\)(\[[^\]]*\])?[ \t]*")
# Values Maestro pastes into script headers and shell command lines without quoting.
_TOKEN = re.compile(r"[A-Za-z0-9_.,:@%+=/-]*")


def real_user() -> str:
    """The name of the user this process runs as, whatever ``$USER`` says (unset under some
    batch systems and containers): Maestro's adapters poll ``squeue -u $USER``, which with a
    wrong name never sees a job end. The uid where the system has no name for it (squeue
    takes either)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def shell_quote(value: str) -> str:
    """``value`` as one literal shell word that also holds no ``$(``.

    ``shlex.quote`` alone is not enough here: Maestro's adapters (and ours) replace every
    ``$(LAUNCHER)`` in the script text, inside quotes too, so a data value holding that token
    would be rewritten. Closing and reopening the quotes between ``$`` and ``(`` keeps the
    shell's reading and hides the token from any text substitution.
    """
    return shlex.quote(value).replace("$(", "$''(")


def check_name(name: str) -> str:
    """Return ``name`` if it is safe as a file-name stem, else raise ``SchedulerError``."""
    if not _NAME.fullmatch(name):
        raise SchedulerError(
            f"job name {name!r} is not usable as a file name: use letters, digits, '_', '.' "
            "and '-', not starting with '.' or '-'")
    return name


def scheduler_name(job: JobRequest) -> str:
    """The name ``job`` gets at the scheduler (its unique name, else its own), checked: the
    rule of ``check_name`` also keeps out ``,`` (a list in ``squeue --name``) and ``*`` and
    ``[`` (patterns in ``bjobs -J``)."""
    return check_name(job.sched_name or job.name)


def ids_by_name(listing: str, wanted: Set[str]) -> dict[str, str]:
    """``id|name`` lines (squeue, sacct, bjobs) -> {name: id} for the wanted names. Of
    several jobs under one name (the manager never submits a name twice), the first."""
    found: dict[str, str] = {}
    for line in listing.splitlines():
        job_id, _, name = line.strip().partition("|")
        if name in wanted and _JOB_ID.fullmatch(job_id) and (
                name not in found or int(job_id) < int(found[name])):
            found[name] = job_id
    return found


def check_nested(job: JobRequest, nests: bool) -> None:
    """Refuse a job that asks for an instance of its own from an adapter without them."""
    if job.nested and not nests:
        able = " or ".join(sorted(NESTED_INSTANCES))
        raise SchedulerError(f"job {job.name} asks for a nested instance of its own, which only "
                             f"a {able} scheduler gives: drop the job type's 'nested'")


def begin_submit(job: JobRequest, throttle: SubmitThrottle, *, shell_safe: bool = False,
                 nests: bool = False) -> tuple[str, Path]:
    """What every submission starts with: checks, then the throttle, then the work directory.

    Returns the checked name and the absolute work directory (created). ``shell_safe``
    refuses directories that Maestro would paste unquoted into a shell command line;
    ``nests`` says the adapter can run a job in an instance of its own.
    """
    name = check_name(job.name)
    check_nested(job, nests)
    workdir = Path(os.path.abspath(job.workdir))  # resolve() took a stat per component
    if shell_safe:
        safe_path(workdir)
    throttle.acquire()  # only for jobs that will really be submitted
    workdir.mkdir(parents=True, exist_ok=True)
    return name, workdir


def env_exports(env: Mapping[str, str]) -> str:
    """``export K=V`` lines, each value quoted so the shell takes it literally."""
    lines = []
    for key, value in env.items():
        if not _ENV_KEY.fullmatch(key):
            raise SchedulerError(f"environment variable name {key!r} is not a shell identifier")
        lines.append(f"export {key}={shell_quote(str(value))}")
    return "\n".join(lines)


def job_body(job: JobRequest) -> str:
    """The job's script with its environment exported first."""
    exports = env_exports(job.env)
    return f"{exports}\n{job.script}" if exports else job.script


def substitute_launcher(script: str, launcher: str) -> str:
    """Replace ``$(LAUNCHER)`` where the adapter (not Maestro) must expand it."""
    replacement = f"{launcher} " if launcher else ""
    return _LAUNCHER.sub(lambda _: replacement, script)


def hms(seconds: int) -> str:
    """Walltime as ``HH:MM:SS`` (hours may exceed 24), the form Maestro's adapters expect."""
    return format_hms(max(int(seconds), 1))


def per_node(total: int, nodes: int) -> int:
    """Share of a job-wide count on each node, rounded up (schedulers take GPUs per node)."""
    return -(-total // max(nodes, 1))


def batch_tokens(settings: SchedulerPlan) -> dict[str, Scalar]:
    """The plan's Maestro batch block for our slurm and lsf adapters. Maestro pastes the
    values unquoted into headers and command lines, so each must be one safe word."""
    block = {k: v for k, v in settings.maestro_batch(options=False).items() if k != "type"}
    for key, value in block.items():
        _check_token(key, value)
    return block


def directives(settings: SchedulerPlan, prefix: str, dashes: str, sep: str) -> str:
    """``scheduler.options`` as header lines of every job: ``key: value`` becomes
    ``{prefix} {dashes}key{sep}value`` (``#SBATCH --constraint=gpu``), true a bare flag,
    false nothing. Empty, or one line per option ending in a newline."""
    lines = []
    for key, value in sorted(settings.batch.items()):
        if not _OPTION.fullmatch(key):
            raise SchedulerError(f"scheduler option {key!r} is not a {prefix} option name")
        if value is True:
            lines.append(f"{prefix} {dashes}{key}\n")
        elif value is not False:
            _check_token(key, value)
            lines.append(f"{prefix} {dashes}{key}{sep}{value}\n")
    return "".join(lines)


def _check_token(key: str, value: Scalar) -> None:
    if not _TOKEN.fullmatch(str(value)):
        raise SchedulerError(f"scheduler setting {key!r}={value!r} may only hold letters, "
                             "digits and _.,:@%+=/-")


def shell_safe(text: str) -> bool:
    """Whether ``text`` reads the same pasted unquoted into a shell command line."""
    return _TOKEN.fullmatch(text) is not None


def safe_path(path: Path) -> str:
    """``path`` as text, refused if Maestro's shell command line would misread it."""
    text = str(path)
    if not shell_safe(text):
        raise SchedulerError(f"work directory {text!r} holds characters (spaces, quotes, shell "
                             "syntax) that the scheduler's command line cannot take unquoted")
    return text


class SubmitThrottle:
    """Token bucket: at most ``rate`` submissions per second, bursts of ``burst``.

    ``acquire`` blocks its caller only for the time the bucket is short; callers reserve
    their slot under the lock and sleep outside it, so concurrent callers queue fairly.
    """

    def __init__(self, rate: float | None, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate is not None and (isinstance(rate, bool) or not rate > 0):
            raise SchedulerError(f"throttle.per_second must be > 0 or null, not {rate!r}")
        self.rate = None if rate is None else float(rate)
        self.burst = float(burst)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: SchedulerPlan) -> SubmitThrottle:
        return cls(settings.per_second, settings.burst)

    def acquire(self) -> float:
        """Take one token, waiting if needed; return the seconds waited."""
        if self.rate is None:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


def wait_terminal(adapter: SchedulerAdapter, ids: Sequence[str], timeout: float = 60.0,
                  interval: float = 0.05) -> dict[str, JobStatus]:
    """Poll ``status`` until every id is terminal; ``SchedulerError`` after ``timeout`` s.

    For tests, benchmarks and one-off scripts; the campaign manager polls in its own loop.
    """
    deadline = time.monotonic() + timeout
    while True:
        states = adapter.status(list(ids))
        if all(s.state in TERMINAL_STATES for s in states.values()):
            return states
        if time.monotonic() >= deadline:
            waiting = sum(s.state not in TERMINAL_STATES for s in states.values())
            raise SchedulerError(f"{waiting} of {len(states)} jobs not finished after {timeout} s")
        time.sleep(interval)
