"""The only disk writer: put a compiled build in place, atomically, with its manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from mummi_spec.errors import UsageError
from mummi_spec.plan import LEDGER_FILE

MARKER = "manifest.json"


def manifest(files: dict[str, str], spec_text: str, profile: str | None, generator: str) -> str:
    """Provenance without timestamps or absolute paths."""
    doc = {
        "schema": "mummi/v1",
        "generator": generator,
        "profile": profile,
        "spec_sha256": hashlib.sha256(spec_text.encode("utf-8")).hexdigest(),
        "files": {name: hashlib.sha256(text.encode("utf-8")).hexdigest()
                  for name, text in sorted(files.items())},
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write(out: Path, files: dict[str, str]) -> list[Path]:
    """Replace ``out`` with exactly ``files``; refuses to clobber a directory that is not a build.

    The new build is written beside ``out`` and swapped in, so an interrupted compile never
    leaves half a build behind and never destroys the previous one.
    """
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and
                                              not (out / MARKER).is_file())):
        raise UsageError(f"{out} exists and is not a mummi build (no {MARKER}); "
                         "choose another -o directory or remove it")
    if out.is_dir():
        _refuse_foreign(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, text in sorted(files.items()):
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / name for name in sorted(files)]


def _written(out: Path) -> set[str]:
    """The relative paths the previous compile wrote into ``out``, from its manifest."""
    try:
        doc = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        doc, why = None, str(err)
    else:
        why = "it lists no 'files'"
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        raise UsageError(f"{out / MARKER}: unreadable ({why}), so what else {out} holds is "
                         "unknown; remove the build by hand or compile with -o into another "
                         "directory")
    return {*map(str, files), MARKER}


def _foreign(out: Path, written: set[str], here: Path | None = None) -> Path | None:
    """The first entry under ``out`` (in name order) that is neither written nor a folder of it."""
    folders = {parent for name in written for parent in Path(name).parents} - {Path(".")}
    for entry in sorted((here or out).iterdir()):
        rel = entry.relative_to(out)
        if entry.is_dir() and not entry.is_symlink() and rel in folders:
            found = _foreign(out, written, entry)
            if found is not None:
                return found
        elif rel.as_posix() not in written or not entry.is_file() or entry.is_symlink():
            return entry
    return None


def _refuse_foreign(out: Path) -> None:
    """Refuse to replace a build holding what compile did not write: replacing deletes it.

    A campaign run with ``--workspace build/ws`` keeps its ledger there; swapping the build
    would silently restart the campaign from scratch, or pull the ledger from under a live one.
    """
    entry = _foreign(out, _written(out))
    if entry is None:
        return
    ledger = entry if entry.name == LEDGER_FILE else (
        next(entry.rglob(LEDGER_FILE), None) if entry.is_dir() else None)
    what = (f"a campaign workspace ({ledger} is its ledger)" if ledger is not None
            else "something mummi compile did not write")
    raise UsageError(f"{entry}: the build directory {out} holds {what}, which replacing the "
                     f"build would delete; move it out of {out}, or compile with -o into "
                     "another directory")
