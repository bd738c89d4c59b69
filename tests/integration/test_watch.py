"""`mummi status --watch` in a real terminal (tmux, 80x24) on a running mini campaign: what the
screen shows, read back with `tmux capture-pane`, is what the ledger and status.json hold."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.live import Running, attempts, pipelines, query, wait_for

pytestmark = pytest.mark.slow
WIDTH, HEIGHT = 80, 24
DONE = "EXIT="


class Tmux:
    """A private tmux server (its own socket and no user configuration)."""

    def __init__(self, exe: str, tmp: Path) -> None:
        self.base = [exe, "-S", str(tmp / "tmux.sock"), "-f", "/dev/null"]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, check=True,
                              timeout=60).stdout

    def start(self, name: str, command: str) -> None:
        self("new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT), command)

    def screen(self, name: str) -> list[str]:
        """What the pane shows now."""
        return self("capture-pane", "-p", "-t", name).split("\n")[:HEIGHT]

    def history(self, name: str) -> str:
        """Everything the pane printed on its normal screen, scrolled off or not."""
        return self("capture-pane", "-p", "-S", "-", "-t", name)

    def exited(self, name: str) -> str:
        """The pane's history once the watch has exited."""
        return wait_for(f"the watch in {name} to exit", lambda: (
            lambda text: text if DONE in text else None)(self.history(name)), deadline=60)

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, check=False, timeout=60)


@pytest.fixture
def tmux_server(tmux: str, tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(tmux, tmp_path)
    yield server
    server.kill()


def watch_command(ws: Path) -> str:
    """The watch, then its exit code and whether the terminal's modes came back the same;
    the pane stays open after (its terminal state is read then) until the server is killed."""
    watch = shlex.join([sys.executable, "-m", "mummi_spec", "status", "--watch", "--every",
                        "0.2", str(ws)])
    return ("bash -c " + shlex.quote(
        f"before=$(stty -g); {watch}; code=$?; "
        f"[ \"$(stty -g)\" = \"$before\" ] && tty=same || tty=changed; "
        f"echo {DONE}$code tty=$tty; exec sleep 3600"))


def row(screen: list[str], name: str) -> list[str]:
    """The cells of the table row that starts with ``name``."""
    found = [line.split() for line in screen if line.split()[:1] == [name]]
    assert len(found) == 1, f"no single row {name!r} on the screen:\n" + "\n".join(screen)
    return found[0][1:]


def expected(live: Running) -> dict[str, list[str]]:
    """What the screen must show now, from status.json and the ledger (the manager frozen)."""
    status = live.status()
    ws = live.ws
    sims = pipelines(ws)["structures-to-cg"]
    jobs = attempts(ws)
    busy, pool = status["busy"], status["pool"]
    out = {
        "head": ["running", f"{status['elapsed']:.1f}", f"{busy['gpus']}/{pool['gpus']}",
                 f"{busy['cores']:g}/{pool['cores']:g}"],
        "structures-to-cg": [str(v) for v in (
            status["candidates"]["structures.latent"]["ingested"], sum(sims.values()),
            sims["selected"], sims["setup"], f"{sims['ready']}/1", sims["simulating"],
            sims["done"], sims["failed"])]}
    for job_type in ("cganalysis", "createsim", "generator"):
        c = jobs.get(job_type, {})
        out[job_type] = [str(v) for v in (
            c.get("submitting", 0) + c.get("queued", 0), c.get("running", 0),
            c.get("completed", 0), c.get("failed", 0) + c.get("timedout", 0),
            c.get("cancelled", 0) + c.get("lost", 0))]
    return out


def shown(screen: list[str]) -> dict[str, list[str]]:
    head = screen[0].split()
    assert head[0] == "mini-mummi", screen
    out = {"head": [head[1], head[2], head[5], head[7]]}
    for name in ("structures-to-cg", "cganalysis", "createsim", "generator"):
        out[name] = row(screen, name)
    return out


def showing(server: Tmux, session: str, want: dict[str, list[str]]) -> list[str] | None:
    """The screen once it shows ``want`` (None before: a redraw may not have come yet)."""
    screen = server.screen(session)
    try:
        return screen if shown(screen) == want else None
    except (AssertionError, IndexError):
        return None


def test_watch_shows_what_the_ledger_holds_and_ends_with_the_campaign(
        tmux_server: Tmux, tmp_path: Path) -> None:
    live = Running(tmp_path)
    try:
        wait_for("the campaign's claim on its workspace", live.claimed)
        tmux_server.start("end", watch_command(live.ws))  # watches to the end
        tmux_server.start("quit", watch_command(live.ws))  # is stopped with Ctrl-C
        seen = []
        for moment in range(2):
            # Two moments of the run, the second with more done: the view is redrawn in place.
            wait_for("jobs running", lambda m=moment: live.running_jobs() and (
                m == 0 or sum(pipelines(live.ws)["structures-to-cg"][s] for s in
                              ("done", "failed")) > int(seen[0]["structures-to-cg"][6])))
            with live.frozen():
                want = expected(live)
                last = query(live.ws, "SELECT name, state FROM jobs WHERE ended_at IS NOT NULL "
                                      "ORDER BY ended_at DESC LIMIT 1")
                for session in ("end", "quit") if moment == 0 else ("end",):
                    screen = wait_for(f"{session}'s screen to show the frozen campaign",
                                      lambda s=session, w=want: showing(tmux_server, s, w),
                                      deadline=60)
                    assert len(screen) <= HEIGHT and max(map(len, screen)) <= WIDTH
                    events = screen[screen.index("last events") + 1:]
                    if last:  # the latest job to end is among the last events
                        assert any(f"{last[0][0]} {last[0][1]}" in line for line in events), \
                            screen
                    times = [float(m.group(1)) for line in events
                             if (m := re.match(r"\s*(\d+\.\d)s ", line))]
                    assert times == sorted(times) and times, screen
                seen.append(want)
            if moment == 0:
                tmux_server("send-keys", "-t", "quit", "C-c")
                quit_text = tmux_server.exited("quit")
                assert f"{DONE}0 tty=same" in quit_text
                assert "stopped watching; the campaign goes on" in quit_text
                modes = tmux_server("display", "-p", "-t", "quit",
                                    "#{alternate_on} #{cursor_flag}").split()
                assert modes == ["0", "1"]  # left the alternate screen, cursor shown again
        assert seen[1]["head"] != seen[0]["head"]
        assert live.finish() == 0, live.output()
    finally:
        live.kill()
    text = tmux_server.exited("end")
    end = text.split("\n")
    assert f"{DONE}0 tty=same" in text
    assert "mini-mummi  complete" in text
    assert "ended because every coupling reached its share of manager.max_simulations" in text
    done = pipelines(live.ws)["structures-to-cg"]["done"]
    assert row(end, "structures-to-cg")[6] == str(done)
