"""The item format applications and the manager exchange: a JSON header and a float32 array."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mummi_spec.errors import StoreError

MAGIC = b"MRC1"
_HEAD = struct.Struct("<4sI")  # magic, header length


class RecordError(ValueError):
    """An item that is not a record (raised per item; the caller logs and skips it)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One candidate (``values`` is its encoding) or one feedback item (``values`` its array).

    ``tag`` routes a candidate to a selector queue; ``sim`` names the simulation that wrote a
    frame or a feedback item; ``meta`` carries whatever else the application wants to keep.
    """

    values: np.ndarray
    tag: str | None = None
    sim: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def encode(record: Record) -> bytes:
    """Bytes of ``record``: ``MRC1``, header length, JSON header, little-endian float32 values."""
    values = np.ascontiguousarray(record.values, dtype="<f4").ravel()
    header = json.dumps({"n": int(values.size), "tag": record.tag, "sim": record.sim,
                         "meta": record.meta}, sort_keys=True, separators=(",", ":")).encode()
    return _HEAD.pack(MAGIC, len(header)) + header + values.tobytes()


def decode(data: bytes, dim: int | None = None) -> Record:
    """Parse what ``encode`` wrote; ``RecordError`` names what is wrong (never a bare crash)."""
    if len(data) < _HEAD.size:
        raise RecordError(f"too short to be a record ({len(data)} bytes)")
    magic, hlen = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise RecordError(f"not a record (starts with {bytes(data[:4])!r}, expected {MAGIC!r})")
    if _HEAD.size + hlen > len(data):  # else the header would swallow the values
        raise RecordError(f"unreadable record header: {hlen} bytes long, past the end of the "
                          f"{len(data)}-byte item")
    try:
        header = json.loads(bytes(data[_HEAD.size:_HEAD.size + hlen]))
        n = int(header["n"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"unreadable record header: {exc}") from None
    body = data[_HEAD.size + hlen:]
    if len(body) != 4 * n:
        raise RecordError(f"record says {n} values but holds {len(body)} bytes")
    values = np.frombuffer(body, dtype="<f4")
    if dim is not None and n != dim:
        raise RecordError(f"has {n} values, the stream declares dim {dim}")
    if not np.isfinite(values).all():
        raise RecordError("values contain NaN or infinity")
    tag, sim = header.get("tag"), header.get("sim")
    meta = header.get("meta") or {}
    if not isinstance(meta, dict) or not all(v is None or isinstance(v, str) for v in (tag, sim)):
        raise RecordError("record header has a tag, sim or meta of the wrong type")
    return Record(values, tag, sim, meta)


def decode_each(keys: Sequence[str], blobs: Sequence[bytes | StoreError], dim: int
                ) -> tuple[list[tuple[str, Record]], list[tuple[str, StoreError]],
                           list[tuple[str, str]]]:
    """Sort what ``read_each`` returned for ``keys``: the records, the items the store could not
    read (they may read next time), and the items that are no record, with the reason (they
    never will)."""
    records: list[tuple[str, Record]] = []
    unread: list[tuple[str, StoreError]] = []
    bad: list[tuple[str, str]] = []
    for key, blob in zip(keys, blobs, strict=True):
        if isinstance(blob, StoreError):
            unread.append((key, blob))
            continue
        try:
            records.append((key, decode(blob, dim)))
        except RecordError as exc:
            bad.append((key, str(exc)))
    return records, unread, bad
