"""In-process store for dry runs and unit tests: one dict per namespace."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, ClassVar

from mummi_spec.plan import StorePlan
from mummi_spec.runtime.stores.common import (
    StoreBase,
    check_keys,
    check_name,
    check_value,
    missing_error,
)


class MemoryStore(StoreBase):
    """Items live in this object only; nothing touches the disk."""

    key: ClassVar[str] = "memory"

    def __init__(self, settings: StorePlan, root: Path) -> None:
        super().__init__(settings, root)
        self._data: dict[str, dict[str, bytes]] = {}
        self._log: dict[str, list[str]] = {}  # every key written to a namespace, in order
        # A move is several dict operations; the manager may call from more than one thread.
        self._lock = threading.Lock()

    def put(self, namespace: str, key: str, data: bytes) -> None:
        self.put_many(namespace, {key: data})

    def put_many(self, namespace: str, items: Mapping[str, bytes]) -> None:
        check_keys(namespace, list(items))
        # Copy now: a caller reusing its bytearray must not change what was stored.
        copies = {k: bytes(check_value(namespace, k, v)) for k, v in items.items()}
        with self._lock:
            self._data.setdefault(namespace, {}).update(copies)
            self._log.setdefault(namespace, []).extend(copies)

    def _read(self, namespace: str, key: str) -> bytes | None:
        return self._data.get(namespace, {}).get(key)

    def exists(self, namespace: str, key: str) -> bool:
        check_name("namespace", namespace)
        return self._read(namespace, check_name("key", key, namespace)) is not None

    def keys(self, namespace: str, pattern: str = "*") -> list[str]:
        check_name("namespace", namespace)
        with self._lock:
            names = list(self._data.get(namespace, {}))
        return sorted(k for k in names if fnmatchcase(k, pattern))

    def keys_after(self, namespace: str, pattern: str = "*", cursor: Any = None
                   ) -> tuple[list[str], int]:
        """Live keys written since ``cursor`` (an index into the namespace's log)."""
        check_name("namespace", namespace)
        with self._lock:
            log = self._log.get(namespace, [])
            start = 0 if cursor is None else int(cursor)
            written = dict.fromkeys(log[start:])
            live = self._data.get(namespace, {})
            found = [k for k in written if k in live and fnmatchcase(k, pattern)]
            return found, len(log)

    def move(self, namespace: str, keys: Sequence[str], dest: str) -> None:
        wanted = check_keys(namespace, keys)
        check_name("namespace", dest)
        missing = []
        with self._lock:
            source = self._data.get(namespace, {})
            target = self._data.setdefault(dest, {})
            for key in wanted:
                if key not in source:
                    missing.append(key)
                elif dest != namespace:
                    target[key] = source.pop(key)
                    self._log.setdefault(dest, []).append(key)
        if missing:
            raise missing_error(namespace, missing, len(wanted))

    def close(self) -> None:
        """Nothing to release; the items stay readable until the object goes."""
