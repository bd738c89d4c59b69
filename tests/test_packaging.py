"""The wheel holds every sub-package and data file, under one import root.

An editable install imports a sub-package that `packages` forgot; the wheel silently drops it.
So build the real wheel and compare it with the source tree.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"mummi_spec": "mummi_spec", "compiler": "mummi_spec/compiler",
          "runtime": "mummi_spec/runtime", "templates": "mummi_spec/templates"}


def test_wheel_contains_every_module_and_nothing_else(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT),
                           "-w", str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    roots = {n.split("/")[0] for n in names}
    assert roots == {"mummi_spec", wheel.name.split("-py3")[0] + ".dist-info"}
    expected = set()
    for src, dest in MAPPED.items():
        for path in (ROOT / src).rglob("*"):
            if path.suffix in (".py", ".j2", ".json") and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT / src).as_posix()
                expected.add(f"{dest}/{rel}")
    assert expected - names == set()
