"""What `mummi run` says on the console: rejected items with their reason, why it ended, and
a failure when no simulation succeeded."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mummi_spec.runtime.records import Record, encode
from tests.integration.test_campaign import run_cli

SPEC = """
spec: mummi/v1
name: console
workspace: ./ws
machine: {name: laptop, nodes: 1, walltime: "00:05:00",
          node: {cores: 2, oversubscribe: 2, gpus: 1}, reserved: {manager: 0}}
scheduler: {type: local, poll: 0.2s}
stores: {data: {backend: filesystem}}
scales:
  coarse:
    jobs:
      gen: {role: persistent, walltime: "00:05:00",
            command: "$(PYTHON) -m mummi_spec.runtime.toy generator --plan $(PLAN)
                      --stream coarse.points --count 40 --every 0.02"}
    emits: {points: {kind: candidates, dim: 3, store: data}}
  fine:
    jobs:
      md: {role: simulation, walltime: "00:01:00", resources: {gpus: 1},
           retry: {limit: 0}, command: "SIMULATE"}
selectors: {pick: {kind: random, dim: 3}}
couplings:
  c: {from: coarse.points, to: fine, selector: pick, simulation: md, ready_buffer: 1,
      share: {gpus: 1.0}}
manager: {tick: 0.2s, checkpoint_every: 10s, max_simulations: 3}
"""


def _spec(tmp_path: Path, simulate: str) -> Path:
    spec = tmp_path / "console.yaml"
    spec.write_text(SPEC.replace("SIMULATE", simulate))
    return spec


def test_rejected_items_are_named_with_their_reason(tmp_path: Path) -> None:
    store = tmp_path / "ws" / "data" / "points"  # the filesystem store's namespace
    store.mkdir(parents=True)
    (store / "short").write_bytes(encode(Record(np.zeros(2))))
    (store / "garbage").write_bytes(b"not an item")
    proc = run_cli("run", str(_spec(tmp_path, "true")), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rejected coarse.points item 'garbage': not a record (starts with b'not '" \
        in proc.stdout
    assert "rejected coarse.points item 'short': has 2 values, the stream declares dim 3" \
        in proc.stdout
    assert "ended because every coupling reached its share of manager.max_simulations" \
        in proc.stdout


def test_a_campaign_whose_every_simulation_failed_exits_1(tmp_path: Path) -> None:
    proc = run_cli("run", str(_spec(tmp_path, "exit 3")), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "mummi: every simulation failed (3); their reasons are in" in proc.stderr
    summary = (tmp_path / "ws" / "summary.txt").read_text()
    assert summary.count("md: failed exit code 3") == 3


def test_candidates_beyond_a_binned_selectors_bounds_are_warned_of_once(tmp_path: Path
                                                                         ) -> None:
    spec = _spec(tmp_path, "true")
    spec.write_text(spec.read_text().replace(
        "selectors: {pick: {kind: random, dim: 3}}",
        "selectors: {pick: {kind: binned, dim: 3, bins: [2, 2, 2],\n"
        "                   bounds: [[-100, 100], [-100, 100], [1000, 1001]]}}"))
    proc = run_cli("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = [line for line in proc.stdout.splitlines() if "outside the bounds" in line]
    # In the final table, and before it at most once as news while it ran (the count then
    # grows quietly; tests/unit/test_ingest.py has the news without the timing).
    assert said and len(said) <= 2, proc.stdout
    assert re.fullmatch(
        r"warning: \d+ candidate\(s\) of coarse\.points lie outside the bounds of selector "
        r"'pick' \(bounds\[2\] = \[1000, 1001\]: \d+ below, 0 above\); they go into the edge "
        r"bins: widen selectors\.pick\.bounds to spread them", said[0])
    log = (tmp_path / "ws" / "manager.log").read_text()
    assert log.count("lie outside the bounds of selector 'pick'") == 1
    assert said[-1] in (tmp_path / "ws" / "summary.txt").read_text().splitlines()
