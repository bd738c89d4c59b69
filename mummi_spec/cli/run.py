"""`mummi run`: Maestro runs the static study, whose manager step is the runtime."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mummi_spec.cli._follow import CANCEL_WAIT, REFRESH, Display, Signals, Study, follow_other
from mummi_spec.cli._shared import Exit, chosen_profile, load_and_compile, profile_args
from mummi_spec.errors import MummiError, UsageError
from mummi_spec.plan import LEDGER_FILE

if TYPE_CHECKING:
    from mummi_spec.runtime.campaign import Campaign
    from mummi_spec.runtime.lease import Lease
    from mummi_spec.runtime.ledger import Ledger

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
    """Run a campaign: Maestro runs the static study; its manager step is the runtime. Where
    another `mummi run` or manager holds the workspace, follow it instead, and take the
    campaign over if that holder dies."""
    from mummi_spec.runtime.campaign import Campaign
    from mummi_spec.runtime.lease import WorkspaceHeldError
    from mummi_spec.runtime.ledger import Ledger
    from mummi_spec.runtime.registry import SCHEDULERS
    from mummi_spec.runtime.states import Holder
    from mummi_spec.runtime.workspace import claim, make, refuse_inside, refuse_unquotable

    build = _build_for(args)
    campaign = Campaign.open(build / "plan.json", args.workspace)
    ws = campaign.workspace
    refuse_inside(build, ws)
    scheduler = campaign.plan.scheduler.type
    if SCHEDULERS.get(scheduler).paths_unquoted:
        refuse_unquotable(ws, scheduler)
    make(ws)
    ledger = Ledger(ws / LEDGER_FILE)
    display = Display()
    try:
        with Signals() as signals:
            while True:
                try:
                    # Refuses another plan before Maestro starts, not inside its step.
                    lease = claim(campaign, ledger, Holder.LAUNCHER, REFRESH)
                except WorkspaceHeldError as held:
                    how = follow_other(ws, ledger, held.holder, signals, display)
                    if how == "free":
                        continue  # its holder died: this run takes the campaign over
                    display.close()
                    if how == "interrupted":
                        return Exit.INTERRUPTED
                    return _outcome(ws, campaign.plan.name, "", "the campaign's manager ended "
                                    f"without finishing; see {ws / 'manager.log'}")
                return _launch(build, campaign, ledger, lease, signals, display)
    finally:
        ledger.close()


def _launch(build: Path, campaign: Campaign, ledger: Ledger, lease: Lease, signals: Signals,
            display: Display) -> int:
    """Start Maestro on the study with this run's lease token, follow it to the end."""
    from mummi_spec.runtime.campaign import WORKSPACE_ENV
    from mummi_spec.runtime.lease import TOKEN_ENV
    from mummi_spec.runtime.schedulers._common import real_user
    from mummi_spec.runtime.states import Holder
    from mummi_spec.runtime.status import STATUS_FILE

    ws = campaign.workspace
    (ws / STATUS_FILE).unlink(missing_ok=True)  # only this run's manager may report an outcome
    runs = ws / "maestro"
    n = 1 + sum(1 for p in runs.glob("run-*")) if runs.exists() else 1
    out = runs / f"run-{n}"
    env = dict(os.environ, **{WORKSPACE_ENV: str(ws), TOKEN_ENV: lease.token,
                              "USER": real_user()})  # Maestro's adapters poll by $USER
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
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
        # Its own session: a Ctrl-C on the terminal reaches `mummi run` alone, which records
        # the stop in the workspace; Maestro and its steps are ended only through `Study`.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        study = Study(proc, out, env, log, queued_steps=campaign.plan.scheduler.type != "local")
        note = _follow_own(ws, ledger, lease, study, signals, display)
    row = ledger.lease()
    if row is not None and row.token == lease.token and row.holder is Holder.LAUNCHER:
        lease.release()  # its manager never took it: a late one must not start
    display.close()
    if note.startswith("lost"):
        raise MummiError(f"workspace {ws} was taken over while this run waited ({note}); "
                         "its Maestro study was cancelled")
    return _outcome(ws, campaign.plan.name, note, "the campaign did not finish (Maestro exit "
                    f"{proc.returncode}); see {log_path} and {ws / 'manager.log'}")


def _follow_own(ws: Path, ledger: Ledger, lease: Lease, study: Study, signals: Signals,
                display: Display) -> str:
    """Show progress until the study and its manager have ended. The first stop signal asks
    the manager to stop through the workspace (and signals it directly when it runs here);
    before the manager step has started, or at a second signal, the study is cancelled.
    Returns "" or why it ended early ("cancelled ...", "lost: ...")."""
    from mummi_spec.errors import LeaseLostError
    from mummi_spec.runtime.lease import describe, free, local_pid, requester
    from mummi_spec.runtime.states import Holder

    stopping = False
    released_at: float | None = None
    while True:
        ended = study.wait(REFRESH)
        row = ledger.lease()
        now = time.time()
        if row is None or row.token != lease.token:
            if released_at is not None:
                return ""  # its manager finished, and a new run already holds the workspace
            study.cancel()  # its manager would be refused, or is fenced off: end it now
            return f"lost: {describe(row, now)}"
        launching = row.holder is Holder.LAUNCHER and row.released is None
        if launching:
            try:
                lease.renew()
            except LeaseLostError:
                continue  # handed to the manager meanwhile: look again
        fresh = signals.new()
        if fresh and not stopping:
            stopping, fresh = True, fresh - 1
            lease.request_stop(requester("a stop signal to `mummi run`"))
            pid = local_pid(row) if row.holder is Holder.MANAGER else None
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)  # no need to wait for its next tick
            display.suffix = " (stopping)"
        if fresh:
            display.say("a second stop signal: cancelling the Maestro study")
            study.cancel()
            return "cancelled at a second stop signal"
        if launching and (stopping or row.stop) and not ended:
            display.say("stopped before the manager step started: cancelling the Maestro study")
            study.cancel()
            return "cancelled before its manager started"
        if row.released is not None and released_at is None:
            released_at = now
        if ended and (row.released is not None or launching or free(row, now)):
            return ""
        if released_at is not None and now - released_at > CANCEL_WAIT:
            study.cancel()  # the manager is done; a Maestro that does not notice is ended
            return ""
        display.show(ws)  # Maestro gone, its manager an orphan still running: follow it


def _outcome(ws: Path, name: str, note: str, unfinished: str) -> int:
    """Print how campaign ``name`` ended and return ``mummi run``'s exit code."""
    from mummi_spec.runtime.reportpage import REPORT
    from mummi_spec.runtime.states import CampaignState
    from mummi_spec.runtime.status import read_status, render
    from mummi_spec.runtime.writes import refused

    status = read_status(ws) or {}
    if status.get("state") not in (CampaignState.COMPLETE, CampaignState.STOPPED):
        if note.startswith("cancelled"):
            print(f"mummi: campaign stopped: its Maestro study was {note}; the ledger keeps "
                  "every step the manager committed, and `mummi run` resumes the campaign",
                  file=sys.stderr)
            return Exit.INTERRUPTED
        if status.get("state") == CampaignState.FAILED:
            print(render(status), end="")
            why = status.get("why")
        else:  # a manager that could not even write its status, or one that died
            why = refused(ws)
            if why is None:
                raise MummiError(unfinished)
        print(f"mummi: error: campaign {name} failed: {why}", file=sys.stderr)
        return Exit.FAILED
    print(render(status), end="")
    for made in ("summary.txt", "occupancy.png", "coverage.png", REPORT):
        if (ws / made).exists():
            print(f"  {ws / made}")
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


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a campaign (compiles first when given a spec)")
    p.add_argument("target", nargs="?", default="build",
                   help="a build directory (default: ./build) or a spec file")
    p.add_argument("-o", "--output", type=Path, default=Path("build"),
                   help="where a spec is compiled to (default: ./build)")
    p.add_argument("--workspace", help="campaign workspace (default: the plan's)")
    profile_args(p)
    p.set_defaults(func=run)
