"""examples/c: the C reader and writer of one item agree with runtime/records.py both ways."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.plan import StorePlan
from mummi_spec.runtime.records import Record, RecordError, decode, encode
from mummi_spec.runtime.stores.filesystem import FilesystemStore

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "c"


def compile_tool(out: Path) -> Path:
    """examples/c/mrc1tool, built with the system compiler, warnings as errors."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler: `cc` is not on PATH")
    tool = out / "mrc1tool"
    subprocess.run([cc, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-o",
                    str(tool), str(EXAMPLE / "mrc1tool.c"), str(EXAMPLE / "mrc1.c"), "-lm"],
                   check=True, capture_output=True, text=True)
    return tool


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_tool(tmp_path_factory.mktemp("c"))


def run(tool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool), *args], capture_output=True, text=True, check=False,
                          timeout=60)


def test_c_writes_what_python_decodes(tool: Path, tmp_path: Path) -> None:
    values = ["0.1", "-2.5", "3e6", "1e-7"]
    proc = run(tool, "write", str(tmp_path), "pt_0001", "ras-raf", "-",
               '{"model": 3, "n": [1, 2]}', *values)
    assert proc.returncode == 0, proc.stderr
    record = decode((tmp_path / "pt_0001").read_bytes(), dim=4)
    np.testing.assert_array_equal(record.values, np.array(values, dtype=np.float32))
    assert (record.tag, record.sim, record.meta) == ("ras-raf", None, {"model": 3, "n": [1, 2]})
    # Renamed into place: the temporary is gone, and the store lists the item.
    assert [p.name for p in tmp_path.iterdir()] == ["pt_0001"]
    store = FilesystemStore(StorePlan(name="data", backend="filesystem", path="."), tmp_path.parent)
    assert store.keys(tmp_path.name) == ["pt_0001"]
    # A bare item: no tag, a sim, meta {}.
    assert run(tool, "write", str(tmp_path), "fb", "-", "c_0001", "-", "7").returncode == 0
    bare = decode((tmp_path / "fb").read_bytes())
    assert (bare.tag, bare.sim, bare.meta, bare.values.tolist()) == (None, "c_0001", {}, [7.0])


def test_python_encodes_what_c_reads(tool: Path, tmp_path: Path) -> None:
    values = np.array([0.1, -2.5, 3e6, 1e-7, 0.0], dtype=np.float32)
    # meta holds an "n" of its own: the reader must take the header's, not meta's.
    meta = {"n": 99, "note": 'has "quotes", {braces} and \\ backslash'}
    (tmp_path / "item").write_bytes(encode(Record(values, tag="a", sim="c_0002", meta=meta)))
    proc = run(tool, "read", str(tmp_path / "item"), "5")
    assert proc.returncode == 0, proc.stderr
    n, header, *rest = proc.stdout.splitlines()
    assert int(n) == 5
    assert json.loads(header) == {"n": 5, "tag": "a", "sim": "c_0002", "meta": meta}
    np.testing.assert_array_equal(np.array(rest, dtype=np.float32), values)


def item(header: bytes, body: bytes, magic: bytes = b"MRC1") -> bytes:
    return magic + struct.pack("<I", len(header)) + header + body


GOOD = item(b'{"n":2}', struct.pack("<2f", 1, 2))
MALFORMED = {
    "too short": (b"MRC1\x00", "too short to be a record"),
    "bad magic": (item(b'{"n":2}', struct.pack("<2f", 1, 2), b"MRC2"), "not a record"),
    "header past the end": (GOOD[:4] + struct.pack("<I", 99) + GOOD[8:],
                            "unreadable record header"),
    "no n": (item(b'{"meta":{"n":1}}', struct.pack("<f", 1)), "unreadable record header"),
    "n not a number": (item(b'{"n":"x"}', b""), "unreadable record header"),
    "body short": (GOOD[:-1], "record says"),
    "body long": (GOOD + b"\x00" * 4, "record says"),
    "NaN": (item(b'{"n":2}', struct.pack("<2f", 1, float("nan"))), "NaN or infinity"),
    "infinity": (item(b'{"n":2}', struct.pack("<2f", float("-inf"), 0)), "NaN or infinity"),
    "wrong dim": (item(b'{"n":3}', struct.pack("<3f", 1, 2, 3)), "the stream declares"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_both_readers_reject_a_malformed_item_for_the_same_reason(tool: Path, tmp_path: Path,
                                                                   case: str) -> None:
    data, reason = MALFORMED[case]
    (tmp_path / "bad").write_bytes(data)
    with pytest.raises(RecordError, match=reason):
        decode(data, dim=2)
    proc = run(tool, "read", str(tmp_path / "bad"), "2")
    assert proc.returncode == 2 and proc.stdout == ""
    assert reason in proc.stderr


def test_well_formed_control_item_is_read_by_both(tool: Path, tmp_path: Path) -> None:
    (tmp_path / "good").write_bytes(GOOD)
    assert decode(GOOD, dim=2).values.tolist() == [1.0, 2.0]
    assert run(tool, "read", str(tmp_path / "good"), "2").stdout.splitlines()[2:] == ["1", "2"]


@pytest.mark.parametrize(("key", "tag", "value"), [
    ("../x", "-", "1"), (".hidden", "-", "1"), ("a/b", "-", "1"),  # unsafe names
    ("k", 'say "hi"', "1"),  # a tag needing JSON escapes
    ("k", "-", "nan"), ("k", "-", "inf"), ("k", "-", "one"),  # not a finite number
])
def test_c_writer_refuses_what_the_manager_would_reject(tool: Path, tmp_path: Path, key: str,
                                                        tag: str, value: str) -> None:
    proc = run(tool, "write", str(tmp_path), key, tag, "-", "-", value)
    assert proc.returncode == 2 and proc.stderr.startswith("mrc1tool: ")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left
