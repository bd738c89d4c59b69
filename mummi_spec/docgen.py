"""docs/spec-reference.md, generated from the schema's descriptions so it cannot drift."""

from __future__ import annotations

import json
from typing import Any

from mummi_spec.schema import load_schema

INTRO = """# mummi-spec v1: the spec reference

Generated from `mummi_spec/schemas/mummi-spec-v1.schema.json` by
`python -m mummi_spec.docgen > docs/spec-reference.md`; a test fails when the two differ.

A spec is one YAML file. Names (of scales, jobs, streams, stores, selectors, couplings,
feedback loops and profiles) are lower-case letters, digits, `-` and `_`, starting with a
letter. Durations are `HH:MM:SS`, `D-HH:MM:SS`, or a number with `s`, `m`, `h` or `d`
(`90s`, `1.5h`). Write walltimes unquoted if you like: `1:30:00` stays a duration (YAML 1.1's
base-60 integers, `on`/`yes` booleans and dates are switched off).

`${VAR}` anywhere except in `variables` (profiles included, once merged) is replaced at compile
time by the environment variable, else the spec's `variables` entry, else the default in
`${VAR:-default}`; an unset variable is an error. `$${VAR}` passes `${VAR}` to the shell
unchanged. Inside a flow mapping (`{...}`) quote a value that holds `${...}`:
`host: "${REDIS_HOST}"`. Job commands also take runtime tokens such as `$(CANDIDATE)`; see
`command` below.

A profile is a partial spec merged over the base: mappings merge, other values replace. A
profile may change any setting (also one the base leaves at its default) but may not add new
names: scales, jobs, streams, stores, selectors, queues, couplings or feedback loops.
`mummi ... --profile NAME` applies one, `--no-profile` none; by default the spec's
`default_profile`.
"""


def _type(node: dict[str, Any], schema: dict[str, Any]) -> str:
    if "$ref" in node:
        return f"[{node['$ref'].rsplit('/', 1)[-1]}](#{node['$ref'].rsplit('/', 1)[-1]})"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    t = node.get("type", "any")
    if t == "object" and isinstance(node.get("additionalProperties"), dict):
        inner = _type(node["additionalProperties"], schema)
        return f"map of name → {inner}"
    if t == "array" and isinstance(node.get("items"), dict):
        return f"list of {_type(node['items'], schema)}"
    if isinstance(t, list):
        return " or ".join(t)
    if "pattern" in node and r"\d{2}:\d{2}" in node["pattern"]:
        return "duration"
    return str(t)


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    for key, word in (("minimum", "≥"), ("maximum", "≤"), ("exclusiveMinimum", ">")):
        if key in node:
            parts.append(f"{word} {node[key]}")
    return ", ".join(parts)


def _table(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    required = set(obj.get("required", ()))
    rows = ["| key | type | required | default | meaning | example |",
            "|---|---|---|---|---|---|"]
    for key, node in obj.get("properties", {}).items():
        desc = node.get("description", "")
        if "$ref" in node:
            target = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
            desc = desc or target.get("description", "")
        cons = _constraints(node)
        if cons:
            desc = f"{desc} ({cons})" if desc else cons
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
        example = f"`{json.dumps(node['examples'][0])}`" if node.get("examples") else ""
        desc = desc.replace("|", "\\|")
        rows.append(f"| `{key}` | {_type(node, schema)} | {'yes' if key in required else ''} "
                    f"| {default} | {desc} | {example} |")
    return rows


def _nested(name: str, obj: dict[str, Any], schema: dict[str, Any], level: int) -> list[str]:
    out = [f"{'#' * level} {name}", "", obj.get("description", ""), "", *_table(obj, schema), ""]
    for key, node in obj.get("properties", {}).items():
        if node.get("type") == "object" and "properties" in node:
            out += _nested(f"{name}.{key}", node, schema, level + 1)
        items = node.get("additionalProperties")
        if isinstance(items, dict) and items.get("type") == "object" and "properties" in items:
            out += _nested(f"{name}.{key}.<name>", items, schema, level + 1)
    return out


def render() -> str:
    """The whole reference page."""
    schema = load_schema()
    out = [INTRO, "## Top level", "", *_table(schema, schema), ""]
    for key, node in schema["properties"].items():
        if node.get("type") == "object" and "properties" in node:
            out += _nested(key, node, schema, 2)
    for name, node in schema["$defs"].items():
        out += _nested(name, node, schema, 2)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
