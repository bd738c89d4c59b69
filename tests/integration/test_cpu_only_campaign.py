"""A CPU-only campaign on a laptop through `mummi run`: every simulation it asks for runs,
the console and the summary count cores and say why the campaign ended."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.integration.test_campaign import run_cli

SPEC = """
spec: mummi/v1
name: cpu-only
workspace: ./ws
machine: {name: laptop, nodes: 1, walltime: "00:10:00",
          node: {cores: 2, oversubscribe: 3}, reserved: {manager: 0}}
scheduler: {type: local, poll: 0.2s}
stores: {data: {backend: filesystem}}
scales:
  coarse:
    jobs:
      gen: {role: persistent, walltime: "00:10:00", resources: {cores_per_task: 1},
            command: "$(PYTHON) -m mummi_spec.runtime.toy generator --plan $(PLAN)
                      --stream coarse.points --count 100 --every 0.02"}
    emits: {points: {kind: candidates, dim: 3, store: data}}
  fine:
    jobs:
      prep: {role: setup, walltime: "00:01:00", resources: {cores_per_task: 1},
             command: "$(PYTHON) -m mummi_spec.runtime.toy setup --plan $(PLAN)
                       --candidate $(CANDIDATE) --workdir $(WORKDIR)"}
      md: {role: simulation, walltime: "00:01:00", resources: {cores_per_task: 1},
           stop: "5 steps",
           command: "$(PYTHON) -m mummi_spec.runtime.toy simulate --plan $(PLAN) --sim $(SIM)
                     --setup $(SETUP_DIR) --workdir $(WORKDIR) --stop $(STOP)"}
selectors: {pick: {kind: farthest_point, dim: 3, warmup: {min_candidates: 5}}}
couplings:
  c: {from: coarse.points, to: fine, selector: pick, setup: prep, simulation: md,
      ready_buffer: 1, share: {cores: 1.0}}
manager: {tick: 0.2s, checkpoint_every: 10s, max_simulations: 8}
"""


def test_a_cpu_only_campaign_runs_its_full_max_simulations(tmp_path: Path) -> None:
    spec = tmp_path / "cpu.yaml"
    spec.write_text(SPEC)
    assert run_cli("validate", str(spec), cwd=tmp_path).returncode == 0
    proc = run_cli("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    db = sqlite3.connect(tmp_path / "ws" / "ledger.sqlite")
    states = [s for (s,) in db.execute("SELECT state FROM sims")]
    # It had a cap of 1 when max_simulations was split by GPU share (it has none).
    assert states == ["done"] * 8
    busy = [c for (c,) in db.execute("SELECT busy_cores FROM occupancy")]
    assert max(busy) <= 6  # 2 cores shared 3 ways: the pool the budgets use
    # The progress line counts cores (there are no GPUs), and the end says why it ended.
    assert "cores " in proc.stdout and "GPUs 0/0" not in proc.stdout
    assert "ended because every coupling reached its share of manager.max_simulations" \
        in proc.stdout
    summary = (tmp_path / "ws" / "summary.txt").read_text()
    assert "ended because every coupling reached its share" in summary
    assert "busy now: 0/0 GPUs, 0/6 cores" in summary
