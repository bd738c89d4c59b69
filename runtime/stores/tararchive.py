"""One pytaridx archive: reads from its append-only index, one locked writer, tombstones.

Files beside ``<name>.tar``: pytaridx's ``.pylst`` (``name,offset,size`` per member, last
write wins) and ``.pytree``; ours: ``.lock`` (flock held by the one writer, text says who)
and ``.consumed`` (``name,offset`` per consumed member version, fsync'd).

A tombstone kills one *version* of a name, identified by its data offset in the tar, which
only grows. So a name is live when its newest member's offset is above its newest
tombstone's: a ``put`` after a ``move`` (a larger offset) makes it live again, and a
consumer tombstoning what it read never hides a newer version a writer appended meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mummi_spec.errors import OptionalDependencyError, StoreError
from mummi_spec.runtime.stores.common import Buffer, write_all

try:
    import pytaridx
    from pytaridx.blocktree import BlockTree
except ImportError as exc:  # pragma: no cover - pytaridx is a declared dependency
    raise OptionalDependencyError("the taridx store", "pytaridx") from exc

log = logging.getLogger("mummi.store")

BLOCK = 512
_ZEROS = bytes(BLOCK)
_UNESCAPE = re.compile(rb"\\(.)", re.DOTALL)  # pytaridx escapes ',' and '\' in .pylst names


def index_line(line: bytes) -> tuple[str, int, int] | None:
    """``(name, offset, size)`` from one ``.pylst`` line, or None if the line is damaged
    (bytes appended by something else, a cut): readers skip it and read the rest."""
    try:
        name, offset, size = line.rsplit(b",", 2)
        entry = _UNESCAPE.sub(rb"\1", name).decode("ascii"), int(offset), int(size)
    except ValueError:  # too few fields, not ASCII, not numbers
        return None
    return entry if entry[0] and entry[1] >= 0 and entry[2] >= 0 else None


def tomb_line(line: bytes) -> tuple[str, int] | None:
    """``(name, offset)`` from one ``.consumed`` line, or None if the line is damaged."""
    try:
        name, _, offset = line.decode("ascii").rpartition(",")
        return (name, int(offset)) if name else None
    except ValueError:
        return None


class LogTail:
    """The complete lines appended to a file since the last look."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.inode = -1
        self.pos = 0

    def read(self) -> tuple[bool, list[bytes]]:
        """``(restart, lines)``; ``restart`` says the file was replaced: forget old lines."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            restart = self.fd >= 0
            self.close()
            return restart, []
        restart = False
        if st.st_ino != self.inode or st.st_size < self.pos:
            # pytaridx's reindex renames a fresh .pylst into place; start over from it.
            self.close()
            self.fd = os.open(self.path, os.O_RDONLY)
            self.inode, restart = os.fstat(self.fd).st_ino, True
        if st.st_size <= self.pos:
            return restart, []
        chunk = os.pread(self.fd, st.st_size - self.pos, self.pos)
        # A writer may be mid-line: take only what ends in a newline, the rest next time.
        end = chunk.rfind(b"\n") + 1
        self.pos += end
        return restart, chunk[:end].splitlines()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.inode, self.pos = -1, -1, 0


class TarArchive:
    """A namespace of the taridx store, kept open across calls."""

    def __init__(self, tar: Path, label: str) -> None:
        self.tar = tar
        self.label = label
        self.members: dict[str, tuple[int, int]] = {}  # name -> (data offset, size)
        self.dead: dict[str, int] = {}  # name -> data offset of its newest tombstone
        self._index = LogTail(f"{tar}.pylst")
        self._tombs = LogTail(f"{tar}.consumed")
        self._data_fd = -1
        self._writer: Any = None  # pytaridx.IndexedTarFile while we hold the lock
        self._lock_fd = -1
        self._pid = os.getpid()
        self._end = 0  # tar size, and .pylst size, up to the last committed member
        self._index_end = 0

    # -- reading ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Take in members and tombstones other processes added since the last call."""
        try:
            self._take_in()
        except OSError as exc:
            raise StoreError(f"{self.label}: cannot read the index of {self.tar} ({exc})") from exc

    def _take_in(self) -> None:
        restart, lines = self._index.read()
        if restart:
            self.members.clear()
            self._close_data()
        damaged = []
        for line in lines:
            entry = index_line(line)
            if entry is None:
                damaged.append(line)
            else:
                self.members[entry[0]] = entry[1:]
        self._warn(damaged, ".pylst", "the members they name cannot be read")
        restart, lines = self._tombs.read()
        if restart:
            self.dead.clear()
        damaged = []
        for line in lines:
            tomb = tomb_line(line)
            if tomb is None:
                damaged.append(line)
            else:
                self.dead[tomb[0]] = max(tomb[1], self.dead.get(tomb[0], -1))
        self._warn(damaged, ".consumed", "the members they consumed may be read again")

    def _warn(self, damaged: list[bytes], suffix: str, consequence: str) -> None:
        # The tail reads each line once, so each damaged line is reported once per process.
        if damaged:
            log.warning("%s: skipped %d damaged line(s) of %s%s, first %r; %s", self.label,
                        len(damaged), self.tar, suffix, damaged[0][:80], consequence)

    def entry(self, name: str) -> tuple[int, int] | None:
        """``(offset, size)`` of the live version of ``name``, or None."""
        found = self.members.get(name)
        if found is None or found[0] <= self.dead.get(name, -1):
            return None
        return found

    def live(self) -> list[str]:
        return [n for n in self.members if self.entry(n) is not None]

    def names_after(self, cursor: tuple[int, int] | None) -> tuple[list[str], tuple[int, int]]:
        """Names indexed since ``cursor`` (the ``.pylst``'s inode and a byte offset in it), in
        write order, and the new cursor. The index is append-only, so an offset is a
        durable place in it; a reindex replaces the file (a new inode): read it all again."""
        path = f"{self.tar}.pylst"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return [], (-1, 0)
        except OSError as exc:
            raise StoreError(f"{self.label}: cannot read the index of {self.tar} ({exc})") from exc
        try:
            st = os.fstat(fd)
            inode, pos = cursor or (st.st_ino, 0)
            if inode != st.st_ino or st.st_size < pos:
                pos = 0
            chunk = os.pread(fd, st.st_size - pos, pos)
        except OSError as exc:
            raise StoreError(f"{self.label}: cannot read the index of {self.tar} ({exc})") from exc
        finally:
            os.close(fd)
        end = chunk.rfind(b"\n") + 1  # a writer may be mid-line: the rest next time
        # Damaged lines are skipped here silently: refresh() reads them too, and warns.
        entries = (index_line(line) for line in chunk[:end].splitlines())
        return [e[0] for e in entries if e is not None], (st.st_ino, pos + end)

    def read(self, name: str, entry: tuple[int, int]) -> bytes:
        offset, size = entry
        try:
            if self._data_fd < 0:
                self._data_fd = os.open(self.tar, os.O_RDONLY)
            data = os.pread(self._data_fd, size, offset)
        except OSError as exc:
            raise StoreError(f"{self.label}: cannot read key {name!r} ({exc})") from exc
        if len(data) != size:
            raise StoreError(
                f"{self.label}: key {name!r} is cut short in {self.tar} "
                f"({len(data)} of {size} bytes at offset {offset})"
            )
        return data

    # -- writing ------------------------------------------------------------------------

    def _writable(self) -> Any:
        if self._pid != os.getpid():
            raise StoreError(f"{self.label}: store opened before a fork; open one per process")
        if self._writer is not None:
            return self._writer
        try:
            self.tar.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(f"{self.tar}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a full or read-only disk, among others
            raise StoreError(f"{self.label}: cannot open {self.tar} for writing ({exc})") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(lock_fd, 200, 0).decode("ascii", "replace").strip()
            os.close(lock_fd)
            raise StoreError(
                f"{self.label}: {self.tar} is being written by {holder or 'another process'}; "
                "a pytaridx archive takes one writer at a time (concurrent writers corrupt it)"
            ) from exc
        itf = pytaridx.IndexedTarFile()
        try:
            # Who holds the lock, for the refusal above (a full disk may leave it blank).
            with contextlib.suppress(OSError):
                os.ftruncate(lock_fd, 0)
                os.pwrite(lock_fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            self._create_index()
            itf.open(str(self.tar), "r+")
        except Exception as exc:  # pytaridx raises bare Exception for every failure
            os.close(lock_fd)
            raise StoreError(f"{self.label}: cannot open {self.tar} for writing: {exc}") from exc
        # Python >= 3.8 defaults to PAX headers, longer than the 512 bytes pytaridx assumes.
        itf.tfa.format = tarfile.GNU_FORMAT
        self._writer, self._lock_fd = itf, lock_fd
        self._end = os.fstat(itf.tfr.fileno()).st_size
        self._index_end = os.fstat(itf.index.lstfile.fileno()).st_size
        return itf

    def _create_index(self) -> None:
        """Write the index tree of a new archive, or rebuild one a failed write removed from
        its ``.pylst`` (pytaridx's reindex() re-reads the whole tar and leaks a file handle).
        A tar with neither is left to pytaridx's open, which reindexes it."""
        tree, listing = f"{self.tar}.pytree", f"{self.tar}.pylst"
        if os.path.exists(tree):
            return
        if not os.path.exists(listing) and self.tar.exists() and self.tar.stat().st_size > 0:
            return
        BlockTree.BlockFile.writemasterblock(f"{tree}_")
        if os.path.exists(listing):
            built = BlockTree(f"{tree}_", "r+")
            try:
                with open(listing, "rb") as lines:
                    for line in lines:
                        if not line.endswith(b"\n"):
                            break  # a part-line nobody committed
                        entry = index_line(line[:-1])
                        if entry is not None:  # readers skip a damaged line too
                            built.insert(entry[0], entry[1:])
                built.backing.flushcache()
                built.flushtree()
            finally:
                built.backing.filehandle.close()
        os.replace(f"{tree}_", tree)
        with open(listing, "ab"):
            pass

    def _header(self, name: str, size: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = int(time.time())  # a float mtime alone forces a PAX header
        info.mode = 0o644
        info.uid, info.gid = os.getuid(), os.getgid()
        return info.tobuf(self._writer.tfa.format, "ascii", "strict")

    def write(self, items: Iterable[tuple[str, Buffer]]) -> None:
        """Append members, then index each (data before index, so readers never see a hole).

        Not ``IndexedTarFile.write``: it puts the data at end + 512, but a name over 100
        characters needs a GNU long-name header before the 512-byte one, and pytaridx would
        then index the wrong bytes. The offset here comes from the header we really wrote.

        A member is committed once its ``.pylst`` line is complete (readers only take whole
        lines). A failure before that (a full disk, most often) cuts the tar and the list
        back to the last committed member, so the archive holds no half-written entry.
        """
        itf = self._writable()
        tar_fd, index_fd = itf.tfr.fileno(), itf.index.lstfile.fileno()
        for name, data in items:
            size = memoryview(data).nbytes
            header = self._header(name, size)
            pad = -size % BLOCK
            offset = self._end + len(header)
            # pytaridx's own line format; our names never hold the ',' or '\' it escapes.
            line = f"{name},{offset},{size}\n".encode("ascii")
            try:
                write_all(tar_fd, header, data, _ZEROS[:pad])
                write_all(index_fd, line)
            except OSError as exc:
                self._roll_back(tar_fd, index_fd)
                raise StoreError(f"{self.label}: cannot write key {name!r} to {self.tar} "
                                 f"({exc.strerror or exc}); the archive keeps every item "
                                 "written before it") from exc
            self._end = offset + size + pad
            self._index_end += len(line)
            try:
                itf.index.tree.insert(name, (offset, size))
            except Exception as exc:  # OSError, or pytaridx's bare Exception
                self._drop_tree()
                raise StoreError(f"{self.label}: key {name!r} is stored, but the index tree "
                                 f"{self.tar}.pytree could not be updated ({exc}); it is "
                                 "rebuilt from the .pylst at the next write") from exc

    def _roll_back(self, tar_fd: int, index_fd: int) -> None:
        """Cut both files back to the last committed member (truncating needs no space)."""
        try:
            os.ftruncate(tar_fd, self._end)
            os.ftruncate(index_fd, self._index_end)
        finally:
            self._close_writer()  # reopen, and measure again, at the next write

    def _drop_tree(self) -> None:
        """A tree block write failed part-way: remove the tree (the writer still holds it
        open, so anything pytaridx flushes later lands nowhere); the next writer's open
        rebuilds it (``_create_index``)."""
        with contextlib.suppress(OSError):
            os.unlink(f"{self.tar}.pytree")
        with contextlib.suppress(Exception):
            self._close_writer()

    def sync(self) -> None:
        """Make written members durable (before tombstoning their source)."""
        if self._writer is not None:
            try:
                os.fsync(self._writer.tfr.fileno())
                os.fsync(self._writer.index.lstfile.fileno())
            except OSError as exc:
                raise StoreError(f"{self.label}: cannot make {self.tar} durable ({exc})") from exc

    def consume(self, entries: Iterable[tuple[str, int]]) -> None:
        """Tombstone these ``(name, offset)`` versions; durable when this returns."""
        lines = "".join(f"{name},{offset}\n" for name, offset in entries).encode("ascii")
        try:
            fd = os.open(f"{self.tar}.consumed", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # several consumers may append at once
                end = os.fstat(fd).st_size
                try:
                    write_all(fd, lines)
                    os.fsync(fd)
                except OSError:
                    # No part-line left for the next append to run into (a full disk).
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, end)
                    raise
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"{self.label}: cannot record consumed keys ({exc})") from exc

    # -- closing ------------------------------------------------------------------------

    def _close_data(self) -> None:
        if self._data_fd >= 0:
            os.close(self._data_fd)
            self._data_fd = -1

    def _close_writer(self) -> None:
        itf, self._writer = self._writer, None
        if itf is not None:
            # IndexedTarFile.close() leaves its index files open; close them ourselves.
            itf.index.lstfile.close()
            itf.index.tree.backing.filehandle.close()
            itf.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def close(self) -> None:
        self._close_writer()
        self._close_data()
        self._index.close()
        self._tombs.close()
