"""A campaign's plan, resolved workspace and open stores, shared by the manager and the apps."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mummi_spec.plan import Plan, StreamPlan
from mummi_spec.runtime.registry import STORES
from mummi_spec.runtime.stores.base import Store

WORKSPACE_ENV = "MUMMI_WORKSPACE"
_FIELD = re.compile(r"\{[^{}]*\}")


def resolve_workspace(plan_path: Path, plan: Plan,
                      override: str | os.PathLike[str] | None = None) -> Path:
    """The campaign's workspace, absolute.

    ``override`` (``--workspace``) wins, then ``$MUMMI_WORKSPACE``; a relative workspace in the
    plan is relative to the directory holding the build directory (where ``mummi compile`` was
    run), so ``maestro run`` by hand and ``mummi run`` agree on it.
    """
    chosen = override or os.environ.get(WORKSPACE_ENV)
    if chosen:
        return Path(chosen).resolve()
    ws = Path(plan.workspace)
    return ws if ws.is_absolute() else (Path(plan_path).resolve().parent.parent / ws).resolve()


def key_glob(template: str) -> str:
    """The glob matching every key a stream's template can produce: each ``{field}`` -> ``*``."""
    return _FIELD.sub("*", template)


@dataclass
class Campaign:
    """A loaded plan with its workspace; stores open lazily and are shared between threads."""

    plan: Plan
    plan_path: Path
    workspace: Path
    _stores: dict[str, Store] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, plan_path: Path, workspace: str | os.PathLike[str] | None = None
             ) -> Campaign:
        plan_path = Path(plan_path).resolve()
        plan = Plan.read(plan_path)
        return cls(plan, plan_path, resolve_workspace(plan_path, plan, workspace))

    def store(self, name: str) -> Store:
        with self._lock:
            if name not in self._stores:
                settings = self.plan.store(name)
                self._stores[name] = STORES.get(settings.backend)(settings, root=self.workspace)
            return self._stores[name]

    def python_paths(self) -> list[str]:
        """The spec's pythonpath, absolute: relative to the directory holding the build
        directory, as the workspace is."""
        base = self.plan_path.parent.parent
        return [str(p if Path(p).is_absolute() else (base / p).resolve())
                for p in self.plan.pythonpath]

    def stream(self, ref: str) -> StreamPlan:
        """The plan's stream ``scale.stream``."""
        return self.plan.stream(ref)

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
