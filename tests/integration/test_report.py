"""`mummi report`: the page a finished mini campaign leaves, loaded by a real headless Chromium;
on demand it is the same bytes; a workspace without its plan copy is refused in one line."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.ledger import JobRow, Ledger
from mummi_spec.runtime.states import AttemptState, SimState
from tests.browser import Browser, Loaded
from tests.integration.live import query
from tests.integration.test_campaign import run_cli, run_spec

pytestmark = pytest.mark.slow
SECTIONS = ("summary", "occupancy", "timeline", "coverage", "feedback", "failures", "selections")
FIGURES = {"summary": 0, "occupancy": 1, "timeline": 1, "coverage": 1, "feedback": 1,
           "failures": 0, "selections": 1}
# What the page looks like to a reader: each section's size, title, figures and text.
PROBE = """(() => {
  const sections = SECTIONS.map(id => {
    const s = document.getElementById(id);
    if (!s) return {id: id, missing: true};
    return {id: id, height: s.getBoundingClientRect().height,
            title: s.querySelector("h2").textContent, text: s.innerText,
            html: s.innerHTML.length,
            figures: Array.from(s.querySelectorAll("img")).map(i => ({
              drawn: i.complete && i.naturalWidth > 100 && i.naturalHeight > 100,
              shown: i.getBoundingClientRect().width > 100}))};
  });
  return {title: document.title, sections: sections};
})()""".replace("SECTIONS", str(list(SECTIONS)))


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace of a finished mini campaign."""
    return run_spec(tmp_path_factory, "mini.yaml") / "workspace" / "mini-mummi-local"


def load(chromium: str, page: Path, shot: Path) -> Loaded:
    """The page in the browser; its screenshot kept in ``shot`` (the path is printed)."""
    with Browser(chromium) as browser:
        seen = browser.load(page.as_uri(), PROBE)
    shot.write_bytes(seen.screenshot)
    print(f"screenshot of {page.name}: {shot}")
    assert seen.screenshot.startswith(b"\x89PNG")
    return seen


def sections(seen: Loaded, page: Path) -> dict[str, dict[str, object]]:
    """Every section shown, with its figures drawn and shown; nothing fetched but the page,
    nothing wrong."""
    assert seen.errors == []
    assert [u for u in seen.requests if not u.startswith("data:")] == [page.as_uri()]
    out = {s["id"]: s for s in seen.result["sections"]}
    for name in SECTIONS:
        s = out[name]
        assert not s.get("missing") and s["height"] > 50, s
        assert len(s["figures"]) == FIGURES[name], s
        assert all(f["drawn"] and f["shown"] for f in s["figures"]), s
    return out


def test_the_page_of_a_finished_campaign_renders_every_section(mini: Path, chromium: str,
                                                               tmp_path: Path) -> None:
    seen = load(chromium, mini / "report.html", tmp_path / "report.png")
    assert seen.result["title"] == "mini-mummi: campaign report"
    got = sections(seen, mini / "report.html")
    # The numbers are the ledger's.
    sims = query(mini, "SELECT COUNT(*) FROM sims")[0][0]
    assert f"{sims}\nselected" in got["summary"]["text"]
    for job_type, n in query(mini, "SELECT job_type, COUNT(*) FROM jobs GROUP BY job_type"):
        assert f"{job_type}\t{n}\t" in got["timeline"]["text"]
    failed = query(mini, "SELECT name FROM jobs WHERE state IN ('failed', 'timedout')")
    for (name,) in failed:
        assert name in got["failures"]["text"]
    if not failed:
        # innerText puts one or two line breaks between a heading and a paragraph.
        assert re.search(r"Attempts that failed or timed out\n+None\.", got["failures"]["text"])
    campaign = Campaign.open(mini.parent.parent / "build" / "plan.json", mini)
    stream = campaign.stream("structures.latent")
    written = len(campaign.store(stream.store).keys(stream.namespace))
    campaign.close()
    assert f"structures.latent\t{written}\t12\t" in got["coverage"]["text"]
    (iterations, items), = query(mini, "SELECT iteration, items FROM feedback")
    assert f"weighted_mean\t{iterations}\t{items}\t" in got["feedback"]["text"]
    assert "structures-to-cg\tstructures.latent\tsampler\t12\t" in got["selections"]["text"]
    assert "sampler\tfarthest_point\tstructures\t" in got["selections"]["text"]


def test_failures_are_listed_with_their_reasons_as_text(mini: Path, chromium: str,
                                                        tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(mini, ws)
    hostile = '<img src="http://127.0.0.1:9/x.png" onerror="alert(1)"> & more'
    ledger = Ledger(ws / "ledger.sqlite")
    ledger.add_sims([("cg-099999", "structures-to-cg", "structure_<b>x</b>", 99999, 1.0)])
    ledger.set_sim("cg-099999", SimState.FAILED, reason=f"createsim: failed {hostile}", t=2.0)
    ledger.add_job(JobRow("cg-099999.createsim.3", "createsim", "cg-099999", 3,
                          AttemptState.SUBMITTING, None, str(ws / "runs" / "x"), 1, 1), 1.0)
    ledger.set_job("cg-099999.createsim.3", AttemptState.FAILED, sched_id="local-1",
                   exit_code=7, reason=hostile, t=3.0)
    ledger.reject("structures.latent", [("bad/key", "not a record (starts with b'<scr')")])
    ledger.close()
    proc = run_cli("report", str(ws), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(ws / "report.html")
    seen = load(chromium, ws / "report.html", tmp_path / "failures.png")
    text = sections(seen, ws / "report.html")["failures"]["text"]
    assert f"cg-099999\tstructures-to-cg\tstructure_<b>x</b>\tcreatesim: failed {hostile}" in text
    assert f"cg-099999.createsim.3\tcreatesim\t3\tfailed\t7\t{hostile}\tlocal-1\t" in text
    assert "\truns/x" in text  # a directory in the workspace, named from it
    assert "structures.latent\tbad/key\tnot a record (starts with b'<scr')" in text


def test_on_demand_the_page_is_the_same_bytes(mini: Path, tmp_path: Path) -> None:
    pages = []
    for name in ("a.html", "b.html"):
        proc = run_cli("report", str(mini), "-o", str(tmp_path / name), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        pages.append((tmp_path / name).read_bytes())
    assert pages[0] == pages[1] == (mini / "report.html").read_bytes()
    text = pages[0].decode()
    assert str(mini) not in text and "http:" not in text and "https:" not in text


def test_a_workspace_whose_ledger_lacks_its_plan_needs_the_plan(mini: Path,
                                                               tmp_path: Path) -> None:
    ws = tmp_path / "old"
    shutil.copytree(mini, ws)
    db = sqlite3.connect(ws / "ledger.sqlite")  # as a ledger claimed by an older mummi
    with db:
        (plan,), = db.execute("SELECT value FROM meta WHERE key = 'plan'").fetchall()
        db.execute("DELETE FROM meta WHERE key = 'plan'")
    db.close()
    build = tmp_path / "plan.json"
    build.write_text(plan)
    other = tmp_path / "other.json"
    other.write_text(plan.replace('"mini-mummi"', '"other"', 1))
    for args, message in (
            ((str(ws),), "its ledger does not keep the plan that started it (a campaign "
                         "started by an older mummi); pass --plan build/plan.json"),
            ((str(ws), "--plan", str(tmp_path / "nowhere.json")), "cannot read the plan"),
            ((str(tmp_path / "none"),), "no ledger.sqlite; is this a campaign workspace"),
            ((str(ws), "--plan", str(other)), "not the plan that started the campaign")):
        proc = run_cli("report", *args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    (ws / "report.html").unlink()
    proc = run_cli("report", str(ws), "--plan", str(build), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "<h1>Campaign mini-mummi</h1>" in (ws / "report.html").read_text()


def test_the_browser_check_sees_a_fetch_and_an_error(chromium: str, tmp_path: Path) -> None:
    # The checks above can fail: the same page header, a fetch the CSP blocks, a script error.
    page = tmp_path / "bad.html"
    head = (Path(__file__).resolve().parents[2] / "templates" / "report" /
            "report.html.j2").read_text().split("<style>")[0]
    page.write_text(head.replace("{{ version }}", "x").replace("{{ name }}", "x")
                    + '</head><body><img src="http://127.0.0.1:9/x.png">'
                    "<script>undefinedFunction()</script></body></html>")
    with Browser(chromium) as browser:
        seen = browser.load(page.as_uri(), "1")
    assert any("Content Security Policy" in e for e in seen.errors), seen.errors
    assert any("undefinedFunction" in e for e in seen.errors), seen.errors
