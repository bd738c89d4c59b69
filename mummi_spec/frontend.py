"""The front-end pipeline: load, apply a profile, substitute variables, validate, build, check."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mummi_spec import checks, profiles, schema
from mummi_spec.build import build
from mummi_spec.errors import SpecError, SpecErrors, SpecWarning
from mummi_spec.loader import load_file, load_text
from mummi_spec.model import Spec
from mummi_spec.sourcemap import SourceMap
from mummi_spec.variables import substitute

# Passed as ``profile`` to mean "the base spec, even if it names a default profile".
NO_PROFILE = ""


@dataclass(frozen=True)
class Loaded:
    """A validated spec with what it took to get there."""

    spec: Spec
    smap: SourceMap
    text: str
    data: dict[str, Any]
    warnings: list[SpecError] = field(default_factory=list)


def choose_profile(data: Any, requested: str | None) -> str | None:
    """The profile to apply: the one asked for, else the spec's ``default_profile``."""
    if requested == NO_PROFILE:
        return None
    if requested is not None:
        return requested
    default = data.get("default_profile") if isinstance(data, dict) else None
    return default if isinstance(default, str) else None


def _pipeline(raw: Any, smap: SourceMap, file: str, profile: str | None,
              env: Mapping[str, str]) -> tuple[Spec | None, SourceMap, dict[str, Any],
                                               list[SpecError]]:
    if not isinstance(raw, dict):
        return None, smap, {}, list(schema.validate(raw, smap))
    merged, mmap, errors = profiles.apply(raw, smap, profile)
    data, used, var_errors = substitute(merged, mmap, env)
    errors = [*errors, *var_errors, *schema.validate(data, mmap)]
    variables = tuple((r.name, r.value, r.source) for r in sorted(used.values(),
                                                                   key=lambda r: r.name))
    spec = build(data, mmap, file=file, profile=profile, variables=variables)
    errors.extend(checks.check(spec, mmap))
    return spec, mmap, data, errors


def _finish(spec: Spec | None, smap: SourceMap, text: str, data: dict[str, Any],
            problems: list[SpecError]) -> Loaded:
    errors = [p for p in problems if not isinstance(p, SpecWarning)]
    if errors or spec is None:
        raise SpecErrors(errors or problems)
    warnings = sorted((p for p in problems if isinstance(p, SpecWarning)), key=SpecError.sort_key)
    return Loaded(spec, smap, text, data, list(warnings))


def _load(raw: Any, smap: SourceMap, text: str, file: str, profile: str | None,
          env: Mapping[str, str] | None) -> Loaded:
    spec, mmap, data, problems = _pipeline(raw, smap, file, choose_profile(raw, profile),
                                           os.environ if env is None else env)
    return _finish(spec, mmap, text, data, problems)


def load_spec_text(text: str, file: str = "<spec>", profile: str | None = None,
                   env: Mapping[str, str] | None = None) -> Loaded:
    """Validate spec text with one profile applied; raise ``SpecErrors`` with every problem."""
    raw, smap = load_text(text, file)
    return _load(raw, smap, text, file, profile, env)


def load_spec(path: str | Path, profile: str | None = None,
              env: Mapping[str, str] | None = None) -> Loaded:
    """Read and validate a spec file (see ``load_spec_text``)."""
    raw, smap, text = load_file(path)
    return _load(raw, smap, text, str(path), profile, env)


def validate_everything(path: str | Path, env: Mapping[str, str] | None = None
                        ) -> tuple[dict[str | None, Loaded], list[SpecError]]:
    """Validate the base spec and every profile; problems are reported once each."""
    raw, smap, text = load_file(path)
    env = os.environ if env is None else env
    names: list[str | None] = [None, *profiles.names(raw)]
    loaded: dict[str | None, Loaded] = {}
    seen: dict[str, SpecError] = {}
    default = choose_profile(raw, None)
    if default is not None and default not in names:
        _, _, problems = profiles.apply(raw, smap, default)
        seen.update((str(p), p) for p in problems)
    for name in names:
        spec, mmap, data, problems = _pipeline(raw, smap, str(path), name, env)
        for p in problems:
            seen.setdefault(str(p), p)
        if spec is not None and not any(not isinstance(p, SpecWarning) for p in problems):
            loaded[name] = Loaded(spec, mmap, text, data,
                                  [p for p in problems if isinstance(p, SpecWarning)])
    return loaded, sorted(seen.values(), key=SpecError.sort_key)
