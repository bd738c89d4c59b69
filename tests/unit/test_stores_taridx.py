"""The taridx store's own promises: correct bytes in a plain GNU tar, one writer, live readers."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import tarfile
import textwrap
import warnings
from pathlib import Path

import pytaridx
import pytest

from mummi_spec.errors import StoreError
from mummi_spec.runtime.stores.taridx import TaridxStore
from tests import plans

CONFIG = plans.store("taridx", "archives")


@pytest.fixture
def store(tmp_path: Path):
    opened = TaridxStore(CONFIG, tmp_path)
    yield opened
    opened.close()


def _members(seed: int, count: int) -> dict[str, bytes]:
    """Names of 1-160 characters (most over the 100 that fit a plain header), odd sizes."""
    rng = random.Random(seed)
    items = {}
    for i in range(count):
        length = rng.choice([rng.randrange(8, 100), rng.randrange(101, 161), 160, 150])
        name = f"m{i:04d}_" + "".join(rng.choice("abcxyz0189_-=+") for _ in range(length))
        size = rng.choice([0, 1, 511, 512, 513, 1024, rng.randrange(0, 300_000)])
        items[name[:length]] = rng.randbytes(size)
    return items


def _helper(tmp_path: Path, body: str) -> subprocess.Popen[str]:
    """A Python child process with a TaridxStore ``store`` on the same workspace."""
    script = textwrap.dedent(
        f"""
        import hashlib, sys
        from pathlib import Path
        from mummi_spec.errors import StoreError
        from mummi_spec.plan import StorePlan
        from mummi_spec.runtime.stores.taridx import TaridxStore
        store = TaridxStore({CONFIG!r}, Path({str(tmp_path)!r}))
        """
    ) + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def test_members_round_trip_through_store_pytaridx_and_tarfile(
    store: TaridxStore, tmp_path: Path
) -> None:
    items = _members(seed=5, count=200)
    assert sum(len(n) > 100 for n in items) > 50
    store.put_many("frames", items)
    archive = tmp_path / "archives" / "frames.tar"

    assert store.get_many("frames", list(items)) == list(items.values())
    store.close()
    reopened = TaridxStore(CONFIG, tmp_path)
    assert reopened.keys("frames") == sorted(items)
    assert reopened.get_many("frames", list(items)) == list(items.values())
    reopened.close()

    # Plain pytaridx reads the same bytes through its own B-tree index.
    plain = pytaridx.IndexedTarFile()
    plain.open(str(archive), "r")
    try:
        assert all(plain.read(name) == data for name, data in items.items())
    finally:
        plain.index.lstfile.close()
        plain.index.tree.backing.filehandle.close()
        plain.close()

    # The archive is a valid GNU tar without PAX headers, which pytaridx cannot index.
    # The store writes in the archive's own format, so this fails if GNU is not forced.
    seen = {}
    with tarfile.open(archive, "r:") as tar:
        for member in tar:
            assert member.pax_headers == {}, member.name
            seen[member.name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    assert seen == items
    raw = archive.read_bytes()
    assert b"ustar  \x00" in raw[:512] and b"ustar\x0000" not in raw


def test_names_must_be_ascii_and_at_most_160(store: TaridxStore) -> None:
    store.put("ns", "x" * 160, b"fits")
    for bad in ("x" * 161, "caf\u00e9", "a,b"):
        with pytest.raises(StoreError, match="taridx names must be ASCII, at most 160"):
            store.put("ns", bad, b"v")
        with pytest.raises(StoreError, match="unsafe namespace"):
            store.put(bad, "k", b"v")
    assert store.keys("ns") == ["x" * 160]


def test_second_writer_is_refused_with_the_holder_named(store: TaridxStore, tmp_path: Path) -> None:
    store.put("shared", "first", b"1")  # this store now holds the writer lock
    child = _helper(tmp_path, """
        try:
            store.put("shared", "second", b"2")
        except StoreError as exc:
            print("refused:", exc)
        print("reads:", store.get("shared", "first"))
        store.close()
    """)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert "refused: taridx store 'archives' namespace 'shared'" in out
    assert f"is being written by pid {os.getpid()} on " in out
    assert "reads: b'1'" in out  # readers need no lock

    second = TaridxStore(CONFIG, tmp_path)  # another handle in this process: refused too
    with pytest.raises(StoreError, match="one writer at a time"):
        second.put("shared", "second", b"2")
    assert second.get("shared", "first") == b"1"
    store.put("shared", "third", b"3")  # the archive is intact and still ours
    store.close()
    second.put("shared", "second", b"2")  # the lock went with close()
    assert second.get_many("shared", ["first", "second", "third"]) == [b"1", b"2", b"3"]
    second.close()


def test_reader_in_another_process_sees_each_committed_put(
    store: TaridxStore, tmp_path: Path
) -> None:
    reader = _helper(tmp_path, """
        for line in sys.stdin:
            key = line.strip()
            try:
                print(hashlib.sha256(store.get("live", key)).hexdigest(), flush=True)
            except StoreError:
                print("missing", flush=True)
    """)
    assert reader.stdin is not None and reader.stdout is not None

    def ask(key: str) -> str:
        reader.stdin.write(key + "\n")  # type: ignore[union-attr]
        reader.stdin.flush()  # type: ignore[union-attr]
        return reader.stdout.readline().strip()  # type: ignore[union-attr]

    try:
        rng = random.Random(9)
        assert ask("a") == "missing"
        for i in range(5):
            data = rng.randbytes(100_000 + i)
            store.put("live", f"k{i}", data)
            assert ask(f"k{i}") == hashlib.sha256(data).hexdigest()
        store.move("live", ["k0"], "consumed")
        assert ask("k0") == "missing"  # the reader, open all along, sees the tombstone
        store.put("live", "k0", b"again")
        assert ask("k0") == hashlib.sha256(b"again").hexdigest()
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
        reader.stdout.close()
        assert reader.stderr is not None
        reader.stderr.close()


def test_consumer_needs_no_writer_lock_and_never_hides_newer_versions(
    store: TaridxStore, tmp_path: Path
) -> None:
    store.put("fb", "rdf_1.npz", b"v1")  # the worker holds the fb writer lock
    consumer = TaridxStore(CONFIG, tmp_path)
    try:
        assert consumer.get("fb", "rdf_1.npz") == b"v1"
        store.put("fb", "rdf_1.npz", b"v2")  # written after the consumer looked ...
        consumer.move("fb", ["rdf_1.npz"], "processed")
        # ... but the consumer moved what is live now, v2, and only that version is dead.
        assert consumer.get("processed", "rdf_1.npz") == b"v2"
        assert store.keys("fb") == []
        store.put("fb", "rdf_1.npz", b"v3")
        assert consumer.keys("fb") == ["rdf_1.npz"]
        assert consumer.get("fb", "rdf_1.npz") == b"v3"
    finally:
        consumer.close()
    lines = (tmp_path / "archives" / "fb.tar.consumed").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdf_1.npz,")


def test_reads_archives_written_by_plain_pytaridx(store: TaridxStore, tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    folder.mkdir()
    plain = pytaridx.IndexedTarFile()
    # Written before the store existed (as MuMMI's own tools do), in the GNU format.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # its reindex() leaks a handle
        plain.open(str(folder / "legacy.tar"), "r+")
    plain.tfa.format = tarfile.GNU_FORMAT
    items = {f"pos.{i:012d}": os.urandom(700 + i) for i in range(30)}
    for name, data in items.items():
        plain.write(name, data)
    plain.write("has,comma", b"escaped in .pylst")
    plain.index.lstfile.close()
    plain.index.tree.backing.filehandle.close()
    plain.close()
    assert store.keys("legacy") == sorted([*items, "has,comma"])
    assert store.get_many("legacy", list(items)) == list(items.values())
    store.put("legacy", "pos.000000000999", b"appended by the store")
    assert store.get("legacy", "pos.000000000000") == items["pos.000000000000"]
