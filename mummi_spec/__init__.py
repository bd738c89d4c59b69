"""mummi-spec: declarative ML-driven multiscale campaigns, compiled to Maestro and run."""

from __future__ import annotations

from mummi_spec.errors import MummiError, SpecError, SpecErrors
from mummi_spec.frontend import load_spec, load_spec_text

__version__ = "0.1.0"
__all__ = ["MummiError", "SpecError", "SpecErrors", "__version__", "load_spec", "load_spec_text"]
