"""Where each key and value of a loaded spec came from, keyed by JSON path."""

from __future__ import annotations

from dataclasses import dataclass, field

from mummi_spec.errors import SourceLocation

JsonPath = tuple[str | int, ...]


def format_path(path: JsonPath) -> str:
    """``("scales", "cg", "jobs", 0)`` -> ``$.scales.cg.jobs[0]``."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@dataclass
class SourceMap:
    """JSON path -> location of the key (for mapping entries) and of the value."""

    file: str
    keys: dict[JsonPath, SourceLocation] = field(default_factory=dict)
    values: dict[JsonPath, SourceLocation] = field(default_factory=dict)
    plain: set[JsonPath] = field(default_factory=set)  # unquoted scalars holding ${...}

    def locate(self, path: JsonPath, key: bool = False) -> SourceLocation:
        """The location of ``path``, or of its nearest located ancestor."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), SourceLocation(self.file, 1, 1))

    def subtree(self, prefix: JsonPath, onto: JsonPath) -> SourceMap:
        """A copy of the entries under ``prefix``, re-rooted at ``onto``."""
        out = SourceMap(self.file)
        n = len(prefix)
        for src, dst in ((self.keys, out.keys), (self.values, out.values)):
            for path, loc in src.items():
                if path[:n] == prefix and len(path) > n:
                    dst[(*onto, *path[n:])] = loc
        out.plain = {(*onto, *p[n:]) for p in self.plain if p[:n] == prefix and len(p) > n}
        return out

    def drop(self, prefix: JsonPath) -> None:
        """Forget every entry strictly below ``prefix``."""
        n = len(prefix)
        for table in (self.keys, self.values):
            for path in [p for p in table if p[:n] == prefix and len(p) > n]:
                del table[path]
        self.plain = {p for p in self.plain if not (p[:n] == prefix and len(p) > n)}

    def has(self, path: JsonPath) -> bool:
        """Whether ``path`` was written in the source (not filled in by a default)."""
        return tuple(path) in self.values
