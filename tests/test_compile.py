"""The compiler: golden builds of both reference specs, determinism, Maestro as the oracle."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from mummi_spec.cli import main
from mummi_spec.compiler.compile import compile_loaded
from mummi_spec.compiler.emit import manifest, write
from mummi_spec.errors import UsageError
from mummi_spec.frontend import NO_PROFILE, load_spec
from mummi_spec.plan import Plan
from tests.conftest import SPECS
from tests.golden import assert_matches_golden

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "cases"
BUILDS = [("mini.yaml", NO_PROFILE), ("mini.yaml", "local"),
          ("rasraf-3scale.yaml", NO_PROFILE), ("rasraf-3scale.yaml", "local")]


def _compile(spec: str, profile: str):
    return compile_loaded(load_spec(ROOT / "specs" / spec, profile=profile))


@pytest.mark.parametrize(("spec", "profile"), BUILDS)
def test_golden_build(spec, profile, update_golden):
    files = _compile(spec, profile).files
    name = f"{spec.removesuffix('.yaml')}-{profile or 'base'}"
    assert_matches_golden(files, GOLDEN / name, update_golden)


@pytest.mark.parametrize(("spec", "profile"), BUILDS)
def test_maestro_loader_accepts_every_study(spec, profile):
    from maestrowf.specification import YAMLSpecification

    files = _compile(spec, profile).files
    studies = [n for n in files if n == "study.yaml" or n.startswith("jobs/")]
    assert len(studies) >= 3
    for name in studies:
        loaded = YAMLSpecification.load_specification_from_stream(io.StringIO(files[name]))
        assert loaded.name  # verify() ran inside the loader and raised nothing
        steps = loaded.study
        assert steps, name


def test_compiling_twice_gives_identical_bytes(tmp_path):
    for out in ("a", "b"):
        assert main(["compile", str(ROOT / "specs" / "rasraf-3scale.yaml"), "-o",
                     str(tmp_path / out)]) == 0
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*")
         if p.is_file()}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*")
         if p.is_file()}
    assert a == b and len(a) == 10


def test_artefacts_carry_no_absolute_paths_or_timestamps(tmp_path):
    files = _compile("rasraf-3scale.yaml", "local").files
    for name, text in files.items():
        assert str(ROOT) not in text, name
        assert "2026-" not in text and "2025-" not in text, name
    manifest = json.loads(files["manifest.json"])
    assert set(manifest) == {"schema", "generator", "profile", "spec_sha256", "files"}
    assert set(manifest["files"]) == set(files) - {"manifest.json"}


def test_summit_concurrency_checks_by_hand():
    """1000 Summit nodes - 1 manager - 20 Redis = 979 compute nodes of 42 cores and 6 GPUs.

    The continuum takes 24 cores on each of 150 nodes, leaving 18 there: enough for 6 GPU jobs
    of 3 cores, none for a setup. GPU pool 979 x 6 = 5874: CG gets 0.7 -> 4111.8, AA 0.3 ->
    1762.2; the spare GPU goes to the larger remainder (CG), so 4112 + 1762 = 5874 GPUs busy.
    The other 829 nodes keep 42 - 6 x 3 = 24 cores for setups (CPU-only pool 829 x 24 =
    19896), one setup per node whatever its size (24 or 18 cores); half the nodes each:
    414.5 + 414.5, the spare node to the first name by the largest remainder (cg-to-aa's
    backmapping). Pooled cores would have said 9948 // 18 = 552 backmappings: no node holds
    an 18-core backmapping beside a 24-core createsim.
    """
    rp = _compile("rasraf-3scale.yaml", NO_PROFILE).resources
    assert (rp.compute_nodes, rp.gpu_pool, rp.cpu_pool) == (979, 5874, 19896)
    assert [(g.count, g.gpu_slots, g.cpu_cores) for g in rp.groups] == [(829, 6, 24),
                                                                          (150, 6, 0)]
    got = {j.name: j.max_concurrent for j in rp.jobs}
    assert got == {"continuum": 1, "createsim": 414, "cg": 4112, "backmapping": 415, "aa": 1762}
    assert (rp.busy_gpus, rp.idle_gpus) == (5874, 0)
    assert rp.gpu_hours == 5874 * 24


def test_frontier_packs_eight_simulations_per_node():
    rp = _compile("mini.yaml", NO_PROFILE).resources
    # 64 nodes - 1 manager = 63; the generator holds 8 GPUs: 63 x 8 - 8 = 496 GPUs, and
    # createsims and CGAnalysis share them (each 1 GPU + 6 cores, 8 x 6 = 48 of 56 cores).
    assert rp.gpu_pool == 496
    assert rp.job("cganalysis").max_concurrent == 496


def test_plan_is_what_the_runtime_reads():
    compiled = _compile("rasraf-3scale.yaml", "local")
    plan = Plan.from_json(compiled.files["plan.json"])
    assert plan == compiled.plan  # what is written is what is read back
    assert json.loads(compiled.files["plan.json"])["plan_version"] == Plan.VERSION
    assert plan.couplings["macro-to-cg"].setup == "createsim"
    assert plan.feedback["cg-to-macro"].weights_from == "patch-selector"
    assert plan.stores["frames"].backend == "filesystem"  # the local profile's switch
    assert plan.selectors["frame-selector"].bins == (18, 24, 4)


def test_job_templates_quote_the_stop_condition():
    text = _compile("rasraf-3scale.yaml", "local").files["jobs/cg.yaml"]
    cmd = yaml.safe_load(text)["study"][0]["run"]["cmd"]
    assert "--stop '20 steps'" in cmd and "$(SIM)" in cmd


def test_emit_refuses_to_clobber_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(UsageError, match="not a mummi build"):
        write(tmp_path, {"plan.json": "{}\n"})
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_emit_replaces_a_previous_build_whole(tmp_path):
    out = tmp_path / "build"
    for name in ("old", "new"):
        files = {f"jobs/{name}.yaml": "a: 1\n"}
        write(out, {**files, "manifest.json": manifest(files, "", None, "test")})
    assert sorted(p.name for p in (out / "jobs").iterdir()) == ["new.yaml"]
    assert [p.name for p in tmp_path.iterdir()] == ["build"]


def test_maestro_rejects_a_study_its_verifier_refuses() -> None:
    from mummi_spec.compiler.check import check_artefacts
    from mummi_spec.errors import TemplateError

    good = compile_loaded(load_spec(SPECS / "mini.yaml")).files
    check_artefacts(good)  # what we render passes Maestro's own verifier
    broken = dict(good)
    broken["study.yaml"] = good["study.yaml"].replace("description:", "descriptio:", 1)
    with pytest.raises(TemplateError, match=r"study\.yaml: Maestro rejects the rendered study"):
        check_artefacts(broken)
