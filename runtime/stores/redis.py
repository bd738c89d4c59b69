"""Redis store: key ``<prefix>:<namespace>::<key>``; batches pipelined, listing by SCAN."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from mummi_spec.errors import OptionalDependencyError, StoreError
from mummi_spec.runtime.stores.common import (
    StoreBase,
    check_keys,
    check_name,
    check_value,
    chunks,
    missing_error,
    present,
)

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - redis is a declared dependency
    raise OptionalDependencyError("the redis store", "redis") from exc

log = logging.getLogger("mummi.store")
T = TypeVar("T")

# A restarting server (refused connections, then LOADING while it reads its append-only
# file) is waited for with bounded back-off, up to ``retry_for`` seconds (store config) per
# call; other errors fail at once. BusyLoadingError is a ConnectionError.
RETRY_FOR = 60.0
_FIRST_DELAY = 0.1
_MAX_DELAY = 5.0
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError)
_REFUSED = (redis.AuthenticationError, redis.exceptions.AuthorizationError)

# Commands per round trip: big enough that latency vanishes (a single SET is 5-20x slower
# than pipelined ones), small enough to keep one request's buffers modest.
CHUNK = 10_000
CHUNK_BYTES = 64 << 20
SCAN_COUNT = 10_000
_GLOB = re.compile(rb"([*?\[\]\\])")
# ``move`` renames a whole chunk in one server-side call: a pipeline of RENAMEs costs redis-py
# ~10 us of client CPU per key to pack and parse (0.7-0.8 s of a 70,000-frame feedback
# iteration), the script ~0.1 s. KEYS holds the sources, then the targets; the reply lists
# (index, error) for each key that could not be renamed.
_MOVE_SCRIPT = """
local n = #KEYS / 2
local failed = {}
for i = 1, n do
  local r = redis.pcall('RENAME', KEYS[i], KEYS[n + i])
  if type(r) == 'table' and r.err then
    failed[#failed + 1] = i
    failed[#failed + 1] = r.err
  end
end
return failed
"""


class RedisStore(StoreBase):
    """One Redis server; items of all namespaces share its keyspace under ``prefix``."""

    key: ClassVar[str] = "redis"

    def __init__(self, config: Mapping[str, Any], root: Path) -> None:
        super().__init__(config, root)
        host = str(config.get("host") or "127.0.0.1")
        port = int(config.get("port") or 6379)
        self.where = f"{host}:{port}"
        self.prefix = str(config.get("prefix") or self.name)
        self.retry_for = float(config.get("retry_for", RETRY_FOR))
        # Only the variable's name is in the plan; the password never is.
        env = config.get("password_env")
        self._secret = os.environ.get(env) if env else None
        if env and self._secret is None:
            raise StoreError(
                f"redis store {self.name!r} at {self.where}: environment variable {env!r} "
                "(password_env) is not set"
            )
        self._client = redis.Redis(
            host=host,
            port=port,
            db=int(config.get("db") or 0),
            password=self._secret,
            socket_connect_timeout=5,
            socket_timeout=120,
            # redis-py 8 speaks RESP3 by default; its pure-Python RESP2 parser reads large
            # MGET and pipeline replies ~1.4x faster, and RESP3 adds nothing for bytes.
            protocol=2,
            # No retries inside redis-py: ``_call`` retries, logs, and knows when a move's
            # script may already have run (redis-py would silently run it twice).
            retry=Retry(NoBackoff(), 0),
        )
        # Fail at start-up (after riding out a restart), not at the first feedback iteration.
        self._call("connect", "", "any key", self._client.ping)
        self._move = self._client.register_script(_MOVE_SCRIPT)  # loaded at first use

    def _call(self, action: str, namespace: str, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, retried through a server restart; redis-py's errors become
        ``StoreError``s naming server, namespace and keys. ``fn`` must be safe to repeat."""
        deadline = time.monotonic() + self.retry_for
        delay = _FIRST_DELAY
        while True:
            try:
                return fn()
            except _REFUSED as exc:  # ConnectionErrors too, but no restart will cure them
                raise self._error(action, namespace, what, exc) from exc
            except _TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise self._error(action, namespace, what, exc) from exc
                log.warning("redis store %r at %s: cannot %s %s in namespace %r (%s); "
                            "retrying in %.1f s", self.name, self.where, action, what,
                            namespace, self._text(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
            except redis.RedisError as exc:
                raise self._error(action, namespace, what, exc) from exc

    def _text(self, exc: Exception) -> str:
        text = f"{type(exc).__name__}: {exc}"
        return text.replace(self._secret, "***") if self._secret else text

    def _error(self, action: str, namespace: str, what: str, exc: Exception) -> StoreError:
        return StoreError(
            f"redis store {self.name!r} at {self.where}: cannot {action} {what} "
            f"in namespace {namespace!r} ({self._text(exc)})"
        )

    def _head(self, namespace: str) -> bytes:
        """``<prefix>:<namespace>::`` as bytes (redis-py packs bytes faster than str)."""
        check_name("namespace", namespace)
        # '::' ends the namespace; "a:" + "::k" and "a" + ":::k" would be the same key.
        if "::" in namespace or namespace.endswith(":"):
            raise StoreError(
                f"unsafe namespace {namespace!r}: redis namespaces may not contain '::' "
                "or end with ':'"
            )
        return f"{self.prefix}:{namespace}::".encode()

    def put(self, namespace: str, key: str, data: bytes) -> None:
        name = self._head(namespace) + check_name("key", key, namespace).encode()
        value = check_value(namespace, key, data)
        self._call("write", namespace, f"key {key!r}", partial(self._client.set, name, value))

    def put_many(self, namespace: str, items: Mapping[str, bytes]) -> None:
        head = self._head(namespace)
        check_keys(namespace, list(items))
        batch: dict[bytes, Any] = {}
        size = 0
        for key, data in items.items():
            batch[head + key.encode()] = check_value(namespace, key, data)
            size += len(data)
            if len(batch) >= CHUNK or size >= CHUNK_BYTES:
                self._mset(namespace, batch)
                batch, size = {}, 0
        if batch:
            self._mset(namespace, batch)

    def _mset(self, namespace: str, batch: dict[bytes, Any]) -> None:
        self._call("write", namespace, f"{len(batch)} keys", partial(self._client.mset, batch))

    def get(self, namespace: str, key: str) -> bytes:
        return self.get_many(namespace, [key])[0]

    def get_many(self, namespace: str, keys: Sequence[str]) -> list[bytes]:
        head = self._head(namespace)
        check_keys(namespace, keys)
        found: list[bytes | None] = []
        for part in chunks(keys, CHUNK):
            names = [head + k.encode() for k in part]
            values = self._call("read", namespace, f"{len(part)} keys from {part[0]!r}",
                                partial(self._client.mget, names))
            found.extend(cast("list[bytes | None]", values))  # bytes: no decode_responses
        return present(namespace, keys, found)

    def exists(self, namespace: str, key: str) -> bool:
        name = self._head(namespace) + check_name("key", key, namespace).encode()
        return bool(self._call("look up", namespace, f"key {key!r}",
                               partial(self._client.exists, name)))

    def keys(self, namespace: str, pattern: str = "*") -> list[str]:
        head = self._head(namespace)
        # Redis globs escape with '\' and differ from fnmatch on '[!...]': such patterns
        # are matched here instead, the plain '*' and '?' ones by the server.
        local = "[" in pattern or "\\" in pattern
        match = _GLOB.sub(rb"\\\1", head) + (b"*" if local else pattern.encode())

        def scan() -> set[bytes]:  # a retry starts the scan again: cursors die with a restart
            found: set[bytes] = set()  # SCAN may return a key twice while the table grows
            cursor = 0
            while True:
                cursor, batch = self._client.scan(cursor, match=match, count=SCAN_COUNT)
                found.update(cast("list[bytes]", batch))
                if cursor == 0:
                    return found

        found = self._call("list", namespace, f"keys matching {pattern!r}", scan)
        cut = len(head)
        names = [k[cut:].decode("utf-8", "surrogateescape") for k in found]
        if local:
            names = [n for n in names if fnmatchcase(n, pattern)]
        return sorted(names)

    def move(self, namespace: str, keys: Sequence[str], dest: str) -> None:
        wanted = check_keys(namespace, keys)
        head, target = self._head(namespace), self._head(dest)
        missing: list[str] = []
        for part in chunks(wanted, CHUNK):
            missing += self._move_part(namespace, dest, part, head, target)
        if missing:
            raise missing_error(namespace, missing, len(wanted))

    def _move_part(self, namespace: str, dest: str, part: Sequence[str], head: bytes,
                   target: bytes) -> list[str]:
        """Move one chunk in one server-side call; returns its keys that were not there."""
        names = [key.encode() for key in part]
        sources, targets = [head + n for n in names], [target + n for n in names]
        tries = 0

        def run() -> Any:
            nonlocal tries
            tries += 1
            return self._move(keys=sources + targets)

        failed = self._call(f"move to {dest!r}", namespace, f"{len(part)} keys from {part[0]!r}",
                            run)
        gone: list[int] = []
        for index, error in zip(failed[::2], failed[1::2], strict=True):
            key, text = part[int(index) - 1], error.decode("utf-8", "replace")
            # The error text is all Redis says: "ERR no such key" for a missing source.
            if "no such key" not in text.lower():
                raise StoreError(
                    f"redis store {self.name!r} at {self.where}: cannot move key "
                    f"{key!r} in namespace {namespace!r} to {dest!r} ({text})"
                )
            gone.append(int(index) - 1)
        if gone and tries > 1:
            # The connection dropped after the server ran an earlier try (its reply was
            # lost): keys already in dest were moved by this call, not missing.
            there = self._call("look up", dest, f"{len(gone)} moved keys",
                               partial(self._client.mget, [targets[i] for i in gone]))
            gone = [i for i, value in zip(gone, there, strict=True) if value is None]
        return [part[i] for i in gone]

    def purge(self) -> int:
        """Delete every key under this store's prefix (tests, benchmarks, a campaign reset)."""
        match = _GLOB.sub(rb"\\\1", f"{self.prefix}:".encode()) + b"*"

        def purge() -> int:
            names = list(self._client.scan_iter(match=match, count=SCAN_COUNT))
            for part in chunks(names, CHUNK):
                self._client.unlink(*part)
            return len(names)

        return self._call("delete", "*", "every key", purge)

    def close(self) -> None:
        self._client.close()
