"""A disk filling up mid-write: a clear StoreError; the archive keeps every earlier item intact."""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytaridx
import pytest

from mummi_spec.errors import MummiError, StoreError
from mummi_spec.runtime.stores import tararchive
from mummi_spec.runtime.stores.filesystem import FilesystemStore
from mummi_spec.runtime.stores.taridx import TaridxStore
from tests import plans
from tests.conftest import mounted

NS = "frames"
FILLER = 48 << 10  # freed after the failure, as an operator would free space
ITEM = 5000  # not a multiple of 512: every member has padding


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real file system that runs out of space (ENOSPC)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=256k", "tmpfs", at=disk):
        (disk / "filler").write_bytes(b"\0" * FILLER)
        yield disk


def value(i: int) -> bytes:
    return bytes([i % 251]) * ITEM


def fill(store: TaridxStore | FilesystemStore) -> tuple[dict[str, bytes], StoreError]:
    """Put items until the disk is full; what was written, and the error that stopped it."""
    written: dict[str, bytes] = {}
    for i in range(1000):
        try:
            store.put(NS, f"f{i:04d}", value(i))
        except StoreError as exc:
            return written, exc
        written[f"f{i:04d}"] = value(i)
    pytest.fail("the disk never filled up")


def assert_archive_holds(tar: Path, written: dict[str, bytes]) -> None:
    """Plain tarfile and plain pytaridx both read exactly ``written``: no half entry."""
    with tarfile.open(tar) as tf:
        members = {m.name: tf.extractfile(m).read() for m in tf}  # type: ignore[union-attr]
    assert members == written
    itf = pytaridx.IndexedTarFile()
    itf.open(str(tar), "r")
    try:
        assert {k: bytes(itf.read(k)) for k in written} == written
    finally:
        itf.index.lstfile.close()  # IndexedTarFile.close() leaves these open
        itf.index.tree.backing.filehandle.close()
        itf.close()


def test_taridx_on_a_full_disk_fails_clearly_and_keeps_every_earlier_item(
        small_disk: Path) -> None:
    store = TaridxStore(plans.store("taridx", path="arch"), small_disk)
    tar = small_disk / "arch" / f"{NS}.tar"
    written, err = fill(store)
    assert isinstance(err, MummiError) and written
    assert str(err).startswith(f"taridx store 'data' namespace '{NS}': cannot write key ")
    assert str(tar) in str(err) and "No space left on device" in str(err)
    # Cut back to the last whole member, even before any space is freed.
    lines = (small_disk / "arch" / f"{NS}.tar.pylst").read_bytes().splitlines()
    assert len(lines) == len(written)
    assert tar.stat().st_size == sum(512 + ITEM + (-ITEM % 512) for _ in written)
    assert store.get_many(NS, list(written)) == list(written.values())
    store.close()
    (small_disk / "filler").unlink()
    # A new process sees every earlier item, and writes on.
    store = TaridxStore(plans.store("taridx", path="arch"), small_disk)
    assert store.keys(NS) == sorted(written)
    store.put(NS, "after", b"space again")
    store.close()
    assert_archive_holds(tar, {**written, "after": b"space again"})


def test_filesystem_on_a_full_disk_fails_clearly_and_leaves_no_partial_file(
        small_disk: Path) -> None:
    store = FilesystemStore(plans.store("filesystem", path="files"), small_disk)
    written, err = fill(store)
    assert isinstance(err, MummiError) and written
    assert str(err).startswith("filesystem store 'data': cannot write key ")
    assert "No space left on device" in str(err) and str(small_disk / "files" / NS) in str(err)
    folder = small_disk / "files" / NS
    assert sorted(os.listdir(folder)) == sorted(written)  # no temporary file left behind
    assert store.get_many(NS, list(written)) == list(written.values())
    (small_disk / "filler").unlink()
    store.put(NS, "after", b"space again")
    assert store.get(NS, "after") == b"space again"


@pytest.mark.parametrize("step", ["data", "index line", "index tree"])
def test_a_taridx_write_failing_at_any_step_leaves_a_readable_archive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Each step of a member's write failing as on a full disk (an injected ENOSPC: a real
    tmpfs fills during the data, nearly always), then the next write on a freed disk."""
    store = TaridxStore(plans.store("taridx"), tmp_path)
    store.put(NS, "before", b"kept")
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    writes = [0]
    real_write_all = tararchive.write_all

    def write_all(fd: int, *buffers: bytes) -> None:
        writes[0] += 1
        if (step, writes[0]) in (("data", 1), ("index line", 2)):
            real_write_all(fd, *(b[: len(b) // 2] for b in buffers))  # part of it got out
            raise full
        real_write_all(fd, *buffers)

    monkeypatch.setattr(tararchive, "write_all", write_all)
    if step == "index tree":
        tree = store._archive(NS, fresh=False)._writable().index.tree
        monkeypatch.setattr(tree, "insert", lambda *a: (_ for _ in ()).throw(full))
    with pytest.raises(StoreError) as err:
        store.put(NS, "lost", b"x" * 3000)
    monkeypatch.undo()
    stored = step == "index tree"  # the .pylst line was whole: the item is committed
    assert ("is stored, but the index tree" in str(err.value)) == stored
    assert "No space left on device" in str(err.value)
    assert store.keys(NS) == (["before", "lost"] if stored else ["before"])
    store.put(NS, "after", b"fine")
    store.close()
    expected = {"before": b"kept", **({"lost": b"x" * 3000} if stored else {}), "after": b"fine"}
    assert_archive_holds(tmp_path / "data" / f"{NS}.tar", expected)
