"""HDF5 files whose changes reach the disk atomically, one flush at a time.

The HDF5 library writes a flush as many separate writes; a process killed in the middle of them
leaves a file whose metadata is half old, half new, and often unreadable. Here h5py does its I/O
through :class:`JournaledFile`, which

* writes what lands past the last committed end of the file (new data, new metadata) directly:
  nothing committed refers to it yet; and so, directly, what lands in space that the committed
  state has freed (told by :meth:`JournaledFile.set_unreferenced` after each commit), so that a
  replaced array is written once, never copied into the journal;
* holds back overwrites of the committed part, and at each flush first writes them to a sidecar
  journal (``<file>.journal``) that ends with a checksum, then applies them, then invalidates the
  journal.

Opening the file replays a complete journal and discards an incomplete one, so the file always
holds the state of the last finished flush. For HDF5, which records its own end of file, a
truncation that ends a flush leaves the bytes past the new end in place (read as zeros) until the
file is closed: the next array then overwrites cached pages instead of growing the file anew.

This protects against the process being killed, not against the machine losing power (no
``fsync``, which would cost milliseconds per write).
"""

import errno
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from corelay.io._journal_record import (
    MAGIC,
    Operation,
    check_journal_slot,
    encode_journal,
    journal_path,
    journal_pieces,
    parse_journal,
    read_journal,
    replayable,
    warn_foreign,
)
from corelay.io._lock import FileLock, LockKind, acquire, open_regular

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = [
    "OWNER",
    "JournaledFile",
    "Operation",
    "check_journal_slot",
    "encode_journal",
    "journal_path",
    "journal_pieces",
    "replayable",
]

#: Who holds the lock of a journaled file, as lock errors name it.
OWNER = "an HDF5Storage or open_journaled"

JournaledMode = Literal["r", "r+", "w"]


class JournaledFile(io.RawIOBase):
    """A binary file for h5py's ``fileobj`` driver whose flushes are atomic.

    The file is opened without following a FIFO or device into a hang, and locked before
    anything on disk changes; a journal left beside it is replayed only if it is bound to this
    file (see :func:`open_journaled`).

    Args:
        path: The file.
        mode: ``'r'`` reads, ``'r+'`` reads and writes an existing file, ``'w'`` creates or
            empties the file.
        opened: The file, already opened and locked by the caller, and its lock.
        keep_tail: Whether a truncation that ends a flush leaves the bytes past the new end in
            the file (reading as zeros) until it is closed, or a kill: for a format that, like
            HDF5, records its own end and ignores what lies past it, this makes the next
            growth of the file cheaper.

    Raises:
        BlockingIOError: The file is open elsewhere in a way that excludes ``mode``; the message
            says whether in this process or another.
        OSError: The file or its journal is not a regular file.
    """

    def __init__(
        self,
        path: Path,
        mode: JournaledMode,
        *,
        opened: tuple[int, FileLock] | None = None,
        keep_tail: bool = False,
    ) -> None:
        super().__init__()
        self._keep_tail = keep_tail
        self.path = path
        self._writable = mode != "r"
        self._journal = journal_path(path)
        if opened is None:
            flags = {"r": os.O_RDONLY, "r+": os.O_RDWR, "w": os.O_RDWR | os.O_CREAT}[mode]
            fd = open_regular(path, flags)
            try:
                kind: LockKind = "read" if mode == "r" else "write" if mode == "r+" else "replace"
                lock = acquire(fd, path, kind, "hdf5", OWNER)
            except BaseException:
                os.close(fd)
                raise
            opened = fd, lock
        self._fd, self._lock = opened
        try:
            check_journal_slot(self._journal)
            if mode == "w":  # only now that the file is locked: a journal for the old content
                self._journal.unlink(missing_ok=True)  # must never be replayed onto the new one
                os.ftruncate(self._fd, 0)
        except BaseException:
            self._release()
            raise
        self._journal_fd: int | None = None
        self._journal_id = (0, 0)  # device and inode of the journal open at _journal_fd
        self._discarding = False
        # Byte ranges (start, end) of the committed part that the committed state does not
        # refer to (space HDF5 freed before the last commit), sorted: written directly.
        self._unreferenced: list[tuple[int, int]] = []
        # Byte ranges past the committed end that the file still holds, left there by a
        # truncation at a flush: they read as zeros until written (see flush).
        self._stale: list[tuple[int, int]] = []
        self._reset()

    def _release(self) -> None:
        os.close(self._fd)
        self._lock.release()

    def _reset(self) -> None:
        self._position = 0
        self._unreferenced = []
        self._stale = []
        # Operations on committed bytes, held back until the next flush; after a truncation
        # into committed bytes, every operation, so that their order is kept.
        self._pending: list[Operation] = []
        self._shrunk = False
        self._recover()
        self._committed = os.fstat(self._fd).st_size
        self._length = self._committed  # the file's length as h5py sees it
        for offset, data in self._pending:  # a reader's view of an unreplayed journal
            self._length = offset if data is None else max(self._length, offset + len(data))

    def _recover(self) -> bool:
        """Replays a complete journal bound to this file, and tells whether it did."""
        data = read_journal(self._journal)
        if data is None:
            return False
        journal = parse_journal(data)
        if journal is None:  # interrupted before it was complete: the file was not touched
            if self._writable:
                self._unlink_journal()
            return False
        if journal is False or not journal.binds(os.fstat(self._fd)):
            warn_foreign(self._journal)
            if self._writable:
                self._unlink_journal()
            return False
        if not self._writable:  # cannot replay; show the replayed state instead
            self._pending = journal.operations
            return False
        self._apply(journal.operations)
        self._unlink_journal()
        return True

    def _unlink_journal(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
        self._journal.unlink(missing_ok=True)  # never follows a link: removes the link itself

    def _own_journal(self) -> bool:
        """Whether the journal path still names the journal this file writes."""
        if self._journal_fd is None:
            return False
        try:
            there = os.lstat(self._journal)
        except FileNotFoundError:
            return False
        return (there.st_dev, there.st_ino) == self._journal_id

    def _open_journal(self) -> int:
        if self._journal_fd is not None:
            if self._own_journal():
                return self._journal_fd
            os.close(self._journal_fd)  # removed or replaced behind our back: start anew
            self._journal_fd = None
        try:
            fd = open_regular(
                self._journal, os.O_RDWR | os.O_CREAT | os.O_EXCL, follow=False, what="journal"
            )
        except FileExistsError:
            raise OSError(
                errno.EEXIST,
                f"{str(self._journal)!r} appeared while the file was open: refused; remove it",
            ) from None
        self._journal_fd = fd
        status = os.fstat(fd)
        self._journal_id = status.st_dev, status.st_ino  # an open file's never changes
        return fd

    def rename(self, path: Path) -> None:
        """Records that the file was moved to ``path`` (its journal goes beside it)."""
        if self._journal_fd is not None:
            self._unlink_journal()
        self.path = path
        self._journal = journal_path(path)

    def discard(self) -> None:
        """Drops every write since the last flush, and every write until :meth:`restore`.

        For closing an HDF5 file whose cache may hold a failed write: whatever it flushes on
        close is thrown away, and the file keeps its last committed state.
        """
        self._discarding = True
        self._pending = []

    def set_unreferenced(self, ranges: list[tuple[int, int]]) -> None:
        """Records byte ranges that the committed state does not refer to, until the next flush.

        Writes into them go to the file directly, not through the journal: a kill before the
        next commit leaves bytes there that nothing reads. Only the owner of the file format can
        know them (HDF5's free space, asked right after a flush, before anything else changes).

        Args:
            ranges: ``(offset, length)`` pairs.
        """
        if self._pending or self._shrunk:  # not the committed state any more
            return
        self._unreferenced = sorted(
            (offset, min(offset + length, self._committed))
            for offset, length in ranges
            if length > 0 and offset < self._committed
        )

    def restore(self) -> None:
        """Returns to the last committed state after :meth:`discard`, ready to be reopened."""
        self._discarding = False
        self._unreferenced = []
        self._stale = []
        self._position = 0
        self._pending = []
        self._shrunk = False
        replayed = self._recover()  # a flush that failed after its journal was complete
        if self._writable and not replayed and os.fstat(self._fd).st_size > self._committed:
            # Past the committed end lie only bytes of the failed write: give the space back.
            os.ftruncate(self._fd, self._committed)
        self._committed = self._length = os.fstat(self._fd).st_size

    def _apply(self, operations: list[Operation]) -> None:
        for offset, data in operations:
            if data is None:
                os.ftruncate(self._fd, offset)
            else:
                self._write_at(data, offset)

    def _write_at(self, data: "ReadableBuffer", offset: int) -> None:
        view = memoryview(data).cast("B")
        if self._stale:
            self._unstale(offset, offset + len(view))
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def _unstale(self, start: int, end: int) -> None:
        kept: list[tuple[int, int]] = []
        for low, high in self._stale:
            if high <= start or low >= end:
                kept.append((low, high))
                continue
            if low < start:
                kept.append((low, start))
            if high > end:
                kept.append((end, high))
        self._stale = kept

    def readable(self) -> bool:  # noqa: D102
        return True

    def writable(self) -> bool:  # noqa: D102
        return self._writable

    def seekable(self) -> bool:  # noqa: D102
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:  # noqa: D102
        if whence == os.SEEK_SET:
            self._position = offset
        elif whence == os.SEEK_CUR:
            self._position += offset
        else:
            self._position = self._length + offset
        return self._position

    def tell(self) -> int:  # noqa: D102
        return self._position

    def readinto(self, buffer: "WriteableBuffer") -> int:  # noqa: D102
        view = memoryview(buffer).cast("B")
        start = self._position
        total = max(min(len(view), self._length - start), 0)
        done = 0
        while done < total:
            count = os.preadv(self._fd, [view[done:total]], start + done)
            if count == 0:
                break
            done += count
        view[done:] = bytes(len(view) - done)  # past the end reads as zeros, as in HDF5
        for low, high in self._stale:  # so do bytes a truncation left in the file
            low, high = max(low, start), min(high, start + total)
            if low < high:
                view[low - start : high - start] = bytes(high - low)
        for offset, data in self._pending:  # replayed in order over what the disk holds
            if data is None:
                if offset < start + total:
                    view[max(offset - start, 0) : total] = bytes(total - max(offset - start, 0))
                continue
            low, high = max(offset, start), min(offset + len(data), start + total)
            if low < high:
                view[low - start : high - start] = data[low - offset : high - offset]
        self._position += total
        return total

    def write(self, buffer: "ReadableBuffer") -> int:  # noqa: D102
        view = memoryview(buffer).cast("B")
        start, total = self._position, len(view)
        if self._discarding:
            self._position += total
            return total
        split = total if self._shrunk else min(max(self._committed - start, 0), total)
        if split and self._unreferenced and not self._shrunk:
            self._write_committed(view[:split], start)
        elif split:  # overwrites committed bytes: held back until the flush
            self._pending.append((start, bytes(view[:split])))
        if split < total:  # past the committed end nothing refers to these bytes yet
            self._write_at(view[split:], start + split)
        self._position += total
        self._length = max(self._length, start + total)
        return total

    def _write_committed(self, view: memoryview, start: int) -> None:
        # Parts in unreferenced ranges go to the file now, the rest waits for the flush.
        end = start + len(view)
        position = start
        for low, high in self._unreferenced:
            if high <= position:
                continue
            if low >= end:
                break
            if low > position:
                self._pending.append((position, bytes(view[position - start : low - start])))
                position = low
            stop = min(high, end)
            self._write_at(view[position - start : stop - start], position)
            position = stop
            if position >= end:
                return
        if position < end:
            self._pending.append((position, bytes(view[position - start :])))

    def truncate(self, size: int | None = None) -> int:  # noqa: D102
        size = self._position if size is None else size
        if self._discarding:
            return size
        if size != self._length:  # HDF5 asks at every flush; the call is not free
            if size >= self._committed and not self._shrunk:
                os.ftruncate(self._fd, size)
            else:
                self._pending.append((size, None))
                self._shrunk = True
            self._length = size
        return size

    def flush(self) -> None:
        """Commits every write since the last flush, atomically."""
        if self.closed or not self._writable or self._discarding:
            return
        tail = self._pending[-1] if self._pending else None
        shrinking = (
            self._keep_tail
            and tail is not None
            and tail[1] is None
            and all(data is not None for _, data in self._pending[:-1])
        )
        if shrinking:
            # A truncation that ends the flush (as HDF5 ends each one) is not made: the bytes
            # past the new end stay in the file, unreferenced and read as zeros, until it is
            # closed. The next array HDF5 puts there is written over pages the system has
            # cached instead of growing the file anew, which costs about half again as much
            # for a big replaced value.
            self._pending.pop()
        if self._pending:
            journal = self._open_journal()
            before = os.fstat(self._fd)
            _write_all(journal, journal_pieces(self._pending, before.st_ino, before.st_size), 0)
            self._apply(self._pending)
            os.pwrite(journal, bytes(len(MAGIC)), 0)  # the journal is spent
            self._pending.clear()
        self._shrunk = False
        if self._stale:  # kept bytes the file now ends past, never written: zeros, as promised
            for low, high in [(low, min(high, self._length)) for low, high in self._stale]:
                for offset in range(low, high, _ZEROS_BYTES):
                    self._write_at(bytes(min(_ZEROS_BYTES, high - offset)), offset)
        self._committed = self._length
        if shrinking:
            size = os.fstat(self._fd).st_size
            if size > self._committed:
                self._unstale(self._committed, size)
                self._stale.append((self._committed, size))
        self._unreferenced = []  # the new committed state may refer to them

    def close(self) -> None:
        """Commits pending writes and closes the file; the spent journal is removed."""
        if self.closed:
            return
        try:
            self.flush()
            if self._stale and self._writable and not self._discarding:
                os.ftruncate(self._fd, self._committed)  # the bytes a truncation left go now
        finally:
            try:
                if self._journal_fd is not None:
                    if self._own_journal():  # never a file planted in its place
                        self._journal.unlink(missing_ok=True)
                    os.close(self._journal_fd)
                    self._journal_fd = None
            finally:
                self._release()
                super().close()


_ZEROS_BYTES = 1 << 20


def _write_all(fd: int, pieces: list[bytes], offset: int) -> None:
    """Writes the concatenation of ``pieces`` at ``offset``, gathered, without joining them."""
    if not hasattr(os, "pwritev"):  # not on every system
        pieces = [b"".join(pieces)]
    buffers: list[bytes | memoryview] = [piece for piece in pieces if piece]
    while buffers:
        batch = buffers[:_IOV_MAX]
        written = (
            os.pwritev(fd, batch, offset) if len(batch) > 1 else os.pwrite(fd, batch[0], offset)
        )
        offset += written
        done = 0
        for buffer in batch:  # drops what was written; a partial write leaves a remainder
            if written < len(buffer):
                break
            written -= len(buffer)
            done += 1
        del buffers[:done]
        if written:
            buffers[0] = memoryview(buffers[0])[written:]


# At most this many buffers in one gathering write (the system's limit is at least this).
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "sysconf") else 16


def __getattr__(name: str) -> Any:
    # The HDF5 format opens h5py on top of this module: its opener is importable from here too,
    # looked up on first use, as the HDF5 format imports this module.
    if name in ("open_journaled", "roll_back"):
        from corelay.io._hdf5 import files

        return getattr(files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
