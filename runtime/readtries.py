"""Items a store fails to read: tried again, and set aside after ``READ_TRIES`` in a row."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence

# Passes (ingest) or iterations (feedback) in a row an item may fail to read before it is set
# aside. A server gone for a moment or a file being replaced reads on the next try; data cut
# short in a truncated archive never will, and would otherwise be read every pass for ever.
READ_TRIES = 3


class ReadTries:
    """Per key, how many tries in a row its read has failed, and the last error.

    Ingest and feedback each keep one and follow the same rule: a key that reads (or turns
    out to be no record) or leaves the store is forgotten; one that fails ``READ_TRIES``
    tries in a row is given up, with the error as the reason to record.
    """

    def __init__(self, per: str) -> None:
        self.per = per  # what the tries are, for the reason: "passes", "iterations"
        self._failed: dict[str, tuple[int, str]] = {}

    def __len__(self) -> int:
        return len(self._failed)

    def __iter__(self) -> Iterator[str]:
        return iter(self._failed)

    def __contains__(self, key: object) -> bool:
        return key in self._failed

    def failed(self, unread: Sequence[tuple[str, object]]) -> list[tuple[str, str]]:
        """Count one more failed try for each ``(key, error)``; return the keys out of tries,
        each with its reason, and forget them (the caller sets them aside)."""
        out = []
        for key, error in unread:
            tries = self._failed.get(key, (0, ""))[0] + 1
            if tries >= READ_TRIES:
                self._failed.pop(key, None)
                out.append((key, f"{error} ({tries} {self.per} in a row)"))
            else:
                self._failed[key] = (tries, str(error))
        return out

    def forget(self, keys: Iterable[str]) -> None:
        """These keys read after all, or left the store: their count starts again."""
        for key in keys:
            self._failed.pop(key, None)

    def keep_only(self, keys: Collection[str]) -> None:
        """Forget every key not in ``keys`` (a listing: the others left the store)."""
        self.forget([k for k in self._failed if k not in keys])
