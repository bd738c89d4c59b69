"""Every id a selector has accepted: its state, and an exact, vectorised duplicate check."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mummi_spec.errors import SelectorError
from mummi_spec.runtime.selectors._columns import Columns

CANDIDATE, SELECTED, DISCARDED, VOID = 0, 1, 2, 3
_STATE_REASON = {
    CANDIDATE: "duplicate id: already a candidate",
    SELECTED: "duplicate id: already selected",
    DISCARDED: "duplicate id: discarded earlier as not novel enough",
}
_MAX_SERIAL = np.iinfo(np.int32).max - 1
_EMPTY = -1  # no entry is -1: a serial's 32 bits are never all ones
_SERIAL = 0xFFFFFFFF
# Linear probing needs about 3.6 probes per insert at 0.6 load, 1.4 at 0.15. Growing 4x at a
# time re-places about a third as many ids over a table's life as doubling does, for at most
# twice the memory of doubling (8 bytes per slot).
_MAX_LOAD = 0.6
_GROWTH = 4
_REBUILD_CHUNK = 1 << 20
_STRAGGLERS = 32  # below this many pending items, probe in a plain loop
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = 0x9E3779B97F4A7C15


def _fmix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection that spreads every input bit over the output."""
    z = z ^ (z >> 30)
    z *= _MIX1
    z ^= z >> 27
    z *= _MIX2
    z ^= z >> 31
    return z


def fingerprint(ids: np.ndarray) -> np.ndarray:
    """64-bit hash of each byte string, independent of the array's itemsize."""
    m, width = len(ids), ids.dtype.itemsize
    padded = -(-width // 8) * 8
    raw = np.ascontiguousarray(ids).view(np.uint8).reshape(m, width)
    if padded != width:
        buf = np.zeros((m, padded), dtype=np.uint8)
        buf[:, :width] = raw
        raw = buf
    words = raw.view(np.uint64)
    # Odd multipliers make any change to one word change the sum; one mix at the end then
    # spreads it over all bits. Equal fingerprints are only a hint: the bytes are compared.
    h = np.zeros(m, dtype=np.uint64)
    for j in range(words.shape[1]):
        h += words[:, j] * np.uint64((_GOLDEN * (2 * j + 1)) % 2**64)
    return _fmix(h)


def as_id_array(ids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids as a 1-D UTF-8 byte-string array, and a mask of usable (non-empty string) ids."""
    arr = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
    if arr.ndim != 1:
        raise SelectorError(f"ids must be a flat sequence, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype="S1"), np.zeros(0, dtype=bool)
    if arr.dtype.kind == "U":
        codes = np.ascontiguousarray(arr).view(np.uint32).reshape(len(arr), -1)
        if int(codes.max()) < 128:  # ASCII: narrow the code units instead of encoding each id
            out = codes.astype(np.uint8).view(f"S{codes.shape[1]}").reshape(len(arr))
        else:
            out = np.array([s.encode() for s in arr.tolist()], dtype="S")
        return out, out != b""
    if arr.dtype.kind == "S":
        return arr, arr != b""
    items = arr.tolist()
    usable = np.array([isinstance(s, str) and s != "" for s in items], dtype=bool)
    out = np.array([s.encode() if isinstance(s, str) else b"" for s in items], dtype="S")
    return out, usable


class IdBook:
    """Ids stored once as bytes and referred to everywhere else by an int32 serial.

    The duplicate check is an open-addressing (linear probing) table, probed for a whole batch
    at a time. Each entry packs the high half of the id's fingerprint over its serial, so a
    probe rejects most strangers without touching the fingerprint column; a full fingerprint
    match is confirmed by comparing the bytes, so the check is exact. Ids are never forgotten:
    a discarded id stays known and is refused if it comes back.
    """

    def __init__(self) -> None:
        self._cols = Columns({"id": ("S1", ()), "fp": (np.uint64, ()), "state": (np.uint8, ())})
        self._table = np.full(1024, _EMPTY, dtype=np.int64)
        self._live = 0  # ids in the table: every row that is not VOID

    def __len__(self) -> int:
        return self._cols.n

    @property
    def states(self) -> np.ndarray:
        return self._cols["state"]

    def insert(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Give each id a serial; return ``(serials, match)``.

        ``match`` is -1 for a new id, else the serial of the equal id already known (possibly
        earlier in this batch); such rows are kept as VOID so serials stay positional.
        """
        m, base = len(ids), self._cols.n
        if base + m > _MAX_SERIAL:
            raise SelectorError(f"a selector holds at most {_MAX_SERIAL} ids")
        if self._live + m > _MAX_LOAD * len(self._table):
            self._rebuild(self._live + m)
        if ids.dtype.itemsize > self._cols["id"].dtype.itemsize:
            self._cols.retype("id", ids.dtype)
        h = fingerprint(ids)
        self._cols.append(id=ids, fp=h, state=np.full(m, CANDIDATE, dtype=np.uint8))
        serials = np.arange(base, base + m, dtype=np.int32)
        match = self._place(h, _entries(h, serials), ids)
        dup = np.flatnonzero(match >= 0)
        self._cols["state"][base + dup] = VOID
        self._live += m - len(dup)
        return serials, match

    def reason(self, match: int, batch_start: int) -> str:
        """Why an id equal to serial ``match`` was refused."""
        if match >= batch_start:
            return "duplicate id: repeated within this batch"
        return _STATE_REASON[int(self.states[match])]

    def mark(self, serials: np.ndarray | int, state: int) -> None:
        self._cols["state"][serials] = state

    def decode(self, serials: np.ndarray) -> list[str]:
        return [b.decode() for b in self._cols["id"][serials].tolist()]

    def state(self) -> dict[str, np.ndarray]:
        return {"book_id": self._cols["id"], "book_state": self._cols["state"]}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        ids, states = arrays["book_id"], arrays["book_state"]
        if ids.ndim != 1 or ids.dtype.kind != "S" or ids.shape != states.shape:
            raise SelectorError("ids and their states do not match")
        if len(ids) and int(states.max()) > VOID:
            raise SelectorError("unknown id state")
        self._cols.restore({"id": ids, "fp": fingerprint(ids), "state": states}, "")
        self._rebuild(int(np.count_nonzero(states != VOID)))

    def _rebuild(self, need: int) -> None:
        """A new table with room for ``need`` ids, holding every live id."""
        size = len(self._table)
        while need > _MAX_LOAD * size:
            size *= _GROWTH
        self._table = np.full(size, _EMPTY, dtype=np.int64)
        self._live = 0
        for start in range(0, len(self), _REBUILD_CHUNK):  # bounds the temporaries
            live = start + np.flatnonzero(self.states[start : start + _REBUILD_CHUNK] != VOID)
            h = self._cols["fp"][live]
            self._place(h, _entries(h, live), None)
            self._live += len(live)

    def _place(self, h: np.ndarray, entries: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
        """Probe until each entry owns a slot or meets an equal id; return the matches.

        ``ids=None`` means the ids are known to be distinct (rebuild), so nothing matches.
        Filtering uses index arrays, not boolean masks: with masks as irregular as these,
        numpy's boolean indexing is several times slower than flatnonzero plus take.
        """
        table, mask = self._table, len(self._table) - 1
        match = np.full(len(entries), -1, dtype=np.int32)
        pend = np.arange(len(entries))
        slot = (h & np.uint64(mask)).astype(np.intp)
        mine, tags = entries, entries >> 32
        while pend.size:
            if pend.size <= _STRAGGLERS:
                self._place_each(h, pend, slot, mine, ids, match)
                break
            cur = table[slot]
            empty = np.flatnonzero(cur == _EMPTY)
            if empty.size:
                claimed = slot[empty]
                # Several may claim one slot: written in reverse, the first claimant lands
                # last; whoever won, reading back decides, so the table stays consistent.
                table[claimed[::-1]] = mine[empty[::-1]]
                cur[empty] = table[claimed]
            rest = np.flatnonzero(cur != mine)  # slots someone else holds
            if ids is not None and rest.size:
                same = np.flatnonzero((cur[rest] >> 32) == tags[pend[rest]])
                if same.size:  # the same fingerprint half: check the rest, then the bytes
                    at = rest[same]
                    equal = same[self._same_id(cur[at] & _SERIAL, h[pend[at]], ids[pend[at]])]
                    match[pend[rest[equal]]] = cur[rest[equal]] & _SERIAL
                    rest = np.delete(rest, equal)
            pend, slot, mine = pend[rest], (slot[rest] + 1) & mask, mine[rest]
        return match

    def _same_id(self, serials: np.ndarray, h: np.ndarray, ids: np.ndarray) -> np.ndarray:
        same: np.ndarray = (self._cols["fp"][serials] == h) & (self._cols["id"][serials] == ids)
        return same

    def _place_each(self, h: np.ndarray, pend: np.ndarray, slot: np.ndarray, mine: np.ndarray,
                    ids: np.ndarray | None, match: np.ndarray) -> None:
        """The last few items, one at a time: a long probe run would otherwise cost one
        vectorised round (a dozen numpy calls) per slot."""
        table, mask = self._table, len(self._table) - 1
        for i, s, me in zip(pend.tolist(), slot.tolist(), mine.tolist(), strict=True):
            while (cur := int(table[s])) != _EMPTY:
                if ids is not None and cur >> 32 == me >> 32:
                    serial = np.array([cur & _SERIAL])
                    if self._same_id(serial, h[i : i + 1], ids[i : i + 1])[0]:
                        match[i] = cur & _SERIAL
                        break
                s = (s + 1) & mask
            else:
                table[s] = me


def _entries(h: np.ndarray, serials: np.ndarray) -> np.ndarray:
    """Table entries: the fingerprint's high 32 bits over the serial's 32."""
    return ((h >> 32).astype(np.int64) << 32) | serials.astype(np.int64)
