"""Run-time subcommands: `run` (through Maestro), the study's `prepare` and `manager`, `status`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mummi_spec.errors import MummiError, UsageError

RUN_LOG = "run.log"


def _campaign(args: argparse.Namespace) -> Any:
    from mummi_spec.runtime.campaign import Campaign

    return Campaign.open(args.plan, args.workspace)


def cmd_prepare(args: argparse.Namespace) -> int:
    """The study's first step: the workspace layout, and every store opened once."""
    campaign = _campaign(args)
    for sub in ("runs", "checkpoints"):
        (campaign.workspace / sub).mkdir(parents=True, exist_ok=True)
    for name in sorted(campaign.plan["stores"]):
        campaign.store(name).keys("probe")  # a store that cannot open fails here, not mid-run
    campaign.close()
    print(f"workspace {campaign.workspace} ready; stores: "
          f"{', '.join(sorted(campaign.plan['stores']))}")
    return 0


def _logging(workspace: Path) -> None:
    root = logging.getLogger("mummi")
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in (logging.FileHandler(workspace / "manager.log"),
                    logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        root.addHandler(handler)


def cmd_manager(args: argparse.Namespace) -> int:
    """The study's manager step: the workflow manager of one campaign, until it ends."""
    from mummi_spec.runtime.manager import Manager
    from mummi_spec.runtime.registry import SCHEDULERS
    from mummi_spec.runtime.summary import finish

    campaign = _campaign(args)
    ws = campaign.workspace
    ws.mkdir(parents=True, exist_ok=True)
    _logging(ws)
    sched_cfg = campaign.plan["scheduler"]
    scheduler = SCHEDULERS.get(sched_cfg["type"])(sched_cfg)
    manager = Manager(campaign, scheduler)
    pid_file = ws / "manager.pid"
    pid_file.write_text(f"{os.getpid()}\n")

    def stop(signum: int, _frame: Any) -> None:
        logging.getLogger("mummi.manager").info(
            "%s: stopping spawning, checkpointing", signal.Signals(signum).name)
        manager.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        outcome = manager.run()
        finish(manager)
    finally:
        pid_file.unlink(missing_ok=True)
        manager.ledger.close()
    print(f"campaign {campaign.plan['name']} {outcome}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print a running or finished campaign's state from its workspace."""
    from mummi_spec.runtime.status import read_status, render

    ws = Path(args.workspace)
    status = read_status(ws)
    if status is None:
        raise UsageError(f"{ws}: no status.json; is this a campaign workspace (the `workspace:` "
                         "of the spec, e.g. ./workspace/<name>)?")
    pid = _manager_pid(ws)
    if status.get("state") == "running" and pid is None:
        status["state"] = "not running (the manager ended without finishing; `mummi run` "\
                          "resumes it)"
    print(render(status), end="")
    return 0


def _manager_pid(ws: Path) -> int | None:
    try:
        pid = int((ws / "manager.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _build_for(args: argparse.Namespace) -> Path:
    """The build directory to run: compiled first when ``target`` is a spec."""
    target = Path(args.target)
    if target.is_file():
        from mummi_spec.cli import chosen_profile, print_warnings
        from mummi_spec.compiler.compile import compile_loaded
        from mummi_spec.compiler.emit import write
        from mummi_spec.frontend import load_spec

        loaded = load_spec(target, profile=chosen_profile(args))
        compiled = compile_loaded(loaded)
        print_warnings(compiled.warnings, loaded.text)
        write(args.output, compiled.files)
        print(f"compiled {target} (profile {loaded.spec.profile or 'none'}) into {args.output}/")
        return Path(args.output)
    if not (target / "study.yaml").is_file() or not (target / "plan.json").is_file():
        raise UsageError(f"{target}: neither a spec file nor a build directory with study.yaml "
                         "and plan.json; run `mummi compile spec.yaml` first or pass the spec")
    return target


def cmd_run(args: argparse.Namespace) -> int:
    """Run a campaign: Maestro runs the static study; its manager step is the runtime."""
    from mummi_spec.runtime.campaign import WORKSPACE_ENV, Campaign
    from mummi_spec.runtime.ledger import Ledger
    from mummi_spec.runtime.manager import check_workspace
    from mummi_spec.runtime.status import STATUS_FILE, read_status, render

    build = _build_for(args)
    campaign = Campaign.open(build / "plan.json", args.workspace)
    ws = campaign.workspace
    ws.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(ws / "ledger.sqlite")
    try:
        check_workspace(campaign, ledger)  # refuse before Maestro starts, not inside its step
    finally:
        ledger.close()
    (ws / STATUS_FILE).unlink(missing_ok=True)  # only this run's manager may report an outcome
    runs = ws / "maestro"
    n = 1 + sum(1 for p in runs.glob("run-*")) if runs.exists() else 1
    out = runs / f"run-{n}"
    env = dict(os.environ, **{WORKSPACE_ENV: str(ws)})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("USER", "mummi")  # Maestro's adapters need $USER
    cmd = ["maestro", "run", "-fg", "-s", "1", "-y", "-o", str(out),
           str((build / "study.yaml").resolve())]
    print(f"running campaign {campaign.plan['name']} in {ws} (Maestro study in {out})")
    log_path = ws / RUN_LOG
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _follow(proc, ws, lambda: _forward_stop(ws))
    status = read_status(ws)
    if status is None or status.get("state") not in ("complete", "stopped"):
        raise MummiError(f"the campaign did not finish (Maestro exit {proc.returncode}); see "
                         f"{log_path} and {ws / 'manager.log'}")
    print(render(status), end="")
    for name in ("summary.txt", "occupancy.png", "coverage.png"):
        if (ws / name).exists():
            print(f"  {ws / name}")
    if status["state"] != "complete":
        return 130
    # Some job type's program could not be started: the work is not done (`diff` style 1).
    return 1 if status.get("unrunnable") else 0


def _forward_stop(ws: Path) -> None:
    pid = _manager_pid(ws)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)


def _follow(proc: subprocess.Popen[bytes], ws: Path, on_stop: Callable[[], None]) -> None:
    """Show progress until Maestro ends; Ctrl-C or SIGTERM asks the manager to stop cleanly."""
    from mummi_spec.runtime.status import progress_line, read_status

    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        on_stop()

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    tty = sys.stdout.isatty()
    last = ""
    try:
        while True:
            try:
                proc.wait(timeout=1.0)  # the display's refresh interval
                break
            except subprocess.TimeoutExpired:
                pass
            status = read_status(ws)
            if status is None:
                continue
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


def register(sub: Any, profile_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add run, status, and the study's prepare and manager steps."""
    p = sub.add_parser("run", help="run a campaign (compiles first when given a spec)")
    p.add_argument("target", nargs="?", default="build",
                   help="a build directory (default: ./build) or a spec file")
    p.add_argument("-o", "--output", type=Path, default=Path("build"),
                   help="where a spec is compiled to (default: ./build)")
    p.add_argument("--workspace", help="campaign workspace (default: the plan's)")
    profile_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="show a running or finished campaign")
    p.add_argument("workspace", help="the campaign's workspace directory")
    p.set_defaults(func=cmd_status)

    for name, func, text in (("prepare", cmd_prepare, "study step: lay out the workspace"),
                             ("manager", cmd_manager, "study step: the workflow manager")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--plan", type=Path, required=True, help="the compiled plan.json")
        p.add_argument("--workspace", help="campaign workspace (default: the plan's)")
        p.set_defaults(func=func)
