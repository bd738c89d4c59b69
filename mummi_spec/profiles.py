"""Profiles: named partial specs merged over the base, overriding only keys that exist."""

from __future__ import annotations

import copy
import difflib
from typing import Any

from mummi_spec.errors import SpecError
from mummi_spec.sourcemap import JsonPath, SourceMap, format_path


def names(data: Any) -> list[str]:
    """Profile names defined in a raw spec, in source order."""
    profiles = data.get("profiles") if isinstance(data, dict) else None
    return list(profiles) if isinstance(profiles, dict) else []


# Maps whose keys are the spec's own names: a profile may not add entries to these (a new scale
# or job in a profile is almost always a typo). Fixed-shape objects may gain keys the base left
# at their defaults; the schema then checks them.
_NAMED = ("scales", "stores", "selectors", "couplings", "feedback", "variables")
_NAMED_BELOW = {("scales", "jobs"), ("scales", "emits"), ("selectors", "queues")}


def _is_named_map(path: JsonPath) -> bool:
    if len(path) == 1:
        return path[0] in _NAMED
    return len(path) == 3 and (path[0], path[2]) in _NAMED_BELOW


def _merge(base: Any, over: Any, path: JsonPath, ppath: JsonPath, smap: SourceMap,
           errors: list[SpecError]) -> Any:
    if not isinstance(over, dict) or not isinstance(base, dict):
        # A replaced value takes its locations from the profile.
        smap.drop(path)
        sub = smap.subtree(ppath, path)
        smap.keys.update(sub.keys)
        smap.values.update(sub.values)
        smap.plain |= sub.plain
        if ppath in smap.values:
            smap.values[path] = smap.values[ppath]
        if ppath in smap.plain:
            smap.plain.add(path)
        return copy.deepcopy(over)
    out = dict(base)
    for key, value in over.items():
        # New keys may fill in what the base left to its defaults (a whole `manager:` or
        # `env:` section too), but never a new name (a scale, store, job...).
        if key not in base and not _is_named_map(path) and (path or key not in _NAMED):
            out[key] = _merge(None, value, (*path, key), (*ppath, key), smap, errors)
            continue
        if key not in base:
            close = difflib.get_close_matches(key, list(base), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            errors.append(SpecError(
                f"profile overrides {format_path((*path, key))}, which the base spec does not "
                f"define", smap.locate((*ppath, key), key=True),
                hint=f"{hint}a profile may change settings, but not add new "
                     f"{path[-1] if path else 'top-level keys'}: define it in the base spec"))
            continue
        out[key] = _merge(base[key], value, (*path, key), (*ppath, key), smap, errors)
    return out


def apply(data: dict[str, Any], smap: SourceMap, profile: str | None
          ) -> tuple[dict[str, Any], SourceMap, list[SpecError]]:
    """The spec with ``profile`` merged in (a new dict and a new source map)."""
    if profile is None:
        return data, smap, []
    available = names(data)
    if profile not in available:
        close = difflib.get_close_matches(profile, available, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        listed = ", ".join(available) if available else "none"
        where = smap.locate(("default_profile",)) if data.get("default_profile") == profile \
            else None
        return data, smap, [SpecError(f"unknown profile '{profile}'", where,
                                      hint=f"{hint}profiles in this spec: {listed}")]
    merged_map = SourceMap(smap.file, dict(smap.keys), dict(smap.values), set(smap.plain))
    errors: list[SpecError] = []
    override = data["profiles"][profile]
    if not isinstance(override, dict):
        return data, smap, []  # not merged (it would replace the whole spec); the schema says why
    body = {k: v for k, v in data.items() if k != "profiles"}
    merged = _merge(body, override, (), ("profiles", profile), merged_map, errors)
    merged["profiles"] = data["profiles"]
    return merged, merged_map, errors
