"""Redis store: key ``<prefix>:<namespace>::<key>``, a write journal; batches pipelined."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from mummi_spec.errors import OptionalDependencyError, StoreError
from mummi_spec.plan import StorePlan
from mummi_spec.runtime.backoff import retrying
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
# file) is waited for with bounded back-off, up to ``retry_for`` seconds (the store's) per
# call; other errors fail at once. BusyLoadingError is a ConnectionError.
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError)
# ConnectionErrors too, but no restart will cure them.
_REFUSED = (redis.AuthenticationError, redis.exceptions.AuthorizationError)

# Commands per round trip: big enough that latency vanishes (a single SET is 5-20x slower
# than pipelined ones), small enough to keep one request's buffers modest.
CHUNK = 10_000
CHUNK_BYTES = 64 << 20
SCAN_COUNT = 10_000
_GLOB = re.compile(rb"([*?\[\]\\])")
# ``move`` renames a whole chunk in one server-side call: a pipeline of RENAMEs costs redis-py
# ~10 us of client CPU per key to pack and parse (0.7-0.8 s of a 70,000-frame feedback
# iteration), the script ~0.1 s. KEYS holds the sources, the targets, then (when moving to
# another namespace) the target's journal, to which ARGV's names of the moved keys go in the
# same atomic call; the reply lists (index, error) for each key that could not be renamed.
_MOVE_SCRIPT = """
local n = math.floor(#KEYS / 2)
local journal = KEYS[2 * n + 1]
local failed = {}
for i = 1, n do
  local r = redis.pcall('RENAME', KEYS[i], KEYS[n + i])
  if type(r) == 'table' and r.err then
    failed[#failed + 1] = i
    failed[#failed + 1] = r.err
  elseif journal then
    redis.call('RPUSH', journal, ARGV[i])
  end
end
return failed
"""


class RedisStore(StoreBase):
    """One Redis server; items of all namespaces share its keyspace under ``prefix``.

    Every write to a journaled namespace (the settings' ``journal``)
    also appends its key to the namespace's journal, the list
    ``<prefix>:<namespace>:#journal`` (no item's name can be that: an item's has '::' after
    the namespace), in the same MULTI/EXEC transaction (``move``: the same script), so no
    item exists without its entry and ``keys_after`` reads only what is new. Items written
    to the server by anything but this class have no entry: ``keys_after`` finds them only
    from ``cursor=None``, which lists every key by SCAN (as ``keys`` does) once. A write
    retried after its reply was lost may leave its entry twice; ``keys_after`` lists a key
    once per call, and callers skip keys they already have.
    """

    key: ClassVar[str] = "redis"

    def __init__(self, settings: StorePlan, root: Path) -> None:
        super().__init__(settings, root)
        host, port = settings.host, settings.port
        self.where = f"{host}:{port}"
        self.prefix = settings.prefix or self.name
        self.retry_for = settings.retry_for
        # The namespaces to journal (a campaign names its candidate streams'). A journal
        # costs a list entry per write, worth it only where ingest reads it.
        self._journaled = frozenset(settings.journal)
        # Only the variable's name is in the plan; the password never is.
        env = settings.password_env
        self._secret = os.environ.get(env) if env else None
        if env and self._secret is None:
            raise StoreError(
                f"redis store {self.name!r} at {self.where}: environment variable {env!r} "
                "(password_env) is not set"
            )
        self._client = redis.Redis(
            host=host,
            port=port,
            db=settings.db,
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

        def warn(exc: Exception, delay: float) -> None:
            log.warning("redis store %r at %s: cannot %s %s in namespace %r (%s); "
                        "retrying in %.1f s", self.name, self.where, action, what, namespace,
                        self._text(exc), delay)

        try:
            return retrying(fn, transient=_transient, retry_for=self.retry_for, warn=warn)
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

    def _journal(self, namespace: str) -> bytes | None:
        if namespace not in self._journaled:
            return None
        return self._head(namespace)[:-1] + b"#journal"

    def put(self, namespace: str, key: str, data: bytes) -> None:
        self.put_many(namespace, {check_name("key", key, namespace): data})

    def put_many(self, namespace: str, items: Mapping[str, bytes]) -> None:
        head = self._head(namespace)
        check_keys(namespace, list(items))
        journal = self._journal(namespace)
        batch: dict[bytes, Any] = {}
        names: list[bytes] = []
        size = 0
        for key, data in items.items():
            name = key.encode()
            names.append(name)
            batch[head + name] = check_value(namespace, key, data)
            size += len(data)
            if len(batch) >= CHUNK or size >= CHUNK_BYTES:
                self._mset(namespace, journal, batch, names)
                batch, names, size = {}, [], 0
        if batch:
            self._mset(namespace, journal, batch, names)

    def _mset(self, namespace: str, journal: bytes | None, batch: dict[bytes, Any],
              names: list[bytes]) -> None:
        def write() -> None:
            if journal is None:
                self._client.mset(batch)
                return
            pipe = self._client.pipeline(transaction=True)  # items and entries, or neither
            pipe.mset(batch)
            pipe.rpush(journal, *names)
            pipe.execute()

        one = names[0].decode("utf-8", "surrogateescape")
        what = f"key {one!r}" if len(names) == 1 else f"{len(names)} keys"
        self._call("write", namespace, what, write)

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

    def keys_after(self, namespace: str, pattern: str = "*", cursor: Any = None
                   ) -> tuple[list[str], tuple[str, int] | None]:
        """Keys written since ``cursor`` (the server's run id and a length of the journal),
        from the journal; from ``None``, or from before the server restarted (its journal
        may have begun again, empty, and grown past the old length), every live key by SCAN,
        so items written by other clients are found too."""
        journal = self._journal(namespace)
        if journal is None:  # not journaled: every pass lists in full, as keys() does
            return self.keys(namespace, pattern), None
        since, start = cursor if cursor is not None else (None, 0)

        def read() -> tuple[str, list[bytes] | None, int]:
            pipe = self._client.pipeline(transaction=True)  # one server's answers
            pipe.info("server")
            pipe.llen(journal)
            info, length = pipe.execute()
            epoch, end = str(info["run_id"]), int(length)
            if epoch != since:
                return epoch, None, end
            begin = 0 if end < start else start  # the journal was deleted (purge): read it all
            names: list[bytes] = []
            for lo in range(begin, end, SCAN_COUNT):
                part = self._client.lrange(journal, lo, min(lo + SCAN_COUNT, end) - 1)
                names += cast("list[bytes]", part)  # bytes: no decode_responses
            return epoch, names, end

        epoch, names, end = self._call("list", namespace,
                                       f"keys matching {pattern!r} in the journal", read)
        if names is None:
            # The length first: what is written during the scan is listed again next time.
            return self.keys(namespace, pattern), (epoch, end)
        found = dict.fromkeys(n.decode("utf-8", "surrogateescape") for n in names)
        return [k for k in found if fnmatchcase(k, pattern)], (epoch, end)

    def epoch(self) -> str:
        """The server's run id (INFO): another one means it restarted, maybe without its data."""
        return self._call("ask", "", "the server's run id",
                          lambda: str(self._client.info("server")["run_id"]))

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
        into = None if dest == namespace else self._journal(dest)
        journal = [] if into is None else [into]
        tries = 0

        def run() -> Any:
            nonlocal tries
            tries += 1
            return self._move(keys=sources + targets + journal, args=names if journal else [])

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


def _transient(exc: Exception) -> bool:
    """A server restarting or out of reach for a moment: worth waiting for."""
    return isinstance(exc, _TRANSIENT) and not isinstance(exc, _REFUSED)
