"""Plain-file store: a namespace is a directory, a key is a file in it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import ClassVar

from mummi_spec.errors import StoreError
from mummi_spec.plan import StorePlan
from mummi_spec.runtime.stores.common import (
    StoreBase,
    check_keys,
    check_name,
    check_value,
    missing_error,
    write_all,
)

_tmp_counter = itertools.count()


class FilesystemStore(StoreBase):
    """Files under ``<root>/<path>/<namespace>/<key>``; writes are atomic renames."""

    key: ClassVar[str] = "filesystem"

    def __init__(self, settings: StorePlan, root: Path) -> None:
        super().__init__(settings, root)
        self.path = self._path(settings)

    def _dir(self, namespace: str) -> Path:
        return self.path / check_name("namespace", namespace)

    def _fail(self, namespace: str, key: str, action: str, exc: OSError) -> StoreError:
        return StoreError(
            f"filesystem store {self.name!r}: cannot {action} key {key!r} in namespace "
            f"{namespace!r} ({exc.strerror or exc}: {exc.filename or self.path / namespace})"
        )

    def put(self, namespace: str, key: str, data: bytes) -> None:
        folder = self._dir(namespace)
        check_name("key", key, namespace)
        value = check_value(namespace, key, data)
        # The temporary name starts with '.', which no valid key does, so keys() never
        # lists a half-written file and two writers never share one.
        tmp = folder / f".tmp.{os.getpid()}.{next(_tmp_counter)}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                write_all(fd, value)
            finally:
                os.close(fd)
            os.replace(tmp, folder / key)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise self._fail(namespace, key, "write", exc) from exc

    def _read(self, namespace: str, key: str) -> bytes | None:
        try:
            return (self.path / namespace / key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(namespace, key, "read", exc) from exc

    def exists(self, namespace: str, key: str) -> bool:
        return (self._dir(namespace) / check_name("key", key, namespace)).is_file()

    def keys(self, namespace: str, pattern: str = "*") -> list[str]:
        folder = self._dir(namespace)
        try:
            with os.scandir(folder) as entries:
                names = [
                    e.name
                    for e in entries
                    if not e.name.startswith(".") and fnmatchcase(e.name, pattern) and e.is_file()
                ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._fail(namespace, pattern, "list", exc) from exc
        return sorted(names)

    def move(self, namespace: str, keys: Sequence[str], dest: str) -> None:
        wanted = check_keys(namespace, keys)
        source, target = self._dir(namespace), self._dir(dest)
        missing = []
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail(dest, "*", "create", exc) from exc
        for key in wanted:
            try:
                os.replace(source / key, target / key)
            except FileNotFoundError:
                missing.append(key)
            except OSError as exc:
                raise self._fail(namespace, key, f"move to {dest!r}", exc) from exc
        if missing:
            raise missing_error(namespace, missing, len(wanted))
