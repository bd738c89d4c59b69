"""The packaged JSON Schema, and its errors mapped to located, hinted SpecErrors."""

from __future__ import annotations

import difflib
import functools
import json
from importlib.resources import files
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from mummi_spec.errors import SpecSchemaError
from mummi_spec.sourcemap import SourceMap, format_path

SCHEMA_NAME = "mummi-spec-v1.schema.json"
SPEC_VERSION = "mummi/v1"


@functools.cache
def load_schema() -> dict[str, Any]:
    """The v1 schema, read once from package data."""
    text = files("mummi_spec").joinpath("schemas", SCHEMA_NAME).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"allowed keys: {', '.join(sorted(choices))}" if choices else None


def _describe(error: jsonschema.ValidationError, smap: SourceMap) -> list[SpecSchemaError]:
    path = tuple(error.absolute_path)
    where = format_path(path)
    validator = error.validator
    # The stubs allow "unset" for errors not raised by a validator; ours always are.
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    value: Any = error.validator_value
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(schema.get("properties", {}))
        extras = [k for k in error.instance if k not in known]
        return [
            SpecSchemaError(f"unknown key '{k}' in {where}", smap.locate((*path, k), key=True),
                            hint=_did_you_mean(k, known))
            for k in extras
        ]
    loc = smap.locate(path)
    if validator == "required":
        # One error per missing key at once (validate() drops the duplicates).
        have = error.instance if isinstance(error.instance, dict) else {}
        return [SpecSchemaError(f"{where} is missing the required key '{name}'", loc,
                                hint=_required_hint(schema, name))
                for name in value if name not in have]
    if validator == "enum":
        allowed = ", ".join(str(v) for v in value)
        close = difflib.get_close_matches(str(error.instance), [str(v) for v in value], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return [SpecSchemaError(f"{where}: '{error.instance}' is not allowed", loc,
                                hint=f"{hint}allowed values: {allowed}")]
    if validator == "const":
        return [SpecSchemaError(f"{where} must be '{value}'", loc,
                                hint=f"this version of mummi-spec reads '{SPEC_VERSION}' specs")]
    if validator == "pattern" and "propertyNames" in list(error.schema_path):
        return [SpecSchemaError(
            f"{where}: the name '{error.instance}' is not allowed",
            smap.locate((*path, str(error.instance)), key=True),
            hint="names are lower-case letters, digits, '-' and '_', starting with a letter, "
                 f"e.g. '{str(error.instance).lower().replace(' ', '-')}'")]
    if validator == "pattern":
        return [SpecSchemaError(f"{where}: '{error.instance}' has the wrong form", loc,
                                hint=_pattern_hint(schema, str(error.instance)))]
    if validator == "propertyNames":
        loc = smap.locate((*path, str(error.instance)), key=True)
        return [SpecSchemaError(f"{where}: the name '{error.instance}' is not allowed", loc,
                                hint="names are lower-case letters, digits, '-' and '_', "
                                     "starting with a letter")]
    if validator == "type":
        expected = value
        if isinstance(expected, list):
            expected = " or ".join(expected)
        return [SpecSchemaError(f"{where}: {error.instance!r} is not of type '{expected}'", loc,
                                hint=_type_hint(schema))]
    if validator in ("minimum", "maximum", "exclusiveMinimum", "minItems", "maxItems",
                     "minProperties", "minLength", "uniqueItems"):
        return [SpecSchemaError(f"{where}: {error.message}", loc, hint=_type_hint(schema))]
    return [SpecSchemaError(f"{where}: {error.message}", loc)]


def _required_hint(schema: dict[str, Any], missing: str) -> str | None:
    prop = schema.get("properties", {}).get(missing, {})
    if "$ref" in prop:
        prop = load_schema()["$defs"].get(prop["$ref"].rsplit("/", 1)[-1], {})
    desc = prop.get("description")
    return f"'{missing}': {desc}" if desc else None


def _pattern_hint(schema: dict[str, Any], value: str) -> str:
    examples = schema.get("examples")
    close = difflib.get_close_matches(value, [str(e) for e in examples or ()], n=1)
    if close:
        return f"did you mean '{close[0]}'? other forms: " + ", ".join(map(str, examples or ()))
    desc = schema.get("description", "")
    if "HH:MM:SS" in desc or "duration" in desc.lower() or "time" in desc.lower():
        return "write a duration as HH:MM:SS, D-HH:MM:SS, or a number with s, m, h or d (e.g. 90s)"
    if examples:
        return f"for example: {examples[0]}"
    return f"it must match {schema.get('pattern')}"


def _type_hint(schema: dict[str, Any]) -> str | None:
    desc = schema.get("description")
    return desc if isinstance(desc, str) else None


def validate(data: Any, smap: SourceMap) -> list[SpecSchemaError]:
    """Every schema violation in ``data``, located through ``smap``."""
    out: dict[str, SpecSchemaError] = {}
    for error in _validator().iter_errors(data):
        for problem in _describe(error, smap):
            out.setdefault(str(problem), problem)
    return list(out.values())
