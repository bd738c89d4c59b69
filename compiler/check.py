"""Self-check of rendered artefacts: re-parse every file, and let Maestro's loader judge studies."""

from __future__ import annotations

import io
import json
import logging

import yaml

from mummi_spec.errors import TemplateError


def _maestro_verify(name: str, text: str) -> None:
    from maestrowf.specification import YAMLSpecification

    # Maestro logs its complaints before raising; keep them out of the user's terminal.
    logging.getLogger("maestrowf").setLevel(logging.CRITICAL)
    try:
        YAMLSpecification.load_specification_from_stream(io.StringIO(text))
    except Exception as exc:  # Maestro raises bare ValueError/KeyError/SystemExit-free errors
        raise TemplateError(f"{name}: Maestro rejects the rendered study: {exc}") from exc


def check_artefacts(files: dict[str, str]) -> None:
    """Raise ``TemplateError`` if any rendered file does not parse or validate."""
    for name, text in sorted(files.items()):
        if name.endswith((".yaml", ".yml")):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise TemplateError(f"{name} is not valid YAML: {exc}") from exc
            if not isinstance(data, dict):
                raise TemplateError(f"{name} does not hold a mapping")
            if name == "study.yaml" or name.startswith("jobs/"):
                _maestro_verify(name, text)
        elif name.endswith(".json"):
            try:
                json.loads(text)
            except ValueError as exc:
                raise TemplateError(f"{name} is not valid JSON: {exc}") from exc
