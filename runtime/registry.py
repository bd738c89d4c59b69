"""Explicit, lazily imported plugin tables for selectors, stores and schedulers."""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any

from mummi_spec.errors import UnknownPluginError


class Registry:
    """Name -> ``"module:attr"``; built-ins first, then entry points of ``group``."""

    def __init__(self, kind: str, builtins: dict[str, str], group: str) -> None:
        self.kind = kind
        self._builtins = dict(builtins)
        self._group = group
        self._table: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._table is None:
            table = {ep.name: ep.value for ep in entry_points(group=self._group)}
            table.update(self._builtins)  # built-ins win on clashes
            self._table = table
        return self._table

    def builtin_names(self) -> list[str]:
        """Names shipped with mummi-spec (what the schema enumerates)."""
        return sorted(self._builtins)

    def names(self) -> list[str]:
        """Every known name, sorted."""
        return sorted(self._load())

    def get(self, name: str) -> Any:
        """Import and return the class registered under ``name``."""
        table = self._load()
        target = table.get(name)
        if target is None:
            known = ", ".join(sorted(table))
            close = difflib.get_close_matches(name, table, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UnknownPluginError(f"unknown {self.kind} '{name}'; known: {known}.{hint}")
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


SELECTORS = Registry(
    "selector",
    {
        "farthest_point": "mummi_spec.runtime.selectors.farthest_point:FarthestPointSelector",
        "binned": "mummi_spec.runtime.selectors.binned:BinnedSelector",
        "random": "mummi_spec.runtime.selectors.random:RandomSelector",
    },
    group="mummi_spec.selectors",
)

STORES = Registry(
    "store backend",
    {
        "filesystem": "mummi_spec.runtime.stores.filesystem:FilesystemStore",
        "taridx": "mummi_spec.runtime.stores.taridx:TaridxStore",
        "redis": "mummi_spec.runtime.stores.redis:RedisStore",
        "memory": "mummi_spec.runtime.stores.memory:MemoryStore",
    },
    group="mummi_spec.stores",
)

SCHEDULERS = Registry(
    "scheduler",
    {
        "local": "mummi_spec.runtime.schedulers.local:LocalScheduler",
        "slurm": "mummi_spec.runtime.schedulers.slurm:SlurmScheduler",
        "flux": "mummi_spec.runtime.schedulers.flux:FluxScheduler",
        "lsf": "mummi_spec.runtime.schedulers.lsf:LsfScheduler",
        "dryrun": "mummi_spec.runtime.schedulers.dryrun:DryRunScheduler",
    },
    group="mummi_spec.schedulers",
)
