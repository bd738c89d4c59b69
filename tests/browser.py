"""Headless Chromium driven over the DevTools protocol on a pipe: load a page, collect console
errors, exceptions and requests, evaluate JavaScript, take a full-page screenshot.

``python -m tests.browser PAGE.html SHOT.png [TOP:BOTTOM]`` does it by hand, the shot cut to
those CSS pixels (how docs/img/report*.png are made).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DEADLINE = 120.0  # seconds for any one answer: generous, the machine is shared


def find() -> str | None:
    """The Chromium executable on PATH, if any."""
    return next((p for p in map(shutil.which, CHROMIUM) if p), None)


class BrowserError(RuntimeError):
    """Chromium did not answer, or answered with an error."""


@dataclass
class Loaded:
    """What the browser saw while it loaded a page."""

    errors: list[str] = field(default_factory=list)  # console errors, exceptions, log errors
    requests: list[str] = field(default_factory=list)  # every URL it asked for
    result: Any = None  # what the page script returned
    screenshot: bytes = b""


class Browser:
    """One headless Chromium; commands go in on fd 3, answers and events come out on fd 4,
    each a JSON message ended by NUL (``--remote-debugging-pipe``)."""

    def __init__(self, exe: str, width: int = 1200, height: int = 900) -> None:
        self._profile = tempfile.mkdtemp(prefix="mummi-chromium.")
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions",
               "--hide-scrollbars", f"--user-data-dir={self._profile}",
               f"--window-size={width},{height}", "about:blank"]

        def fds() -> None:
            # The child reads commands on fd 3 and writes answers on fd 4; both ends are
            # copied out of the way first, as either may be 3 or 4 already.
            ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome, from_chrome)]
            for want, fd in zip((3, 4), ends, strict=True):
                os.dup2(fd, want)

        self.proc = subprocess.Popen(cmd, pass_fds=(3, 4), preexec_fn=fds,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(BrowserError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._out, self._in):
            os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise BrowserError("Chromium did not answer in time")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed its pipe (it exited)")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its answer, keeping the events that come before it."""
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + DEADLINE
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            self.events.append(answer)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event ``method`` (already received, or the next to come)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self.events.append(self._message(deadline))

    def load(self, url: str, script: str, band: tuple[float, float] | None = None) -> Loaded:
        """Open ``url`` in a new page, wait for its load event, run ``script`` (an expression
        whose value is returned), screenshot the whole page (or the ``band`` top to bottom)."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session)
        self.events.clear()
        self.send("Page.navigate", session, url=url)
        self.wait_for("Page.loadEventFired")
        value = self.send("Runtime.evaluate", session, expression=script, returnByValue=True,
                          awaitPromise=True)
        size = self.send("Page.getLayoutMetrics", session)["cssContentSize"]
        shot = self.send("Page.captureScreenshot", session, format="png",
                         captureBeyondViewport=True,
                         clip={"x": 0, "y": band[0] if band else 0, "width": size["width"],
                               "height": min(size["height"], band[1]) - band[0] if band
                               else size["height"], "scale": 1})
        out = Loaded(result=value.get("result", {}).get("value"),
                     screenshot=base64.b64decode(shot["data"]))
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert",
                                                                            "warning"):
                out.errors.append(f"console.{p['type']}: " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                what = d.get("exception", {}).get("description") or d.get("text")
                out.errors.append(f"exception: {what}")
            elif method == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
                out.errors.append(f"log {p['entry']['level']}: {p['entry'].get('text')}")
            elif method == "Network.requestWillBeSent":
                out.requests.append(p["request"]["url"])
        return out


def main(argv: list[str]) -> int:
    exe = find()
    if exe is None:
        print("no chromium on PATH (scripts/services install tools installs it)",
              file=sys.stderr)
        return 2
    page, shot = Path(argv[0]).resolve(), Path(argv[1])
    with Browser(exe) as browser:
        band = None
        if len(argv) > 2:
            top, bottom = map(float, argv[2].split(":"))
            band = (top, bottom)
        seen = browser.load(page.as_uri(), "document.title", band)
    shot.write_bytes(seen.screenshot)
    print(f"{shot}: {len(seen.screenshot)} bytes; errors: {seen.errors or 'none'}")
    return 1 if seen.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
