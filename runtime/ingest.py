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
from mummi_spec.runtime.records import decode_each
from mummi_spec.runtime.selectors.base import Selector
from mummi_spec.runtime.stores.base import Journaled
from mummi_spec.runtime.stores.common import check_keys, check_name, read_each

log = logging.getLogger("mummi.ingest")

_CHUNK = 2000
EXAMPLES = 3  # rejected items shown with their reason on the console and in status.json


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
        self.store = campaign.store(cfg.store)
        self.namespace = cfg.namespace
        self.glob = key_glob(cfg.key)
        self.dim = cfg.dim
        self.ledger = ledger
        self.selectors = selectors
        rejected = ledger.rejected(stream)  # refused once with a reason: never read again
        self.known = set(known) | rejected
        self.ingested = 0
        self.rejected = len(rejected)
        self.examples: list[tuple[str, str]] = []  # this run's first rejections, with reasons
        self._lock = threading.Lock()  # one pass at a time (the final pass may overlap a thread)
        # A journaled store lists only what is new since the cursor (kept in memory: a new
        # Ingest starts from None, a full pass the known set filters), so a key whose read
        # failed is not listed again: it waits in _retry instead.
        self._journal = self.store if isinstance(self.store, Journaled) else None
        self._cursor: Any = None
        self._retry: set[str] = set()

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
            return [k for k in self.store.keys(self.namespace, self.glob)
                    if k not in self.known], None
        found, cursor = self._journal.keys_after(self.namespace, self.glob, self._cursor)
        retry = sorted(self._retry - self.known)
        return [k for k in dict.fromkeys([*retry, *found]) if k not in self.known], cursor

    def _batch(self, keys: list[str]) -> int:
        # A key that could act as a path (or break a sidecar line) is refused by every store
        # call for ever: reject it once with the reason rather than fail to read it each pass.
        bad = unsafe_keys(self.namespace, keys)
        refused = {k for k, _ in bad}
        keys = [k for k in keys if k not in refused]
        records, unread, undecodable = decode_each(
            keys, read_each(self.store, self.namespace, keys), self.dim)
        bad += undecodable
        failed = []
        for key, error in unread:
            # Not known, so the next pass retries it: a full listing finds it again; a
            # journal does not, so it waits in _retry, unless the store says it is gone.
            if self._journal is None or self._still_there(key):
                log.warning("ingest %s: cannot read %s (%s); will retry", self.stream, key,
                            error)
                failed.append(key)
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
            log.warning("ingest %s: rejected %d item(s), first %s: %s", self.stream, len(bad),
                        bad[0][0], bad[0][1])
            self.ledger.reject(self.stream, bad)
            self.rejected += len(bad)
            self.examples += bad[:EXAMPLES - len(self.examples)]
        self.known.update(refused)
        unread_keys = {k for k, _ in unread}
        self.known.update(k for k in keys if k not in unread_keys)
        if self._journal is not None:
            self._retry.difference_update(keys)
            self._retry.update(failed)
        self.ingested += accepted
        return accepted

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
