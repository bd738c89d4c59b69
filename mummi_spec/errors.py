"""The exception tree: one root, located spec errors, and run-time failures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class SourceLocation:
    """A 1-based position in a spec file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class MummiError(Exception):
    """Root of every deliberate error raised by mummi-spec."""


class SpecError(MummiError):
    """A problem in a spec, located at a place in its source."""

    severity = "error"

    def __init__(
        self, message: str, location: SourceLocation | None = None, *, hint: str | None = None
    ) -> None:
        self.message = message
        self.location = location
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.severity}: {self.message}"

    def sort_key(self) -> tuple[int, str, int, int, str]:
        """Order by file position; unlocated problems come last."""
        loc = self.location
        if loc is None:
            return (1, "", 0, 0, self.message)
        return (0, loc.file, loc.line, loc.column, self.message)

    def render(self, source: str | None = None) -> str:
        """The message, the offending source line with a caret, and the hint."""
        out = [str(self)]
        if source is not None and self.location is not None:
            lines = source.splitlines()
            if 1 <= self.location.line <= len(lines):
                text = lines[self.location.line - 1]
                num = f"{self.location.line:5d}"
                out.append(f"{num} | {text}")
                out.append(" " * len(num) + " | " + " " * (self.location.column - 1) + "^")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class SpecWarning(SpecError):
    """Suspicious but legal: reported, never fatal."""

    severity = "warning"


class SpecSyntaxError(SpecError):
    """The file is not well-formed YAML (or has duplicate keys)."""


class SpecSchemaError(SpecError):
    """The spec does not match the JSON Schema."""


class UnknownReferenceError(SpecError):
    """A name refers to something the spec does not define."""


class CycleError(SpecError):
    """The coupling graph has a cycle."""


class SpecErrors(MummiError):
    """Every problem found in one pass, sorted by place."""

    def __init__(self, errors: Iterable[SpecError]) -> None:
        self.errors = sorted(errors, key=SpecError.sort_key)
        super().__init__("\n".join(str(e) for e in self.errors))

    def render(self, sources: dict[str, str] | None = None) -> str:
        """Render each error with its source line when the file's text is known."""
        sources = sources or {}
        parts = []
        for err in self.errors:
            src = sources.get(err.location.file) if err.location else None
            parts.append(err.render(src))
        return "\n".join(parts)


class TemplateError(MummiError):
    """A rendered artefact failed its self-check: a bug in mummi-spec, not in the spec."""


class OptionalDependencyError(MummiError):
    """A feature needs a module that is not installed."""

    def __init__(self, feature: str, module: str, extra: str | None = None) -> None:
        how = f"pip install 'mummi-spec[{extra}]'" if extra else f"install {module}"
        super().__init__(f"{feature} needs the Python module '{module}', which is missing: {how}")


class UnknownPluginError(MummiError):
    """A registry was asked for a name it does not know."""


class SchedulerError(MummiError):
    """A scheduler refused or failed an operation."""


class StoreError(MummiError):
    """A data store failed to read, write or move an item."""


class SelectorError(MummiError):
    """A selector was given data it cannot use."""


class WorkspaceError(MummiError):
    """The campaign cannot go on in its workspace: the disk refused the manager's writes for
    too long, or its ledger is damaged. A run ends ``failed`` on it."""


class LedgerError(WorkspaceError):
    """The campaign ledger is unusable, damaged or inconsistent."""


class LeaseLostError(LedgerError):
    """This process no longer holds its workspace's lease: another took it over."""


class UsageError(MummiError):
    """The command line or the build directory is not usable as given."""
