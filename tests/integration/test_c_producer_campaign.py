"""A campaign whose candidates come from C (examples/c), through `mummi run`: every
simulation runs one of them, read back by `mummi app candidate` in its job."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.records import decode
from tests.integration.test_campaign import run_cli
from tests.test_c_example import compile_tool

COUNT = 6
# The producer: the C writer, one call per candidate, into the filesystem store's namespace
# directory (each item written to a temporary '.mrc1.<pid>' there, then renamed). Beside
# them, what a crashed writer leaves (a temporary) and an item that is no record. It stays
# up, as a real producer does, until the campaign ends and stops it.
PRODUCER = """#!/bin/sh
set -e
dir=$1 tool=$2
mkdir -p "$dir"
printf 'half an item' > "$dir/.mrc1.99999"
printf 'not a record' > "$dir/pt_bad"
i=0
while [ $i -lt {count} ]; do
  "$tool" write "$dir" "pt_$i" - - "{{\\"i\\": $i}}" $i $((i * 2)) 0.5
  i=$((i + 1))
done
exec sleep 600
"""
SPEC = """
spec: mummi/v1
name: c-producer
workspace: ./ws
machine: {name: laptop, nodes: 1, walltime: "00:10:00",
          node: {cores: 2, oversubscribe: 3}, reserved: {manager: 0}}
scheduler: {type: local, poll: 0.2s}
stores: {data: {backend: filesystem}}
scales:
  coarse:
    jobs:
      producer: {role: persistent, walltime: "00:10:00", resources: {cores_per_task: 1},
                 command: "sh @SCRIPT@ $(WORKSPACE)/data/points @TOOL@"}
    emits: {points: {kind: candidates, dim: 3, store: data, key: "pt_{id}"}}
  fine:
    jobs:
      prep: {role: setup, walltime: "00:01:00", resources: {cores_per_task: 1},
             command: "$(PYTHON) -m mummi_spec app candidate --out $(WORKDIR)/system.npy"}
      md: {role: simulation, walltime: "00:01:00", resources: {cores_per_task: 1},
           stop: "5 steps",
           command: "$(PYTHON) -m mummi_spec app candidate --json > $(WORKDIR)/candidate.json
                     && echo '[1, 2]' | $(PYTHON) -m mummi_spec app emit fine.rdfs -"}
    emits: {rdfs: {kind: feedback, dim: 2, store: data, key: "fb_{sim}_{n:06d}"}}
selectors: {pick: {kind: random, dim: 3}}
couplings:
  c: {from: coarse.points, to: fine, selector: pick, setup: prep, simulation: md,
      ready_buffer: 1, share: {cores: 1.0}}
feedback:
  back: {from: fine.rdfs, to: coarse, period: 1s, aggregate: mean,
         target: {store: data, namespace: targets, key: main}}
manager: {tick: 0.2s, checkpoint_every: 10s, max_simulations: @COUNT@}
"""


@pytest.mark.slow
def test_every_simulation_runs_a_candidate_the_c_program_wrote(tmp_path: Path) -> None:
    tool = compile_tool(tmp_path)
    script = tmp_path / "producer.sh"
    script.write_text(PRODUCER.format(count=COUNT))
    spec = tmp_path / "c-producer.yaml"
    spec.write_text(SPEC.replace("@SCRIPT@", str(script)).replace("@TOOL@", str(tool))
                    .replace("@COUNT@", str(COUNT)))
    proc = run_cli("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ended because every coupling reached its share" in proc.stdout
    ws = tmp_path / "ws"
    db = sqlite3.connect(ws / "ledger.sqlite")
    sims = db.execute("SELECT sim, candidate, state FROM sims").fetchall()
    assert sorted(cand for _, cand, _ in sims) == [f"pt_{i}" for i in range(COUNT)]
    assert {state for *_, state in sims} == {"done"}
    for sim, cand, _ in sims:
        i = int(cand.removeprefix("pt_"))
        written = np.float32([i, 2 * i, 0.5])
        # The setup job's --out and the simulation's --json hold what the C program wrote.
        (setup,) = db.execute("SELECT workdir FROM jobs WHERE sim = ? AND job_type = 'prep' "
                              "AND state = 'completed'", (sim,)).fetchone()
        np.testing.assert_array_equal(np.load(Path(setup) / "system.npy"), written)
        (run,) = db.execute("SELECT workdir FROM jobs WHERE sim = ? AND job_type = 'md' AND "
                            "state = 'completed'", (sim,)).fetchone()
        got = json.loads((Path(run) / "candidate.json").read_text())
        assert (got["id"], got["tag"], got["meta"]) == (cand, None, {"i": i})
        np.testing.assert_array_equal(np.float32(got["values"]), written)
    # The item that is no record was rejected with its reason; the temporary never listed.
    assert db.execute("SELECT key, reason FROM rejected").fetchall() == [
        ("pt_bad", "not a record (starts with b'not ', expected b'MRC1')")]
    # Each simulation's `mummi app emit` wrote one feedback item keyed by its sim; the last
    # iteration consumed them all.
    consumed = sorted(k for (k,) in db.execute("SELECT key FROM consumed"))
    assert consumed == sorted(f"fb_{sim}_000000" for sim, _, _ in sims)
    c = Campaign.open(tmp_path / "build" / "plan.json")
    target = decode(c.store("data").get("targets", "main"))
    assert target.meta["items"] == COUNT
    np.testing.assert_array_equal(target.values, [1, 2])
    c.close()
