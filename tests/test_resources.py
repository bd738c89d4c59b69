"""The node-level resource model: figures a user can check by hand, the same in validate,
dry-run, the plan and ``mummi simulate``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mummi_spec.cli import main
from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.frontend import load_spec_text
from mummi_spec.plan import Pool

# 64 nodes of 56 usable cores and 8 GPUs; a coarse model of 4 nodes x 56 ranks; setups of 16
# cores; simulations of 1 GPU + 4 cores.
TWO_SCALE = """
spec: mummi/v1
name: two-scale
machine: {nodes: 64, walltime: "24:00:00", node: {cores: 56, gpus: 8}}
scheduler: {type: slurm}
stores: {data: {backend: filesystem}}
scales:
  coarse:
    jobs:
      model: {role: persistent, command: coarse, walltime: "24:00:00",
              resources: {nodes: 4, tasks: 224, cores_per_task: 1},
              expect: {duration: 30h}}
    emits: {points: {kind: candidates, dim: 4, store: data, expect: {every: 60s, count: 20}}}
  fine:
    jobs:
      setup: {role: setup, command: prep $(CANDIDATE), walltime: "01:00:00",
              resources: {cores_per_task: 16}, expect: {duration: 5m}}
      sim: {role: simulation, command: md $(SIM), walltime: "08:00:00",
            resources: {gpus: 1, cores_per_task: 4}, expect: {duration: 4h}}
selectors: {pick: {kind: farthest_point, dim: 4}}
couplings:
  c2f: {from: coarse.points, to: fine, selector: pick, setup: setup, simulation: sim,
        ready_buffer: 16, share: {gpus: 1.0, cores: 1.0}}
"""

# A materials campaign: a CPU-only phase-field model owning 32 of 200 nodes, MD of 1 GPU + 7.
MATERIALS = """
spec: mummi/v1
name: materials
machine: {nodes: 200, walltime: "24:00:00", node: {cores: 56, gpus: 8}}
scheduler: {type: slurm}
stores: {data: {backend: filesystem}}
scales:
  phase:
    jobs:
      field: {role: persistent, command: pf, walltime: "24:00:00",
              resources: {nodes: 32, tasks: 1792, cores_per_task: 1}}
    emits: {microstructures: {kind: candidates, dim: 6, store: data}}
  md:
    jobs:
      run: {role: simulation, command: md $(CANDIDATE), walltime: "04:00:00",
            resources: {gpus: 1, cores_per_task: 7}}
selectors: {pick: {kind: random, dim: 6}}
couplings:
  pf2md: {from: phase.microstructures, to: md, selector: pick, simulation: run,
          ready_buffer: 8, share: {gpus: 1.0}}
"""

# A CPU-only machine: no GPUs anywhere.
CPU_ONLY = """
spec: mummi/v1
name: cpu-only
machine: {nodes: 11, walltime: "12:00:00", node: {cores: 48}}
scheduler: {type: slurm}
stores: {data: {backend: filesystem}}
scales:
  coarse:
    jobs: {gen: {role: persistent, command: gen, walltime: "12:00:00",
                 resources: {cores_per_task: 8}}}
    emits: {points: {kind: candidates, dim: 3, store: data}}
  fine:
    jobs:
      sim: {role: simulation, command: sim $(SIM), walltime: "02:00:00",
            resources: {tasks: 12, cores_per_task: 1}}
selectors: {pick: {kind: random, dim: 3}}
couplings:
  c: {from: coarse.points, to: fine, selector: pick, simulation: sim, ready_buffer: 2,
      share: {cores: 1.0}}
manager: {max_simulations: 20}
"""


def _compile(text: str):  # type: ignore[no-untyped-def]
    return compile_loaded(load_spec_text(text, "x.yaml"))


def test_whole_nodes_two_scale_by_hand() -> None:
    """63 compute nodes. The coarse model takes all 56 cores of 4 nodes: their 32 GPUs have no
    core to feed them. The other 59 nodes run 8 simulations (32 cores) and keep 56 - 32 = 24
    cores: room for one 16-core setup each. So 59 x 8 = 472 simulations and 59 setups at once
    (pooled arithmetic said 504 and 80)."""
    compiled = _compile(TWO_SCALE)
    rp, plan = compiled.resources, compiled.plan
    assert [(g.count, g.gpus, g.cores, g.gpu_slots, g.cpu_cores, g.hosts) for g in rp.groups] \
        == [(59, 8, 56, 8, 24, ()), (4, 8, 0, 0, 0, ("model",))]
    assert (plan.jobs["sim"].max_concurrent, plan.jobs["setup"].max_concurrent) == (472, 59)
    assert (plan.pools.gpu_pool, plan.pools.cpu_pool) == (472, 59 * 24)
    assert plan.pools.gpus_held == 472 and plan.pools.cores_held == 472 * 4 + 59 * 24 + 224
    warning = next(str(w) for w in compiled.warnings if "can never be used" in str(w))
    assert "32 GPUs can never be used: GPU jobs need 4 cores per GPU ('sim')" in warning
    assert "4 node(s) with 0 free cores use 0 of 8 GPUs (beside model)" in warning


def test_the_same_figures_in_validate_and_dry_run(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "two.yaml"
    spec.write_text(TWO_SCALE)
    assert main(["validate", str(spec)]) == 0
    err = capsys.readouterr().err
    assert "32 GPUs can never be used" in err
    assert main(["dry-run", str(spec), "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    most = {j["job"]: j["max_concurrent"] for j in rep["jobs"]}
    assert most == {"model": 1, "setup": 59, "sim": 472}
    assert main(["dry-run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert ("59 node(s): 8 GPUs and 56 cores free -> 8 GPU slots (32 cores held), 24 cores "
            "for CPU-only jobs") in out
    assert "4 node(s) beside model: 8 GPUs and 0 cores free -> 0 GPU slots" in out


def test_simulate_places_the_coarse_job_and_never_exceeds_the_plan(tmp_path: Path) -> None:
    # Before, the simulated machine could not place the 4 x 56-core job at all.
    spec = tmp_path / "two.yaml"
    spec.write_text(TWO_SCALE)
    assert main(["simulate", str(spec), "--hours", "3", "--start", "cold", "-o",
                 str(tmp_path / "out")]) == 0
    summary = (tmp_path / "out" / "summary.txt").read_text()
    started = dict(re.findall(r"\n(\w+) +(\d+) ", summary))
    assert started["model"] == "1"  # placed, and running all along
    assert int(started["sim"]) > 100 and int(started["setup"]) > 59
    with (tmp_path / "out" / "occupancy.csv").open() as fh:
        rows = [line.split(",") for line in fh.read().splitlines()]
    head = rows[0]
    busy = [int(float(r[head.index("busy_gpus")])) for r in rows[1:]]
    assert max(busy) <= 472  # never a GPU the plan says cannot be fed
    assert max(busy) >= 0.98 * 472  # and the plan's GPUs do fill


def test_cpu_only_work_on_gpu_machines() -> None:
    """199 compute nodes; the phase-field model takes all 56 cores of 32: 256 GPUs idle. MD of
    1 GPU + 7 cores fills the other 167 nodes: 8 x 7 = 56 cores, so 167 x 8 = 1336 at once. The
    pooled check refused this spec (1592 x 7 + 1792 > 11144 cores)."""
    compiled = _compile(MATERIALS)
    assert compiled.plan.jobs["run"].max_concurrent == 1336
    assert compiled.plan.jobs["field"].resources.gpus == 0  # no need to claim GPUs it does not use
    assert compiled.plan.pools.cpu_pool == 0


def test_cpu_only_machines() -> None:
    """10 compute nodes of 48 cores; the generator holds 8 cores of one; 12-core simulations:
    3 on that node, 4 on each of the 9 others: 39 at once. All 20 simulations go to the one
    CPU-only coupling (it had a cap of 1 when split by GPU share)."""
    plan = _compile(CPU_ONLY).plan
    c = plan.couplings["c"]
    assert plan.jobs["sim"].pool == Pool.CPU and plan.jobs["sim"].max_concurrent == 39
    assert c.max_simulations == 20
    assert (plan.pools.gpu_pool, plan.pools.cpu_pool) == (0, 40 + 9 * 48)
