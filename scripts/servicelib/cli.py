"""``scripts/services start|stop|status|install [slurm|redis|flux|tools|all]``: one line per
step, timed. ``install`` only installs a group's Debian packages (``tools``: the browser and
terminal multiplexer some tests drive); ``all`` is the three services."""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from servicelib import flux, fluxbuild, munge, packages, redis
from servicelib.layout import Layout
from servicelib.procs import ServiceError
from servicelib.slurm import Slurm

T = TypeVar("T")
GROUPS = {"slurm": ["slurm"], "redis": ["redis"], "flux": ["flux"], "tools": ["tools"],
          "all": ["slurm", "redis", "flux"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/services", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "status", "install"])
    parser.add_argument("which", nargs="?", default="all", choices=sorted(GROUPS))
    args = parser.parse_args(argv)
    services = GROUPS[args.which]
    layout = Layout.from_env()
    absent = fluxbuild.unavailable_reason() if "flux" in services else ""
    if absent and args.which == "all" and args.action == "start":
        # A laptop without the vendored source: Flux's tests skip, the rest still runs.
        print(f"{'flux':<10} skipped: {absent}")
        services = [svc for svc in services if svc != "flux"]
    try:
        if args.action == "status":
            return _status(layout, services)
        if args.action == "install" or services == ["tools"]:
            # Packages only: tools have no daemon to start or stop.
            if args.action != "stop":
                _timed("packages", lambda: packages.ensure_installed(services,
                                                                    _apt_log(layout)))
            return 0
        if "slurm" in services and os.geteuid() != 0 and not packages.missing(services):
            raise ServiceError("starting or stopping Slurm needs root "
                               "(slurmd runs as root and /etc/slurm/slurm.conf is written)")
        with _locked(layout):
            if args.action == "start":
                _start(layout, services)
            else:
                _stop(layout, services)
    except ServiceError as exc:
        print(f"services: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _apt_log(layout: Layout) -> Path:
    layout.log.mkdir(parents=True, exist_ok=True)
    return layout.log / "apt.log"


def _start(layout: Layout, services: list[str]) -> None:
    begin = time.monotonic()
    layout.create()
    _timed("packages", lambda: packages.ensure_installed(services, layout.log / "apt.log"))
    if "slurm" in services:
        slurm = Slurm(layout)
        _timed("munge", lambda: munge.start(layout))
        _timed("slurmctld", slurm.start_ctld)
        _timed("slurmd", slurm.start_slurmd)
    if "redis" in services:
        _timed("redis", lambda: redis.start(layout))
    if "flux" in services:
        install = _timed("flux-core", lambda: fluxbuild.ensure(layout.log))
        _timed("flux-py", lambda: fluxbuild.ensure_binding(install.version,
                                                           layout.log / "pip.log"))
        _timed("flux", lambda: flux.start(layout, install))
    print(f"{'ready':<10} {'state dir ' + str(layout.root):<60} {time.monotonic() - begin:6.2f} s")


def _stop(layout: Layout, services: list[str]) -> None:
    # Jobs first (Slurm ends their processes), then daemons in reverse start order.
    slurm = Slurm(layout)
    if "flux" in services:
        _timed("flux", lambda: flux.stop(layout))
    if "slurm" in services:
        _timed("jobs", slurm.cancel_all_jobs)
    if "redis" in services:
        _timed("redis", lambda: redis.stop(layout))
    if "slurm" in services:
        _timed("slurmd", slurm.slurmd.stop)
        _timed("slurmctld", slurm.ctld.stop)
        _timed("munge", lambda: munge.stop(layout))


def _status(layout: Layout, services: list[str]) -> int:
    checks: list[tuple[str, Callable[[], tuple[bool, str]]]] = []
    if "slurm" in services:
        slurm = Slurm(layout)
        checks += [("munge", lambda: munge.status(layout)), ("slurmctld", slurm.status_ctld),
                   ("slurmd", slurm.status_slurmd)]
    if "redis" in services:
        checks.append(("redis", lambda: redis.status(layout)))
    if "flux" in services:
        checks.append(("flux", lambda: flux.status(layout)))
    if "tools" in services:
        checks.append(("tools", lambda: (True, "installed")))
    all_up = True
    for name, check in checks:
        if packages.missing([svc for svc in services if name in _members(svc)]):
            up, state = False, "not installed"
        else:
            up, state = check()
        all_up = all_up and up
        print(f"{name:<10} {state}")
    return 0 if all_up else 1


def _members(service: str) -> tuple[str, ...]:
    return ("munge", "slurmctld", "slurmd") if service == "slurm" else (service,)


def _timed(name: str, step: Callable[[], T]) -> T:
    """Run ``step`` and print its outcome (``str()`` of its result) with the time it took."""
    start = time.monotonic()
    outcome = step()
    print(f"{name:<10} {outcome!s:<60} {time.monotonic() - start:6.2f} s", flush=True)
    return outcome


@contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """Serialise concurrent start/stop runs (the fd is close-on-exec: daemons never hold it)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with layout.lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
