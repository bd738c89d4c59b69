"""The record format: what encode writes, decode reads back; anything else is a RecordError."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.runtime.records import MAGIC, Record, RecordError, decode, encode


def test_round_trip_keeps_values_tag_sim_and_meta():
    values = np.array([0.5, -1.25, 3e6, 0.0], dtype=np.float64)
    record = Record(values, tag="ras-raf", sim="cg_0001", meta={"model": 3, "n": [1, 2]})
    back = decode(encode(record), dim=4)
    assert back.values.dtype == np.float32
    np.testing.assert_array_equal(back.values, values.astype(np.float32))
    assert (back.tag, back.sim, back.meta) == ("ras-raf", "cg_0001", {"model": 3, "n": [1, 2]})


def test_round_trip_of_bare_record_and_of_a_multidimensional_array():
    back = decode(encode(Record(np.arange(6.0).reshape(2, 3))))
    np.testing.assert_array_equal(back.values, np.arange(6, dtype=np.float32))
    assert (back.tag, back.sim, back.meta) == (None, None, {})


def test_encoding_is_deterministic():
    a = Record(np.ones(3), meta={"b": 1, "a": 2})
    b = Record(np.ones(3), meta={"a": 2, "b": 1})
    assert encode(a) == encode(b)
    assert encode(a).startswith(MAGIC)


def test_dim_mismatch_is_refused():
    data = encode(Record(np.zeros(5)))
    with pytest.raises(RecordError, match=r"5 values.*dim 8"):
        decode(data, dim=8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad: float):
    with pytest.raises(RecordError, match="NaN or infinity"):
        decode(encode(Record(np.array([1.0, bad]))))


def _with_header(header: object, body: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<4sI", MAGIC, len(text)) + text + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"MRC", "too short"),
        (b"PNG\x00\x00\x00\x00\x00rest", "not a record"),
        (b"\x00" * 64, "not a record"),
        (struct.pack("<4sI", MAGIC, 10) + b"{not json}", "unreadable record header"),
        (_with_header({"tag": None}), "unreadable record header"),
        (_with_header({"n": "many"}), "unreadable record header"),
        (_with_header({"n": 2}, b"\x00" * 4), "says 2 values but holds 4 bytes"),
        (_with_header({"n": 1, "tag": 7}, b"\x00" * 4), "wrong type"),
        (_with_header({"n": 1, "meta": [1]}, b"\x00" * 4), "wrong type"),
    ],
    ids=["empty", "short", "other-magic", "zeros", "bad-json", "no-n", "n-not-int",
         "short-body", "tag-not-str", "meta-not-dict"],
)
def test_garbage_is_a_record_error(data: bytes, message: str):
    with pytest.raises(RecordError, match=message):
        decode(data)


@pytest.mark.parametrize("cut", [1, 7, 9, 20])
def test_truncated_record_is_a_record_error(cut: int):
    data = encode(Record(np.arange(4.0), tag="t", meta={"k": "v"}))
    with pytest.raises(RecordError):
        decode(data[:-cut])


def test_decode_each_sorts_records_store_errors_and_bad_items() -> None:
    from mummi_spec.errors import StoreError
    from mummi_spec.runtime.records import decode_each

    gone = StoreError("cannot read b")
    good = encode(Record(np.array([1.0, 2.0]), sim="s"))
    records, unread, bad = decode_each(["a", "b", "c"], [good, gone, b"junk"], 2)
    assert [(k, r.sim) for k, r in records] == [("a", "s")]
    assert unread == [("b", gone)]
    assert [k for k, _ in bad] == ["c"] and "too short" in bad[0][1]


def test_a_header_length_past_the_end_is_refused() -> None:
    # Read as far as the item goes, '{"n":0}' would pass for an empty record.
    with pytest.raises(RecordError, match="1000 bytes long, past the end of the 15-byte item"):
        decode(MAGIC + struct.pack("<I", 1000) + b'{"n":0}')


def test_the_documented_example_is_what_encode_writes() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "record-format.md").read_text()
    block = doc.split("```\n4d 52 43 31")[1].split("```")[0].splitlines()
    data = encode(Record(np.array([1.0, -2.5]), tag="a", meta={"step": 10}))
    assert data[:8] == bytes.fromhex("4d 52 43 31" + block[0].split("MRC1")[0])
    assert data[8:-8] == block[1].split()[0].encode()
    assert data[-8:] == bytes.fromhex(block[2].split("1.0")[0])
