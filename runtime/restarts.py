"""A store's server restarting under a reader (Redis without persistence loses what it held)."""

from __future__ import annotations

import logging

from mummi_spec.runtime.stores.base import Restartable, Store

log = logging.getLogger("mummi.manager")


class RestartWatch:
    """Whether a store's server restarted since the last call (never, for a store without a
    server of its own); ``note`` keeps what the reader found gone, for status and console.

    Ingest and feedback each keep one on their store and ask it at each pass, so that they
    list again from scratch and report the items they knew of that are gone, instead of
    carrying on as if nothing happened.
    """

    def __init__(self, store: Store, name: str) -> None:
        self.name = name
        self._server = store if isinstance(store, Restartable) else None
        self._epoch: str | None = None  # the first call only learns it
        self.note = ""

    def restarted(self) -> bool:
        """Ask the server (``StoreError`` if it cannot answer)."""
        if self._server is None:
            return False
        epoch = self._server.epoch()
        before, self._epoch = self._epoch, epoch
        if before is None or before == epoch:
            return False
        log.warning("store '%s': its server restarted (run %s, was %s); listing it again",
                    self.name, epoch[:12], before[:12])
        return True

    def lost(self, note: str) -> None:
        """Report what a restart took: logged, and kept for ``status.json``."""
        log.warning("store '%s': %s", self.name, note)
        self.note = note
