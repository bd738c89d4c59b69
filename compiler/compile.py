"""The compile pipeline: a validated spec to every artefact's text (pure; emit writes)."""

from __future__ import annotations

from dataclasses import dataclass

from mummi_spec import __version__
from mummi_spec.compiler.check import check_artefacts
from mummi_spec.compiler.emit import manifest
from mummi_spec.compiler.graph import to_dot, to_mermaid
from mummi_spec.compiler.plan import build_plan
from mummi_spec.compiler.render import render_job, render_study
from mummi_spec.compiler.resources import ResourcePlan, plan_resources
from mummi_spec.errors import SpecError, SpecErrors
from mummi_spec.frontend import Loaded
from mummi_spec.plan import Plan


@dataclass(frozen=True)
class Compiled:
    """Every artefact of one build, by relative path, plus what the plan noticed."""

    files: dict[str, str]
    plan: Plan
    resources: ResourcePlan
    warnings: list[SpecError]


def compile_loaded(loaded: Loaded) -> Compiled:
    """Render, self-check and return the build; raises ``SpecErrors`` for unplaceable jobs."""
    spec = loaded.spec
    rp, problems = plan_resources(spec, loaded.smap)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise SpecErrors(errors)
    plan = build_plan(spec, rp)
    files = {
        "plan.json": plan.to_json(),
        "study.yaml": render_study(spec, plan),
        "graph.dot": to_dot(spec),
        "graph.mmd": to_mermaid(spec),
    }
    for job in spec.jobs():
        files[f"jobs/{job.name}.yaml"] = render_job(spec, job, plan)
    check_artefacts(files)
    files["manifest.json"] = manifest(files, loaded.text, spec.profile,
                                      f"mummi-spec {__version__}")
    warnings = sorted([*loaded.warnings, *(p for p in problems if p.severity == "warning")],
                      key=SpecError.sort_key)
    return Compiled(dict(sorted(files.items())), plan, rp, warnings)
