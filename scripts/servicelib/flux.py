"""A single-node Flux broker with fake GPUs on a local socket, tracked by the pid of ``flux start``.

Clients find it through ``<state dir>/flux/uri`` (the broker's ``local://`` URI, to be set
as ``FLUX_URI``) and ``<state dir>/flux/command`` (the ``flux`` command it runs, whose
``bin`` directory goes first on PATH so the adapter can find libflux-core beside it).
"""

from __future__ import annotations

import os
import socket
import subprocess

from servicelib.fluxbuild import FluxInstall
from servicelib.layout import Layout
from servicelib.procs import Daemon, ServiceError, run, wait_for

# The initial program: publish the URI (atomically), then keep the instance up until stopped.
_INITIAL = 'printf "%s\\n" "$FLUX_URI" > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep inf'
SHUTDOWN_S = 30.0


def fake_gpus() -> int:
    return int(os.environ.get("MUMMI_FLUX_GPUS", "4"))


def cores() -> int:
    return os.cpu_count() or 1


def daemon(layout: Layout) -> Daemon:
    # `flux start` execs the flux-start helper; its pid is the instance's lifetime.
    return Daemon("flux", "flux-start", layout.pids / "flux.pid")


def render_config() -> dict[str, str]:
    """The broker's TOML files: this host's cores and fake GPUs (not checked against the
    hardware), and the feasibility validator, which refuses a request the instance can never
    satisfy at submission (as sbatch does) instead of failing the job when it is scheduled."""
    last = cores() - 1
    gpus = fake_gpus()
    head = "# Written by mummi-spec scripts/services."
    resource = [head, "[resource]", "noverify = true", "[[resource.config]]",
                f'hosts = "{socket.gethostname()}"',
                f'cores = "{"0" if last == 0 else f"0-{last}"}"']
    if gpus:
        resource.append(f'gpus = "{"0" if gpus == 1 else f"0-{gpus - 1}"}"')
    ingest = [head, "[ingest.validator]", 'plugins = ["jobspec", "feasibility"]']
    return {"resource.toml": "\n".join([*resource, ""]), "ingest.toml": "\n".join([*ingest, ""])}


def uri(layout: Layout) -> str:
    try:
        return (layout.flux / "uri").read_text().strip()
    except OSError:
        return ""


def command(layout: Layout) -> str:
    try:
        return (layout.flux / "command").read_text().strip()
    except OSError:
        return ""


def _flux(layout: Layout, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLUX_URI=uri(layout))
    return run([command(layout) or "flux", *args], timeout=timeout, env=env)


def _resources(layout: Layout) -> str:
    """"N cores, M GPUs" as the broker's scheduler sees them up ("" if it does not answer)."""
    proc = _flux(layout, "resource", "list", "--states=up", "-no", "{ncores} {ngpus}")
    parts = proc.stdout.split()
    return f"{parts[0]} cores, {parts[1]} GPUs" if proc.returncode == 0 and len(parts) == 2 \
        else ""


def status(layout: Layout) -> tuple[bool, str]:
    pid = daemon(layout).pid()
    if pid is None:
        return False, "down"
    seen = _resources(layout)
    if not seen:
        return False, f"not answering (pid {pid}, {uri(layout) or 'no uri yet'})"
    return True, f"up (pid {pid}, {seen}, {uri(layout)})"


def start(layout: Layout, install: FluxInstall) -> str:
    """Start our broker unless it runs; wait until the scheduler sees every core and GPU."""
    own = daemon(layout)
    started = own.pid() is None
    if started:
        conf = layout.flux / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        for name, text in render_config().items():
            (conf / name).write_text(text)
        (layout.flux / "uri").unlink(missing_ok=True)
        (layout.flux / "command").write_text(f"{install.command}\n")
        cmd = [str(install.command), "start", "--test-size=1", f"-o,--config-path={conf}",
               "sh", "-c", _INITIAL, "sh", str(layout.flux / "uri")]
        with (layout.log / "flux.log").open("a") as out:
            # Its own session: it outlives scripts/services and a Ctrl-C in the terminal.
            proc = subprocess.Popen(cmd, cwd=layout.flux, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, start_new_session=True)
        own.pid_file.write_text(f"{proc.pid}\n")
        # `flux` execs its flux-start helper: until then the pid runs a command named "flux".
        wait_for(lambda: own.pid() is not None or proc.poll() is not None, 10.0)
    want = f"{cores()} cores, {fake_gpus()} GPUs"
    if not wait_for(lambda: own.pid() is None or _resources(layout) == want):
        raise ServiceError(f"the Flux broker does not show {want} "
                           f"(it shows {_resources(layout) or 'nothing'}); "
                           f"see {layout.log / 'flux.log'}")
    if own.pid() is None:
        raise ServiceError(f"flux start exited at once; see {layout.log / 'flux.log'}")
    return f"up ({'started' if started else 'already running'}, {want}, {uri(layout)})"


def stop(layout: Layout) -> str:
    """Shut our instance down (its jobs are cancelled); signals only if it does not end."""
    own = daemon(layout)
    pid = own.pid()
    if pid is None:
        own.pid_file.unlink(missing_ok=True)
        return "not running"
    _flux(layout, "shutdown", "--quiet", timeout=SHUTDOWN_S)
    if wait_for(lambda: own.pid() is None, SHUTDOWN_S):
        own.pid_file.unlink(missing_ok=True)
        state = f"stopped (pid {pid})"
    else:
        state = own.stop()
    (layout.flux / "uri").unlink(missing_ok=True)
    return state

