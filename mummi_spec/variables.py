"""``${VAR}`` references: resolved from the environment, then the spec's variables block."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mummi_spec.errors import SpecError
from mummi_spec.loader import SpecLoader
from mummi_spec.sourcemap import JsonPath, SourceMap

# $${NAME} is an escape for the shell: it becomes a literal ${NAME}.
_REF = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Resolved:
    """One variable as it was resolved, for the compile report."""

    name: str
    value: str
    source: str  # "environment", "spec", or "default"


def _retype(text: str) -> Any:
    # Re-resolve with the spec loader so `nodes: ${N}` with N=1000 becomes the int 1000.
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        if not isinstance(node, yaml.ScalarNode):
            return text
        return loader.construct_document(node)
    except yaml.YAMLError:
        return text  # not a scalar YAML would read; the schema judges the string
    finally:
        loader.dispose()


def substitute(
    data: Any, smap: SourceMap, env: Mapping[str, str]
) -> tuple[Any, dict[str, Resolved], list[SpecError]]:
    """Replace every ``${VAR}`` outside ``variables`` and ``profiles``; report each one used."""
    spec_vars = data.get("variables", {}) if isinstance(data, dict) else {}
    if not isinstance(spec_vars, dict):
        spec_vars = {}
    used: dict[str, Resolved] = {}
    errors: list[SpecError] = []

    def lookup(name: str, default: str | None, path: JsonPath) -> str:
        if name in env:
            used[name] = Resolved(name, env[name], "environment")
        elif name in spec_vars:
            used[name] = Resolved(name, str(spec_vars[name]), "spec")
        elif default is not None:
            used[name] = Resolved(name, default, "default")
        else:
            errors.append(SpecError(
                f"variable '{name}' is not set", smap.locate(path),
                hint=f"export {name}=..., add it under 'variables:', write ${{{name}:-default}}, "
                     f"or write $${{{name}}} to pass it to the shell unchanged"))
            return ""
        return used[name].value

    def walk(value: Any, path: JsonPath) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) if path or k not in ("variables", "profiles") else v
                    for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            if m.group(1):
                return m.group(0)[1:]
            return lookup(m.group(2), m.group(3), path)

        out = _REF.sub(repl, value)
        whole = _REF.fullmatch(value)
        if path in smap.plain and whole and not whole.group(1):
            return _retype(out)
        return out

    return walk(data, ()), used, errors
