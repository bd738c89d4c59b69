"""mummi-spec: declarative ML-driven multiscale campaigns, compiled to Maestro and run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mummi_spec.errors import MummiError, SpecError, SpecErrors

if TYPE_CHECKING:
    from mummi_spec.frontend import load_spec, load_spec_text

__version__ = "0.1.0"
__all__ = ["MummiError", "SpecError", "SpecErrors", "__version__", "load_spec", "load_spec_text"]


def __getattr__(name: str) -> Any:
    # The front end (YAML, JSON Schema) loads only when asked for: applications importing
    # the runtime's item format or the plan never pay for it.
    if name in ("load_spec", "load_spec_text"):
        from mummi_spec import frontend

        return getattr(frontend, name)
    raise AttributeError(f"module 'mummi_spec' has no attribute {name!r}")
