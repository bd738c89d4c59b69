"""Each compiled job template runs by hand under `maestro run`, as when debugging one instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.compiler.emit import write
from mummi_spec.frontend import load_spec
from mummi_spec.runtime.campaign import Campaign
from tests.conftest import SPECS


def maestro(spec: Path, out: Path) -> None:
    # As a user who activated the venv runs it: its `maestro`, and its `python3` for $(PYTHON).
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, USER=os.environ.get("USER", "root"),
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MUMMI_WORKSPACE", None)
    proc = subprocess.run([str(bin_dir / "maestro"), "run", "-fg", "-s", "1", "-y", "-o", str(out),
                           str(spec)], cwd=spec.parent, env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.fixture
def build(tmp_path: Path) -> Path:
    write(tmp_path / "build", compile_loaded(load_spec(SPECS / "mini.yaml")).files)
    return tmp_path / "build"


def test_one_instance_of_each_job_type(build: Path, tmp_path: Path) -> None:
    campaign = Campaign.open(build / "plan.json")
    latent = campaign.stream("structures.latent")
    # The persistent generator, told to write three candidates at once.
    gen = build / "jobs" / "generator.yaml"
    edit(gen, "--count 400 --every 0.05", "--count 3 --every 0")
    maestro(gen, tmp_path / "m-gen")
    store = campaign.store(latent.store)
    assert store.keys(latent.namespace) == [f"structure_{i:06d}" for i in range(3)]
    # The setup job, on a real candidate instead of the example value.
    setup = build / "jobs" / "createsim.yaml"
    edit(setup, '"example-candidate-0001"', '"structure_000001"')
    maestro(setup, tmp_path / "m-setup")
    (setup_dir,) = (tmp_path / "m-setup" / "createsim").iterdir()
    with np.load(setup_dir / "system.npz") as system:
        assert str(system["candidate"]) == "structure_000001"
    # The simulation, on what that setup prepared.
    sim = build / "jobs" / "cganalysis.yaml"
    edit(sim, '"./example-setup"', json.dumps(str(setup_dir)))  # a variable, not a parameter
    edit(sim, '"example-sim-0001"', '"cg-debug"')
    if not (setup_dir / "createsims.success").exists():
        pytest.fail("the toy setup failed on this candidate; pick another seed or candidate")
    maestro(sim, tmp_path / "m-sim")
    (sim_dir,) = (tmp_path / "m-sim" / "cganalysis").iterdir()
    assert json.loads((sim_dir / "result.json").read_text())["sim"] == "cg-debug"
    fb = campaign.stream("cg.feedback")
    assert campaign.store(fb.store).keys(fb.namespace, "fb_cg-debug_*")
