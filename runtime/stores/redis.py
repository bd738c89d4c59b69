"""Redis store: key ``<prefix>:<namespace>::<key>``; batches pipelined, listing by SCAN."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, ClassVar, cast

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
except ImportError as exc:  # pragma: no cover - redis is a declared dependency
    raise OptionalDependencyError("the redis store", "redis") from exc

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
        )
        with self._errors("connect", "", "any key"):
            self._client.ping()  # fail at start-up, not at the first feedback iteration
        self._move = self._client.register_script(_MOVE_SCRIPT)  # loaded at first use

    @contextmanager
    def _errors(self, action: str, namespace: str, what: str) -> Iterator[None]:
        """Turn redis-py's errors into ``StoreError``s naming server, namespace and keys."""
        try:
            yield
        except redis.RedisError as exc:
            text = f"{type(exc).__name__}: {exc}"
            if self._secret:
                text = text.replace(self._secret, "***")
            raise StoreError(
                f"redis store {self.name!r} at {self.where}: cannot {action} {what} "
                f"in namespace {namespace!r} ({text})"
            ) from exc

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
        with self._errors("write", namespace, f"key {key!r}"):
            self._client.set(name, value)

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
        with self._errors("write", namespace, f"{len(batch)} keys"):
            self._client.mset(batch)

    def get(self, namespace: str, key: str) -> bytes:
        return self.get_many(namespace, [key])[0]

    def get_many(self, namespace: str, keys: Sequence[str]) -> list[bytes]:
        head = self._head(namespace)
        check_keys(namespace, keys)
        found: list[bytes | None] = []
        for part in chunks(keys, CHUNK):
            with self._errors("read", namespace, f"{len(part)} keys from {part[0]!r}"):
                values = self._client.mget([head + k.encode() for k in part])
                found.extend(cast("list[bytes | None]", values))  # bytes: no decode_responses
        return present(namespace, keys, found)

    def exists(self, namespace: str, key: str) -> bool:
        name = self._head(namespace) + check_name("key", key, namespace).encode()
        with self._errors("look up", namespace, f"key {key!r}"):
            return bool(self._client.exists(name))

    def keys(self, namespace: str, pattern: str = "*") -> list[str]:
        head = self._head(namespace)
        # Redis globs escape with '\' and differ from fnmatch on '[!...]': such patterns
        # are matched here instead, the plain '*' and '?' ones by the server.
        local = "[" in pattern or "\\" in pattern
        match = _GLOB.sub(rb"\\\1", head) + (b"*" if local else pattern.encode())
        found: set[bytes] = set()  # SCAN may return a key twice while the table grows
        cursor = 0
        with self._errors("list", namespace, f"keys matching {pattern!r}"):
            while True:
                cursor, batch = self._client.scan(cursor, match=match, count=SCAN_COUNT)
                found.update(cast("list[bytes]", batch))
                if cursor == 0:
                    break
        cut = len(head)
        names = [k[cut:].decode("utf-8", "surrogateescape") for k in found]
        if local:
            names = [n for n in names if fnmatchcase(n, pattern)]
        return sorted(names)

    def move(self, namespace: str, keys: Sequence[str], dest: str) -> None:
        wanted = check_keys(namespace, keys)
        head, target = self._head(namespace), self._head(dest)
        missing = []
        for part in chunks(wanted, CHUNK):
            names = [key.encode() for key in part]
            with self._errors(f"move to {dest!r}", namespace, f"{len(part)} keys from {part[0]!r}"):
                failed = self._move(keys=[head + n for n in names] + [target + n for n in names])
            for index, error in zip(failed[::2], failed[1::2], strict=True):
                key, text = part[int(index) - 1], error.decode("utf-8", "replace")
                # The error text is all Redis says: "ERR no such key" for a missing source.
                if "no such key" not in text.lower():
                    raise StoreError(
                        f"redis store {self.name!r} at {self.where}: cannot move key "
                        f"{key!r} in namespace {namespace!r} to {dest!r} ({text})"
                    )
                missing.append(key)
        if missing:
            raise missing_error(namespace, missing, len(wanted))

    def purge(self) -> int:
        """Delete every key under this store's prefix (tests, benchmarks, a campaign reset)."""
        match = _GLOB.sub(rb"\\\1", f"{self.prefix}:".encode()) + b"*"
        with self._errors("delete", "*", "every key"):
            names = list(self._client.scan_iter(match=match, count=SCAN_COUNT))
            for part in chunks(names, CHUNK):
                self._client.unlink(*part)
        return len(names)

    def close(self) -> None:
        self._client.close()
