"""Golden-file comparison with a unified diff and an --update-golden switch."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest


def assert_matches_golden(actual: dict[str, str], golden_dir: Path, update: bool) -> None:
    """Compare ``{relative path: text}`` with the files under ``golden_dir``."""
    if update:
        if golden_dir.exists():
            for old in sorted(golden_dir.rglob("*"), reverse=True):
                if old.is_file() and old.relative_to(golden_dir).as_posix() not in actual:
                    old.unlink()
        for rel, text in actual.items():
            target = golden_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return
    problems = []
    expected_files = {p.relative_to(golden_dir).as_posix() for p in golden_dir.rglob("*")
                      if p.is_file()} if golden_dir.exists() else set()
    for rel in sorted(expected_files - set(actual)):
        problems.append(f"golden {rel} was not produced")
    for rel, text in sorted(actual.items()):
        path = golden_dir / rel
        want = path.read_text(encoding="utf-8") if path.exists() else ""
        if want != text:
            diff = difflib.unified_diff(want.splitlines(keepends=True),
                                        text.splitlines(keepends=True),
                                        f"golden/{rel}", f"actual/{rel}")
            problems.append("".join(diff))
    if problems:
        pytest.fail("\n".join(problems) + "\n(re-run with --update-golden to accept)")
