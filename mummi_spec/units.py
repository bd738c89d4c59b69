"""Durations and command tokens: the small vocabulary the spec, the plan and the jobs share."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CLOCK = re.compile(r"^(?:(\d+)-)?(\d{1,3}):(\d{2}):(\d{2})$")
_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")

# Every $(TOKEN) a command may hold. mummi fills in all but $(LAUNCHER), which the scheduler
# adapter expands (Maestro's token for the parallel launcher).
TOKENS = ("CANDIDATE", "SIM", "WORKDIR", "SETUP_DIR", "STATE_DIR", "WORKSPACE", "PLAN", "PYTHON",
          "STOP", "RESTART", "LAUNCHER")
SUBSTITUTED = re.compile(r"\$\((" + "|".join(t for t in TOKENS if t != "LAUNCHER") + r")\)")
# $(LAUNCHER), optionally with Maestro's legacy `[nodes,procs]` allocation, and its blanks.
LAUNCHER = re.compile(r"\$\(LAUNCHER\)(\[[^\]]*\])?[ \t]*")


def parse_duration(text: str) -> float:
    """``'1:30:00'``, ``'1-00:00:00'``, ``'90s'``, ``'1.5h'`` -> seconds."""
    text = text.strip()
    m = _CLOCK.match(text)
    if m:
        days, h, mins, s = (int(g) if g else 0 for g in m.groups())
        return float(((days * 24 + h) * 60 + mins) * 60 + s)
    m = _AMOUNT.match(text)
    if m:
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"not a duration: {text!r}")


def format_hms(seconds: float) -> str:
    """Seconds -> ``HH:MM:SS`` (hours may exceed 24), as schedulers expect."""
    total = round(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def per_allocation(seconds: float) -> str:
    """How hours of one allocation are named: "per day" for a day, else its length."""
    if abs(seconds - 86400.0) < 1e-6:
        return "per day"
    return f"per allocation ({format_hms(seconds)})"


def program(command: str) -> str:
    """The program a command starts: its first word after ``$(LAUNCHER)``."""
    words = LAUNCHER.sub("", command.strip(), count=1).split()
    return words[0] if words else ""
