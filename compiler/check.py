"""Self-check of rendered artefacts: re-parse every file, and let Maestro's loader judge studies."""

from __future__ import annotations

import json
import logging
from typing import Any

import yaml

from mummi_spec.errors import TemplateError

# libyaml when present: parsing the rendered files was most of the self-check's time.
_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _maestro_verify(name: str, study: dict[str, Any]) -> None:
    from maestrowf.specification import YAMLSpecification

    # Maestro's stream loader would parse the text again in pure Python; we hand its verifier
    # the mapping we already parsed, split into the sections that loader fills in.
    spec = YAMLSpecification()
    spec.path = None
    spec.description = study.get("description", {})
    spec.environment = study.get("env", {"variables": {}, "sources": [], "labels": {},
                                         "dependencies": {}})
    spec.batch = study.get("batch", {})
    spec.study = study.get("study", [])
    spec.globals = study.get("global.parameters", {})
    # Maestro logs its complaints before raising; keep them out of the user's terminal.
    logging.getLogger("maestrowf").setLevel(logging.CRITICAL)
    try:
        spec.verify()
    except Exception as exc:  # Maestro raises bare ValueError/KeyError/jsonschema errors
        raise TemplateError(f"{name}: Maestro rejects the rendered study: {exc}") from exc


def check_artefacts(files: dict[str, str]) -> None:
    """Raise ``TemplateError`` if any rendered file does not parse or validate."""
    for name, text in sorted(files.items()):
        if name.endswith((".yaml", ".yml")):
            try:
                data = yaml.load(text, Loader=_Loader)  # a safe loader, C or Python
            except yaml.YAMLError as exc:
                raise TemplateError(f"{name} is not valid YAML: {exc}") from exc
            if not isinstance(data, dict):
                raise TemplateError(f"{name} does not hold a mapping")
            if name == "study.yaml" or name.startswith("jobs/"):
                _maestro_verify(name, data)
        elif name.endswith(".json"):
            try:
                json.loads(text)
            except ValueError as exc:
                raise TemplateError(f"{name} is not valid JSON: {exc}") from exc
