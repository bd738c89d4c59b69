"""Candidate ingest: new items of a candidate stream go into the selectors that choose from it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mummi_spec.errors import SelectorError, StoreError
from mummi_spec.runtime.campaign import Campaign, key_glob
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.readtries import ReadTries
from mummi_spec.runtime.records import decode_each
from mummi_spec.runtime.selectors.base import Selector
from mummi_spec.runtime.stores.base import Journaled
from mummi_spec.runtime.stores.common import check_keys, check_name, read_each

log = logging.getLogger("mummi.ingest")

_CHUNK = 2000


@dataclass
class Guarded:
    """A selector and the lock every thread takes first (selectors are not thread-safe)."""

    selector: Selector
    lock: threading.Lock = field(default_factory=threading.Lock)


class Ingest:
    """Reads new candidates of one stream; adding is cheap, ranks wait for the next selection."""

    def __init__(self, stream: str, campaign: Campaign, ledger: Ledger,
                 selectors: list[Guarded], known: Iterable[str]) -> None:
        self.stream = stream
        cfg = campaign.stream(stream)
        self.store = campaign.store(cfg["store"])
        self.namespace = cfg["namespace"]
        self.glob = key_glob(cfg["key"])
        self.dim = int(cfg["dim"])
        self.ledger = ledger
        self.selectors = selectors
        rejected = ledger.rejected(stream)  # refused once with a reason: never read again
        self.known = set(known) | rejected
        self.ingested = 0
        self.rejected = len(rejected)
        self._lock = threading.Lock()  # one pass at a time (the final pass may overlap a thread)
        # A journaled store lists only what is new since the cursor (kept in memory: a new
        # Ingest starts from None, a full pass the known set filters), so a key whose read
        # failed is not listed again: it is retried from _tries, the keys that failed to read
        # (and, whatever the store, set aside there after READ_TRIES passes, as feedback does).
        self._journal = self.store if isinstance(self.store, Journaled) else None
        self._cursor: Any = None
        self._tries = ReadTries("passes")

    def run_once(self) -> int:
        """Ingest every new item; returns how many were accepted."""
        with self._lock:
            try:
                keys, cursor = self._new_keys()
            except StoreError as exc:
                log.warning("ingest %s: cannot list candidates (%s); will retry", self.stream, exc)
                return 0
            accepted = 0
            for i in range(0, len(keys), _CHUNK):
                accepted += self._batch(keys[i:i + _CHUNK])
            self._cursor = cursor  # only once every key listed was taken in or set to retry
            return accepted

    def _new_keys(self) -> tuple[list[str], Any]:
        """Keys not known yet, and the cursor to keep once they are taken in."""
        if self._journal is None:
            new = [k for k in self.store.keys(self.namespace, self.glob) if k not in self.known]
            if self._tries:
                self._tries.keep_only(set(new))  # the others left the directory
            return new, None
        found, cursor = self._journal.keys_after(self.namespace, self.glob, self._cursor)
        retry = sorted(k for k in self._tries if k not in self.known)
        return [k for k in dict.fromkeys([*retry, *found]) if k not in self.known], cursor

    def _batch(self, keys: list[str]) -> int:
        # A key that could act as a path (or break a sidecar line) is refused by every store
        # call for ever: reject it once with the reason rather than fail to read it each pass.
        bad = unsafe_keys(self.namespace, keys)
        refused = {k for k, _ in bad}
        keys = [k for k in keys if k not in refused]
        records, unread, undecodable = decode_each(
            keys, read_each(self.store, self.namespace, keys), self.dim)
        given_up = self._unread(keys, unread)
        bad += undecodable + given_up
        ids = [k for k, _ in records]
        tags = [r.tag for _, r in records]
        accepted = 0
        if ids:
            arr = np.vstack([r.values for _, r in records])
            use_tags = None if all(t is None for t in tags) else tags
            for guarded in self.selectors:
                with guarded.lock:
                    try:
                        result = guarded.selector.add(ids, arr, use_tags)
                    except SelectorError as exc:
                        bad.extend((k, str(exc)) for k in ids)
                        continue
                accepted = max(accepted, result.accepted)
                bad.extend(result.rejected)
        if bad:
            # Recorded once with its reason, never retried every pass.
            log.warning("ingest %s: rejected %d item(s), first %r: %s", self.stream, len(bad),
                        bad[0][0], bad[0][1])
            self.ledger.reject(self.stream, bad)
            self.rejected += len(bad)
        self.known.update(refused)
        later = {k for k, _ in unread}.difference(k for k, _ in given_up)
        self.known.update(k for k in keys if k not in later)
        self.ingested += accepted
        return accepted

    def _unread(self, keys: list[str], unread: list[tuple[str, StoreError]]
                ) -> list[tuple[str, str]]:
        """Count a failed try for each of ``keys`` the store could not read; return those
        out of tries, with the reason, to reject. The others stay unknown, so the next pass
        retries them (a full listing finds them again, a journal pass takes them from
        _tries), unless the store says one is gone: it is listed again if written again."""
        failing = [(k, e) for k, e in unread if self._journal is None or self._still_there(k)]
        if self._tries:
            now = {k for k, _ in failing}
            self._tries.forget(k for k in keys if k not in now)  # read, or gone: start again
        given_up = self._tries.failed(failing)
        left = [(k, e) for k, e in failing if k in self._tries]
        if left:
            log.warning("ingest %s: cannot read %d item(s), first %r (%s); will retry",
                        self.stream, len(left), left[0][0], left[0][1])
        return given_up

    def _still_there(self, key: str) -> bool:
        """Whether an unreadable key is worth retrying: gone from the store means no (it is
        listed again if written again); a store that cannot say means yes."""
        try:
            return bool(self.store.exists(self.namespace, key))
        except StoreError:
            return True


def unsafe_keys(namespace: str, keys: list[str]) -> list[tuple[str, str]]:
    """``(key, reason)`` for each key no store accepts as a name (ids with '/', '..', ...)."""
    try:
        check_keys(namespace, keys)  # one fast pass over the whole batch
        return []
    except StoreError:
        pass
    out = []
    for key in keys:
        try:
            check_name("candidate id", key, namespace)
        except StoreError as exc:
            out.append((key, str(exc)))
    return out
