"""The only disk writer: put a compiled build in place, atomically, with its manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from mummi_spec.errors import UsageError

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
