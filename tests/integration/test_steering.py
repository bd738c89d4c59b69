"""mummi replay and mummi explain on a finished mini campaign (`mummi run specs/mini.yaml`)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.runtime.history import History, candidates
from tests.conftest import SPECS
from tests.integration.test_campaign import run_cli, run_spec

WS = Path("workspace") / "mini-mummi-local"
COUPLING = "structures-to-cg"
STREAM = "structures.latent"


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory `mummi run specs/mini.yaml` ran in; its workspace is ``WS`` under it."""
    return run_spec(tmp_path_factory, "mini.yaml")


def spec(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """specs/mini.yaml with one change (which must apply)."""
    text = (SPECS / "mini.yaml").read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def replay(mini: Path, spec_path: Path, *args: str) -> dict:
    proc = run_cli("replay", str(WS), str(spec_path), "--json", *args, cwd=mini)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["couplings"][COUPLING]


def selected(mini: Path) -> list[str]:
    db = sqlite3.connect(mini / WS / "ledger.sqlite")
    try:
        return [c for c, in db.execute("SELECT candidate FROM sims ORDER BY seq")]
    finally:
        db.close()


RANDOM = ("    kind: farthest_point\n    dim: 32\n    k: 10\n    index: {type: exact}\n"
          "    queues:\n      structures: {ratio: 1.0, capacity: 35000}\n")


# ------------------------------------------------------------------------------ replay
def test_replayed_against_its_own_spec_the_campaign_picks_what_it_picked(mini: Path) -> None:
    got = replay(mini, SPECS / "mini.yaml")
    assert got["identical"] is True
    assert got["recorded"]["selections"] == got["replay"]["selections"] == selected(mini)
    assert got["overlap"] == 12
    assert got["recorded"]["calls"] == got["replay"]["calls"]  # ids, ranks, queues, scores


def test_replay_with_another_k_prints_both_sides_with_numbers_one_can_check(
        mini: Path, tmp_path: Path) -> None:
    k3 = spec(tmp_path, "k3.yaml", "    k: 10\n", "    k: 3\n")
    proc = run_cli("replay", str(WS), str(k3), cwd=mini)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^    k +10 +3$", out, re.M), out
    assert re.search(r"^  selections +12 +12$", out, re.M), out
    assert "identical               " in out
    # The coverage figures, recomputed by brute force from the ledger's arrivals.
    got = replay(mini, k3)
    h = History(mini / WS)
    try:
        keys, pts = candidates(h.batches(), STREAM, 8)
    finally:
        h.close()
    pts = pts.astype(np.float64)
    assert got["candidates"] == len(keys) > 12
    for side in ("recorded", "replay"):
        chosen = pts[[keys.index(k) for k in got[side]["selections"]]]
        nearest = np.sqrt(((pts[:, None, :] - chosen[None, :, :]) ** 2).sum(-1)).min(axis=1)
        radius, mean = nearest.max(), nearest.mean()
        assert got[side]["covering_radius"] == pytest.approx(radius, rel=1e-9)
        assert got[side]["mean_nearest"] == pytest.approx(mean, rel=1e-9)
    row = re.search(r"^  covering radius +([\d.]+) +([\d.]+)$", out, re.M)
    assert row and row.groups() == (f"{got['recorded']['covering_radius']:.3f}",
                                    f"{got['replay']['covering_radius']:.3f}")
    overlap = len(set(got["recorded"]["selections"]) & set(got["replay"]["selections"]))
    assert f"overlap                 {overlap} of the 12 recorded" in out


def test_replay_with_a_random_selector_is_deterministic_and_plots(mini: Path,
                                                                  tmp_path: Path) -> None:
    rnd = spec(tmp_path, "random.yaml", RANDOM, "    kind: random\n    dim: 32\n")
    runs = [run_cli("replay", str(WS), str(rnd), "--plot", str(tmp_path / f"r{i}.png"),
                    cwd=mini) for i in range(2)]
    assert [p.returncode for p in runs] == [0, 0], runs[0].stderr
    assert runs[0].stdout.replace("r0.png", "") == runs[1].stdout.replace("r1.png", "")
    assert (tmp_path / "r0.png").read_bytes() == (tmp_path / "r1.png").read_bytes()
    assert (tmp_path / "r0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    got = replay(mini, rnd)
    assert got["replay"]["settings"]["kind"] == "random"
    assert got["replay"]["queues"] == {"default": 12}
    assert got["recorded"]["queues"] == {"structures": 12}
    assert [c["asked"] for c in got["replay"]["calls"]] == \
        [c["asked"] for c in got["recorded"]["calls"]]


def test_replay_when_the_budgets_would_ask(mini: Path, tmp_path: Path) -> None:
    fewer = spec(tmp_path, "cap6.yaml", "max_simulations: 12}", "max_simulations: 6}")
    got = replay(mini, fewer, "--when", "budget")
    assert len(got["replay"]["selections"]) == 6
    assert len(got["recorded"]["selections"]) == 12


def test_a_spec_of_another_dimension_is_a_located_error(mini: Path) -> None:
    proc = run_cli("replay", str(WS), str(SPECS / "mini.yaml"), "--no-profile", cwd=mini)
    assert proc.returncode == 2
    assert re.search(r"mini\.yaml:\d+:\d+: error: selector 'sampler' is 32-D but the campaign "
                     r"recorded 8-D encodings from stream 'structures\.latent'", proc.stderr)
    assert "hint: replay with the profile the campaign ran with (--profile local)" \
        in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_renamed_coupling_is_refused_with_a_close_match(mini: Path, tmp_path: Path) -> None:
    renamed = spec(tmp_path, "renamed.yaml", "  structures-to-cg:\n", "  structures-cg:\n")
    proc = run_cli("replay", str(WS), str(renamed), cwd=mini)
    assert proc.returncode == 2
    assert re.search(r"renamed\.yaml:\d+:\d+: error: coupling 'structures-cg' is not in the "
                     r"recorded campaign", proc.stderr), proc.stderr
    assert "did you mean 'structures-to-cg'?" in proc.stderr


@pytest.mark.parametrize(("args", "says"), [
    ((), "not a campaign workspace"),
    (("--plot", "coverage.svg"), "the picture is a PNG; name a .png file"),
    (("--plot", "no/such/dir/x.png"), "no directory no/such/dir to write it in"),
])
def test_replay_bad_arguments_are_one_line(tmp_path: Path, args: tuple[str, ...],
                                           says: str) -> None:
    proc = run_cli("replay", str(tmp_path), str(SPECS / "mini.yaml"), *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- explain
def explain(mini: Path, ident: str) -> str:
    proc = run_cli("explain", str(WS), ident, cwd=mini)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_sim_is_explained(mini: Path) -> None:
    db = sqlite3.connect(mini / WS / "ledger.sqlite")
    sims = db.execute("SELECT sim, candidate FROM sims ORDER BY seq").fetchall()
    assert len(sims) == 12
    for sim, cand in sims:
        out = explain(mini, sim)
        assert out.startswith(f"sim {sim} (coupling {COUPLING}): done")
        assert f"candidate   {cand}" in out
        assert re.search(rf"arrived     \+[\d.]+ s on stream {re.escape(STREAM)}: ingest pass "
                         r"\d+, batch \d+", out), out
        assert re.search(r"selected    \+[\d.]+ s by selector sampler: rank \d+ in queue "
                         r"structures", out), out
        for name, sched_id, state in db.execute(
                "SELECT name, sched_id, state FROM jobs WHERE sim = ?", (sim,)):
            assert f"{name}  {state}" in out and f"scheduler id {sched_id};" in out
            assert f"directory runs/{sim}/" in out
        items = [k for keys, in db.execute("SELECT keys FROM fed WHERE sim = ?", (sim,))
                 for k in json.loads(keys)]
        assert items and all(k in out for k in items)
    db.close()


def shown_ids(text: str) -> set[str]:
    """The ids `mummi status` and summary.txt show: the campaign, and each row's name."""
    ids: set[str] = set()
    table = False
    for line in text.splitlines():
        if re.match(r"(stream|coupling|job type) {2,}", line):
            table = True
            continue
        if not line.strip():
            table = False
            continue
        if table:
            ids.add(line.split()[0])
        for pattern in (r"campaign (\S+):", r"feedback (\S+):", r"coverage (\S+):",
                        r"failed (\S+) \((\S+)\):", r"job type (\S+) cannot run"):
            found = re.match(pattern, line)
            if found:
                ids.update(found.groups())
    return ids


def test_every_id_status_and_the_summary_show_is_one_explain_takes(mini: Path) -> None:
    status = run_cli("status", str(WS), cwd=mini)
    assert status.returncode == 0, status.stderr
    summary = (mini / WS / "summary.txt").read_text()
    ids = shown_ids(status.stdout) | shown_ids(summary)
    assert {"mini-mummi", STREAM, COUPLING, "createsim", "cganalysis", "generator",
            "cg-to-sampler"} <= ids
    for ident in sorted(ids):
        assert explain(mini, ident).strip()


def test_explain_a_job_a_candidate_never_picked_and_a_feedback_item(mini: Path) -> None:
    assert explain(mini, "generator.1").startswith("job generator.1: generator attempt 1 "
                                                   "(persistent)")
    db = sqlite3.connect(mini / WS / "ledger.sqlite")
    chosen = {c for c, in db.execute("SELECT candidate FROM sims")}
    never = next(k for k, in db.execute("SELECT key FROM arrivals ORDER BY batch, pos")
                 if k not in chosen)
    sim, iteration, keys = db.execute("SELECT sim, iteration, keys FROM fed LIMIT 1").fetchone()
    item = json.loads(keys)[-1]
    db.close()
    assert "selected    never" in explain(mini, never)
    assert f"written by sim {sim}; consumed by loop cg-to-sampler iteration {iteration}" \
        in explain(mini, item)


def test_an_unknown_id_is_one_line_with_close_matches(mini: Path) -> None:
    proc = run_cli("explain", str(WS), "cg-00012", cwd=mini)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert re.search(r"no candidate, sim, job, .* 'cg-00012' .*; did you mean .*'cg-000012'",
                     proc.stderr), proc.stderr
