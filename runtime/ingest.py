"""Candidate ingest: new items of a candidate stream go into the selectors that choose from it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mummi_spec.errors import SelectorError, StoreError
from mummi_spec.runtime.campaign import Campaign, key_glob
from mummi_spec.runtime.ledger import Ledger
from mummi_spec.runtime.readtries import ReadTries
from mummi_spec.runtime.records import Record, decode_each
from mummi_spec.runtime.restarts import RestartWatch
from mummi_spec.runtime.selectors.base import AddResult, Outside, Selector
from mummi_spec.runtime.stores.base import Journaled
from mummi_spec.runtime.stores.common import check_keys, check_name, read_each

log = logging.getLogger("mummi.ingest")

_CHUNK = 2000
EXAMPLES = 3  # rejected items shown with their reason on the console and in status.json


@dataclass
class Guarded:
    """A selector and the lock every thread takes first (selectors are not thread-safe).

    ``batch``: the last recorded batch the selector was given (changed under the lock), so a
    call records exactly what the selector had seen (the steering record, ledger.py).
    """

    selector: Selector
    lock: threading.Lock = field(default_factory=threading.Lock)
    name: str = ""  # the plan's name for it, in messages
    batch: int = 0


class Ingest:
    """Reads new candidates of one stream; adding is cheap, ranks wait for the next selection."""

    def __init__(self, stream: str, campaign: Campaign, ledger: Ledger,
                 selectors: list[Guarded], known: Iterable[str], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.stream = stream
        self.clock = clock
        self.passes = ledger.last_pass(stream)  # numbered on across restarts
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
        # failed is not listed again: it is retried from _tries, the keys that failed to read
        # (and, whatever the store, set aside there after READ_TRIES passes, as feedback does).
        self._journal = self.store if isinstance(self.store, Journaled) else None
        self._cursor: Any = None
        self._tries = ReadTries("passes")
        self.watch = RestartWatch(self.store, cfg.store)
        # Per selector: candidates beyond its bounds, and per dimension [low, high, below, above].
        self._outside: dict[str, tuple[int, dict[int, list[float]]]] = {}
        self.outside = ""  # what status.json and the console say of them
        self._gone: set[str] = set()  # known keys its server lost in a restart

    def run_once(self) -> int:
        """Ingest every new item; returns how many were accepted."""
        with self._lock:
            try:
                if self.watch.restarted():
                    self._restarted()
                keys, cursor = self._new_keys()
            except StoreError as exc:
                log.warning("ingest %s: cannot list candidates (%s); will retry", self.stream, exc)
                return 0
            accepted = 0
            self.passes += 1
            for i in range(0, len(keys), _CHUNK):
                accepted += self._batch(keys[i:i + _CHUNK])
            self._cursor = cursor  # only once every key listed was taken in or set to retry
            return accepted

    def _restarted(self) -> None:
        """The store's server restarted: list from scratch (its journal began again), and
        report the candidates read before that are gone (a server that kept no copy)."""
        self._cursor = None
        present = set(self.store.keys(self.namespace, self.glob))
        gone = [k for k in self.known if k not in present and k not in self._gone]
        if gone:
            self._gone.update(gone)
            self.watch.lost(
                f"{len(self._gone)} candidate(s) of {self.stream} read before its server "
                f"restarted are gone (first {min(gone)!r}): the server kept no copy (Redis: "
                "appendonly yes keeps one); selections of them cannot be set up")

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
        ids, arr, use_tags = _points(records)
        accepted = 0
        if ids:
            # Recorded before any selector has it: a replay then gives it to each at the same
            # point of its calls (Guarded.batch), and a crash between loses nothing.
            batch = self.ledger.record_batch(self.stream, self.passes, self.clock(), ids,
                                             use_tags, arr)
            for guarded in self.selectors:
                with guarded.lock:
                    guarded.batch = batch
                    try:
                        result = guarded.selector.add(ids, arr, use_tags)
                    except SelectorError as exc:
                        bad.extend((k, str(exc)) for k in ids)
                        continue
                if result.outside is not None:
                    self._beyond(guarded.name, result.outside)
                accepted = max(accepted, result.accepted)
                bad.extend(result.rejected)
        if bad:
            # Recorded once with its reason, never retried every pass.
            log.warning("ingest %s: rejected %d item(s), first %r: %s", self.stream, len(bad),
                        bad[0][0], bad[0][1])
            self.ledger.reject(self.stream, bad)
            self.rejected += len(bad)
            self.examples += bad[:EXAMPLES - len(self.examples)]
        self.known.update(refused)
        later = {k for k, _ in unread}.difference(k for k, _ in given_up)
        self.known.update(k for k in keys if k not in later)
        self.ingested += accepted
        return accepted

    def _beyond(self, selector: str, found: Outside) -> None:
        """Count candidates beyond a selector's bounds; warn once per stream: the bounds in
        the spec are likely wrong, and the edge bins are taking what lies past them."""
        points, dims = self._outside.get(selector, (0, {}))
        for j, (lo, hi, below, above) in found.dims.items():
            seen = dims.setdefault(j, [lo, hi, 0, 0])
            seen[2] += below
            seen[3] += above
        self._outside[selector] = (points + found.points, dims)
        first = not self.outside
        self.outside = "; ".join(
            f"{n} candidate(s) of {self.stream} lie outside the bounds of selector "
            f"'{name}' (" + ", ".join(f"bounds[{j}] = [{lo:g}, {hi:g}]: {below:.0f} below, "
                                      f"{above:.0f} above" for j, (lo, hi, below, above)
                                      in sorted(seen.items())) +
            f"); they go into the edge bins: widen selectors.{name}.bounds to spread them"
            for name, (n, seen) in sorted(self._outside.items()))
        if first:
            log.warning("ingest %s: %s", self.stream, self.outside)

    def restore_selected(self, guarded: Guarded, ids: Sequence[str]) -> AddResult:
        """Give ``guarded``'s selector, rebuilt without a usable checkpoint, the candidates
        of this stream the ledger says it selected, as selected (``Selector.add_selected``),
        their points read from the store: later picks keep away from them and feedback
        weights count them. Call it before the first ``run_once``, with the ids in
        selection order; those that cannot be read are left out, named in the result."""
        bad = unsafe_keys(self.namespace, list(ids))
        refused = {k for k, _ in bad}
        keys = [k for k in ids if k not in refused]
        accepted = 0
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            records, unread, undecodable = decode_each(
                chunk, read_each(self.store, self.namespace, chunk), self.dim)
            bad += undecodable + [(k, str(e)) for k, e in unread]
            found, arr, tags = _points(records)
            if found:
                with guarded.lock:
                    result = guarded.selector.add_selected(found, arr, tags)
                accepted += result.accepted
                bad += result.rejected
        if bad:
            log.warning("ingest %s: %d selected candidate(s) could not be given back to the "
                        "rebuilt selector, first %r: %s; it selects without them", self.stream,
                        len(bad), bad[0][0], bad[0][1])
        return AddResult(accepted, bad)

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


def _points(records: list[tuple[str, Record]]
            ) -> tuple[list[str], np.ndarray, list[str | None] | None]:
    """Ids, stacked values and tags (None when no record has one) of decoded records."""
    ids = [k for k, _ in records]
    if not ids:
        return ids, np.zeros((0, 0)), None
    tags = [r.tag for _, r in records]
    return ids, np.vstack([r.values for _, r in records]), \
        None if all(t is None for t in tags) else tags


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
