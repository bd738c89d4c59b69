"""Indexed-tar store: a namespace is one pytaridx archive ``<path>/<namespace>.tar``."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, ClassVar

from mummi_spec.errors import StoreError
from mummi_spec.plan import StorePlan
from mummi_spec.runtime.stores.common import (
    StoreBase,
    check_keys,
    check_name,
    check_value,
    missing_error,
    present,
)
from mummi_spec.runtime.stores.tararchive import TarArchive

MAX_NAME = 160  # pytaridx's index holds names of at most 160 ASCII characters


def check_tar_name(what: str, name: object, namespace: str | None = None) -> str:
    """A safe name (see ``check_name``) that pytaridx's index can also hold."""
    checked = check_name(what, name, namespace)
    # pytaridx escapes ',' in its B-tree but cannot find such names once the tree is
    # re-read from disk (checked with 1.0.2): refuse them so plain pytaridx can read ours.
    if not checked.isascii() or len(checked) > MAX_NAME or "," in checked:
        where = f" in namespace {namespace!r}" if namespace is not None else ""
        raise StoreError(
            f"unsafe {what} {checked!r}{where}: taridx names must be ASCII, at most "
            f"{MAX_NAME} characters, without ','"
        )
    return checked


class TaridxStore(StoreBase):
    """pytaridx archives, kept open; one writer per archive, enforced with a lock file.

    Readers use the archive's append-only ``.pylst`` index and need no lock; a writer holds
    ``<archive>.lock`` until ``close()``. ``move`` copies into the destination archive and
    tombstones the source versions (pytaridx can neither delete nor rename).
    """

    key: ClassVar[str] = "taridx"

    def __init__(self, settings: StorePlan, root: Path) -> None:
        super().__init__(settings, root)
        self.path = self._path(settings)
        self._archives: dict[str, TarArchive] = {}
        # pytaridx handles keep file positions: one thread at a time per store.
        self._lock = threading.RLock()

    def _archive(self, namespace: str, *, fresh: bool = True) -> TarArchive:
        archive = self._archives.get(namespace)
        if archive is None:
            check_tar_name("namespace", namespace)
            label = f"taridx store {self.name!r} namespace {namespace!r}"
            archive = self._archives[namespace] = TarArchive(
                self.path / f"{namespace}.tar", label
            )
        if fresh:
            archive.refresh()
        return archive

    def _check_keys(self, namespace: str, keys: Sequence[str]) -> list[str]:
        unique = check_keys(namespace, keys)
        for key in unique:
            if not key.isascii() or len(key) > MAX_NAME or "," in key:
                check_tar_name("key", key, namespace)  # raises, saying why
        return unique

    def put(self, namespace: str, key: str, data: bytes) -> None:
        self.put_many(namespace, {key: data})

    def put_many(self, namespace: str, items: Mapping[str, bytes]) -> None:
        self._check_keys(namespace, list(items))
        pairs = [(k, check_value(namespace, k, v)) for k, v in items.items()]
        if not pairs:
            return  # no writer lock for nothing
        with self._lock:
            self._archive(namespace, fresh=False).write(pairs)

    def get(self, namespace: str, key: str) -> bytes:
        return self.get_many(namespace, [key])[0]

    def get_many(self, namespace: str, keys: Sequence[str]) -> list[bytes]:
        self._check_keys(namespace, keys)
        with self._lock:
            archive = self._archive(namespace)
            entries = [archive.entry(k) for k in keys]
            found = [
                None if e is None else archive.read(k, e)
                for k, e in zip(keys, entries, strict=True)
            ]
        return present(namespace, keys, found)

    def exists(self, namespace: str, key: str) -> bool:
        check_tar_name("key", key, namespace)
        with self._lock:
            return self._archive(namespace).entry(key) is not None

    def keys(self, namespace: str, pattern: str = "*") -> list[str]:
        with self._lock:
            names = self._archive(namespace).live()
        return sorted(n for n in names if fnmatchcase(n, pattern))

    def keys_after(self, namespace: str, pattern: str = "*", cursor: Any = None
                   ) -> tuple[list[str], tuple[int, int]]:
        """Live keys indexed since ``cursor`` (see ``TarArchive.names_after``); keys moved
        here are written to this archive's index too, consumed ones are left out."""
        with self._lock:
            archive = self._archive(namespace, fresh=False)
            names, after = archive.names_after(cursor)
            archive.refresh()  # after the read: a name listed is never missing from members
            found = [n for n in dict.fromkeys(names)
                     if fnmatchcase(n, pattern) and archive.entry(n) is not None]
        return found, after

    def move(self, namespace: str, keys: Sequence[str], dest: str) -> None:
        wanted = self._check_keys(namespace, keys)
        check_tar_name("namespace", dest)
        with self._lock:
            source = self._archive(namespace)
            entries = {k: source.entry(k) for k in wanted}
            found = {k: e for k, e in entries.items() if e is not None}
            if found and dest != namespace:
                target = self._archive(dest, fresh=False)
                # One member in memory at a time, however many are moved.
                target.write((k, source.read(k, e)) for k, e in found.items())
                target.sync()  # durable in dest before it disappears from the source
                source.consume((k, e[0]) for k, e in found.items())
        missing = [k for k, e in entries.items() if e is None]
        if missing:
            raise missing_error(namespace, missing, len(wanted))

    def close(self) -> None:
        with self._lock:
            archives, self._archives = list(self._archives.values()), {}
            for archive in archives:
                archive.close()
