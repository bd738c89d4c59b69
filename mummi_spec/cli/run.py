"""`mummi run`: Maestro runs the static study, whose manager step is the runtime."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mummi_spec.cli._shared import Exit, chosen_profile, load_and_compile, profile_args
from mummi_spec.cli.steps import manager_pid
from mummi_spec.errors import MummiError, UsageError
from mummi_spec.plan import LEDGER_FILE

RUN_LOG = "run.log"


def _build_for(args: argparse.Namespace) -> Path:
    """The build directory to run: compiled first when ``target`` is a spec."""
    target = Path(args.target)
    if target.is_file():
        from mummi_spec.compiler.emit import write
        from mummi_spec.runtime.campaign import resolve_workspace
        from mummi_spec.runtime.workspace import refuse_inside

        loaded, compiled = load_and_compile(target, chosen_profile(args))
        refuse_inside(args.output, resolve_workspace(args.output / "plan.json", compiled.plan,
                                                     args.workspace))
        write(args.output, compiled.files)
        print(f"compiled {target} (profile {loaded.spec.profile or 'none'}) into {args.output}/")
        return Path(args.output)
    if not (target / "study.yaml").is_file() or not (target / "plan.json").is_file():
        raise UsageError(f"{target}: neither a spec file nor a build directory with study.yaml "
                         "and plan.json; run `mummi compile spec.yaml` first or pass the spec")
    return target


def run(args: argparse.Namespace) -> int:
    """Run a campaign: Maestro runs the static study; its manager step is the runtime."""
    from mummi_spec.runtime.campaign import WORKSPACE_ENV, Campaign
    from mummi_spec.runtime.ledger import Ledger
    from mummi_spec.runtime.registry import SCHEDULERS
    from mummi_spec.runtime.states import CampaignState
    from mummi_spec.runtime.status import STATUS_FILE, read_status, render
    from mummi_spec.runtime.workspace import claim, make, refuse_inside, refuse_unquotable
    from mummi_spec.runtime.writes import refused

    build = _build_for(args)
    campaign = Campaign.open(build / "plan.json", args.workspace)
    ws = campaign.workspace
    refuse_inside(build, ws)
    scheduler = campaign.plan.scheduler.type
    if SCHEDULERS.get(scheduler).paths_unquoted:
        refuse_unquotable(ws, scheduler)
    make(ws)
    ledger = Ledger(ws / LEDGER_FILE)
    try:
        claim(campaign, ledger)  # refuse before Maestro starts, not inside its step
    finally:
        ledger.close()
    (ws / STATUS_FILE).unlink(missing_ok=True)  # only this run's manager may report an outcome
    runs = ws / "maestro"
    n = 1 + sum(1 for p in runs.glob("run-*")) if runs.exists() else 1
    out = runs / f"run-{n}"
    env = dict(os.environ, **{WORKSPACE_ENV: str(ws)})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("USER", "mummi")  # Maestro's adapters need $USER
    if campaign.plan.scheduler.type == "flux":
        from mummi_spec.runtime.schedulers.flux import libflux_dir

        # Maestro's conductor imports flux itself: a flux-core built into its own prefix
        # (as scripts/services does) is found through the flux command on PATH.
        libdir = libflux_dir()
        if libdir is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                [str(libdir), *filter(None, [env.get("LD_LIBRARY_PATH")])])
    cmd = ["maestro", "run", "-fg", "-s", "1", "-y", "-o", str(out),
           str((build / "study.yaml").resolve())]
    print(f"running campaign {campaign.plan.name} in {ws} (Maestro study in {out})")
    log_path = ws / RUN_LOG
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _follow(proc, ws, lambda: _forward_stop(ws))
    status = read_status(ws) or {}
    if status.get("state") not in (CampaignState.COMPLETE, CampaignState.STOPPED):
        if status.get("state") == CampaignState.FAILED:
            print(render(status), end="")
            why = status.get("why")
        else:  # a manager that could not even write its status, or one that died
            why = refused(ws)
            if why is None:
                raise MummiError(f"the campaign did not finish (Maestro exit "
                                 f"{proc.returncode}); see {log_path} and "
                                 f"{ws / 'manager.log'}")
        print(f"mummi: error: campaign {campaign.plan.name} failed: {why}", file=sys.stderr)
        return Exit.FAILED
    print(render(status), end="")
    for name in ("summary.txt", "occupancy.png", "coverage.png"):
        if (ws / name).exists():
            print(f"  {ws / name}")
    if status.get("allocation_ended"):
        return Exit.RESUMABLE  # the allocation ended first: the next `mummi run` continues
    if status["state"] != "complete":
        return Exit.INTERRUPTED
    sims = status.get("sims", {})
    if sims.get("failed") and not sims.get("done"):
        print(f"mummi: every simulation failed ({sims['failed']}); their reasons are in "
              f"{ws / 'summary.txt'}", file=sys.stderr)
        return Exit.FAILED
    # Some job type's program could not be started: the work is not done.
    return Exit.FAILED if status.get("unrunnable") else Exit.OK


def _forward_stop(ws: Path) -> None:
    pid = manager_pid(ws)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)


def _follow(proc: subprocess.Popen[bytes], ws: Path, on_stop: Callable[[], None]) -> None:
    """Show progress until Maestro ends; Ctrl-C or SIGTERM asks the manager to stop cleanly."""
    from mummi_spec.runtime.status import events, progress_line, read_status

    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        on_stop()

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    tty = sys.stdout.isatty()
    last = ""
    told: set[str] = set()
    try:
        while True:
            try:
                proc.wait(timeout=1.0)  # the display's refresh interval
                break
            except subprocess.TimeoutExpired:
                pass
            try:
                status = read_status(ws)
            except MummiError:  # scribbled on: the manager's next write replaces it
                continue
            if status is None:
                continue
            for news in events(status, told):
                print(("\r\033[K" if tty else "") + news, flush=True)
            line = progress_line(status) + (" (stopping)" if stopping else "")
            if tty:
                print("\r" + line, end="", flush=True)
            elif line.split("]", 1)[-1] != last.split("]", 1)[-1]:
                print(line, flush=True)
            last = line
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if tty:
            print()


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a campaign (compiles first when given a spec)")
    p.add_argument("target", nargs="?", default="build",
                   help="a build directory (default: ./build) or a spec file")
    p.add_argument("-o", "--output", type=Path, default=Path("build"),
                   help="where a spec is compiled to (default: ./build)")
    p.add_argument("--workspace", help="campaign workspace (default: the plan's)")
    profile_args(p)
    p.set_defaults(func=run)
