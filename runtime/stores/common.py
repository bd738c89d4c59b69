"""What every store shares: safe names, byte values, batching and the missing-key error."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from mummi_spec.errors import StoreError
from mummi_spec.plan import StorePlan

Buffer = bytes | bytearray | memoryview
T = TypeVar("T")
S = TypeVar("S", bound="StoreBase")

# Longest name a POSIX file system takes (NAME_MAX, in UTF-8 bytes).
MAX_NAME_BYTES = 255


# One search finds every refusal reason below; the reasons are spelled out only on failure.
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.|^\.")


def check_name(what: str, name: object, namespace: str | None = None) -> str:
    """Return ``name`` if it is a safe namespace or key, else raise ``StoreError``.

    Names come from data (simulation ids, frame numbers), so anything that could act as a
    path (separators, ``..``, a leading dot, NUL) or break a line-oriented sidecar file
    (control characters) is refused, identically on every backend.
    """
    if (
        isinstance(name, str)
        and name
        and _UNSAFE.search(name) is None
        and 0 <= _utf8_length(name) <= MAX_NAME_BYTES
    ):
        return name
    where = f" in namespace {namespace!r}" if namespace is not None else ""
    if not isinstance(name, str):
        problem = "must be a string"
    elif not name:
        problem = "empty"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif ".." in name:
        problem = "contains '..'"
    elif name.startswith("."):
        problem = "starts with '.'"
    elif _UNSAFE.search(name):
        problem = "contains a control character"
    elif _utf8_length(name) < 0:
        problem = ("is not UTF-8 text (bytes no encoding reads, e.g. a file name written "
                   "in another encoding); rename it in UTF-8")
    else:
        problem = f"longer than {MAX_NAME_BYTES} bytes"
    raise StoreError(f"unsafe {what} {name!r}{where}: {problem}")


def _utf8_length(name: str) -> int:
    """Length in UTF-8 bytes, or -1 if ``name`` holds surrogates: how ``os.listdir`` and
    our Redis store hand over names that are not UTF-8. Such a name cannot become a job
    name, a ledger row or a path in a job script, so no store accepts it."""
    try:
        return len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return -1


def check_keys(namespace: str, keys: Sequence[str]) -> list[str]:
    """Check a namespace and its keys; duplicates are dropped, order kept."""
    check_name("namespace", namespace)
    if isinstance(keys, str):
        raise StoreError(f"keys for namespace {namespace!r} must be a list, not one string")
    # Batches run to 100,000 keys: scan them all at once, joined by '/' (which no valid
    # name contains), at C speed; go name by name only to say what is wrong.
    try:
        unique = list(dict.fromkeys(keys))
        joined = "/".join(unique)
        fine = (
            all(unique)
            and joined.count("/") == len(unique) - 1
            and max(map(len, unique), default=0) <= MAX_NAME_BYTES // 4  # 4 bytes a char
            and joined.isprintable()  # no control characters (nor some harmless ones)
            and not joined.startswith(".")
            and not any(bad in joined for bad in ("\\", "..", "/."))
        )
    except TypeError:  # something in keys is not a string (or not hashable)
        unique, fine = list(keys), False
    if not fine:
        for key in unique:
            check_name("key", key, namespace)
    return unique


def check_value(namespace: str, key: str, data: object) -> Buffer:
    """Refuse values that are not bytes-like (a ``str`` here is nearly always a bug)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StoreError(
            f"value for key {key!r} in namespace {namespace!r} must be bytes, "
            f"not {type(data).__name__}"
        )
    return data


def missing_error(namespace: str, missing: Sequence[str], asked: int) -> StoreError:
    """One error naming every key that was not there."""
    shown = ", ".join(repr(k) for k in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return StoreError(
        f"no such key in namespace {namespace!r}: {shown}{more} ({len(missing)} of {asked})"
    )


def present(namespace: str, keys: Sequence[str], found: Sequence[bytes | None]) -> list[bytes]:
    """``found`` (values read for ``keys``, None where absent) if nothing is missing."""
    missing = [k for k, v in zip(keys, found, strict=True) if v is None]
    if missing:
        raise missing_error(namespace, missing, len(keys))
    return found  # type: ignore[return-value]  # no None left, checked just above


def write_all(fd: int, *buffers: Buffer) -> None:
    """Write every byte of ``buffers`` in order; ``os.writev`` may stop part-way."""
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        done = os.writev(fd, views)
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if done:
            views[0] = views[0][done:]


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class StoreBase:
    """Construction, context management and item-by-item batch calls for stores to override."""

    key: ClassVar[str]

    def __init__(self, settings: StorePlan, root: Path) -> None:
        self.name = settings.name or self.key
        self.root = Path(root)

    def _path(self, settings: StorePlan) -> Path:
        """The store's directory: ``path`` relative to the workspace root, default its name."""
        return self.root / (settings.path or self.name)

    def _read(self, namespace: str, key: str) -> bytes | None:
        """The live value of an already checked key, or None when there is none."""
        raise NotImplementedError

    def get(self, namespace: str, key: str) -> bytes:
        """Read one item; ``StoreError`` if it does not exist."""
        check_name("namespace", namespace)
        data = self._read(namespace, check_name("key", key, namespace))
        if data is None:
            raise missing_error(namespace, [key], 1)
        return data

    def get_many(self, namespace: str, keys: Sequence[str]) -> list[bytes]:
        """Read many items, in the order asked; one error names every missing key."""
        check_keys(namespace, keys)
        found = [self._read(namespace, key) for key in keys]
        return present(namespace, keys, found)

    def put_many(self, namespace: str, items: Mapping[str, bytes]) -> None:
        """Write many items in one round trip where the backend allows it."""
        check_keys(namespace, list(items))  # all or nothing: check before the first write
        for key, data in items.items():
            check_value(namespace, key, data)
        for key, data in items.items():
            self.put(namespace, key, data)

    def put(self, namespace: str, key: str, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and file handles (nothing by default)."""

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_each(store: Any, namespace: str, keys: Sequence[str]) -> list[bytes | StoreError]:
    """``get_many``, falling back to one ``get`` per key when the batch fails, so that one
    unreadable item costs only itself: each entry is the item's bytes or its error."""
    try:
        return list(store.get_many(namespace, keys))
    except StoreError:
        out: list[bytes | StoreError] = []
        for key in keys:
            try:
                out.append(store.get(namespace, key))
            except StoreError as exc:
                out.append(exc)
        return out
