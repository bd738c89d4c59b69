"""A campaign's plan, resolved workspace and open stores, shared by the manager and the apps."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mummi_spec.errors import MummiError, UsageError
from mummi_spec.runtime.registry import STORES
from mummi_spec.runtime.stores.base import Store

PLAN_VERSION = 1
WORKSPACE_ENV = "MUMMI_WORKSPACE"
_FIELD = re.compile(r"\{[^{}]*\}")


class PlanError(MummiError):
    """``plan.json`` is missing, unreadable or from another version of mummi-spec."""


def load_plan(path: Path) -> dict[str, Any]:
    """Read ``plan.json``; the only file the runtime reads."""
    try:
        plan = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan; compile the spec first "
                        "(`mummi compile spec.yaml`)") from None
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: not a readable plan ({exc}); compile the spec again") from None
    if not isinstance(plan, dict) or plan.get("plan_version") != PLAN_VERSION:
        found = plan.get("plan_version") if isinstance(plan, dict) else None
        raise PlanError(f"{path}: plan version {found!r}, this mummi reads {PLAN_VERSION}; "
                        "compile the spec again with this version")
    return plan


def resolve_workspace(plan_path: Path, plan: Mapping[str, Any],
                      override: str | os.PathLike[str] | None = None) -> Path:
    """The campaign's workspace, absolute.

    ``override`` (``--workspace``) wins, then ``$MUMMI_WORKSPACE``; a relative workspace in the
    plan is relative to the directory holding the build directory (where ``mummi compile`` was
    run), so ``maestro run`` by hand and ``mummi run`` agree on it.
    """
    chosen = override or os.environ.get(WORKSPACE_ENV)
    if chosen:
        return Path(chosen).resolve()
    ws = Path(plan["workspace"])
    return ws if ws.is_absolute() else (Path(plan_path).resolve().parent.parent / ws).resolve()


def key_glob(template: str) -> str:
    """The glob matching every key a stream's template can produce: each ``{field}`` -> ``*``."""
    return _FIELD.sub("*", template)


@dataclass
class Campaign:
    """A loaded plan with its workspace; stores open lazily and are shared between threads."""

    plan: dict[str, Any]
    plan_path: Path
    workspace: Path
    _stores: dict[str, Store] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, plan_path: Path, workspace: str | os.PathLike[str] | None = None
             ) -> Campaign:
        plan_path = Path(plan_path).resolve()
        plan = load_plan(plan_path)
        return cls(plan, plan_path, resolve_workspace(plan_path, plan, workspace))

    def store(self, name: str) -> Store:
        with self._lock:
            if name not in self._stores:
                config = dict(self.plan["stores"][name])
                # Only candidate streams are read from a cursor (ingest); journaling the
                # feedback namespaces too would cost an entry per frame that no one reads.
                config["journal"] = sorted({
                    st["namespace"] for st in self.plan["streams"].values()
                    if st.get("store") == name and st.get("kind") == "candidates"})
                self._stores[name] = STORES.get(config["backend"])(config, root=self.workspace)
            return self._stores[name]

    def stream(self, name: str) -> dict[str, Any]:
        """The plan's entry for stream ``scale.stream``."""
        try:
            stream: dict[str, Any] = self.plan["streams"][name]
            return stream
        except KeyError:
            known = ", ".join(sorted(self.plan["streams"]))
            raise UsageError(f"no stream {name!r} in the plan; known: {known}") from None

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
