"""HDF5 files whose changes reach the disk atomically, one flush at a time.

The HDF5 library writes a flush as many separate writes; a process killed in the middle of them
leaves a file whose metadata is half old, half new, and often unreadable. Here h5py does its I/O
through :class:`JournaledFile`, which

* writes what lands past the last committed end of the file (new data, new metadata) directly:
  nothing committed refers to it yet;
* holds back overwrites of the committed part, and at each flush first writes them to a sidecar
  journal (``<file>.journal``) that ends with a checksum, then applies them, then invalidates the
  journal.

Opening the file replays a complete journal and discards an incomplete one, so the file always
holds the state of the last finished flush. This protects against the process being killed, not
against the machine losing power (no ``fsync``, which would cost milliseconds per write).
"""

import fcntl
import io
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import h5py
import xxhash

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["JournaledFile", "Operation", "encode_journal", "journal_path", "open_journaled"]

_MAGIC = b"corelay-journal-2\n"
_HEADER = struct.Struct(f"<{len(_MAGIC)}sQ")  # magic, length of the operations
_OPERATION = struct.Struct("<QQ")  # offset, length of the data; _TRUNCATE: a truncation
_TRUNCATE = 2**64 - 1
_CHECKSUM = struct.Struct("<Q")

JournaledMode = Literal["r", "r+", "w"]

#: A write of bytes at an offset, or (with ``None``) a truncation to a size.
Operation = tuple[int, bytes | None]


def journal_path(path: Path) -> Path:
    """The sidecar journal of the HDF5 file at ``path``."""
    return path.with_name(path.name + ".journal")


def encode_journal(operations: list[Operation]) -> bytes:
    """The journal of ``operations``: a header, the operations, and their checksum."""
    body = b"".join(
        _OPERATION.pack(offset, _TRUNCATE)
        if data is None
        else _OPERATION.pack(offset, len(data)) + data
        for offset, data in operations
    )
    checksum = _CHECKSUM.pack(xxhash.xxh3_64_intdigest(body))
    return _HEADER.pack(_MAGIC, len(body)) + body + checksum


def _parse_journal(data: bytes) -> list[Operation] | None:
    """The operations of a complete journal, or ``None`` if it is not one."""
    if len(data) < _HEADER.size:
        return None
    magic, length = _HEADER.unpack_from(data)
    end = _HEADER.size + length
    if magic != _MAGIC or len(data) < end + _CHECKSUM.size:
        return None
    body = data[_HEADER.size : end]
    if xxhash.xxh3_64_intdigest(body) != _CHECKSUM.unpack_from(data, end)[0]:
        return None
    operations: list[Operation] = []
    position = 0
    while position < len(body):
        offset, size = _OPERATION.unpack_from(body, position)
        position += _OPERATION.size
        if size == _TRUNCATE:
            operations.append((offset, None))
        else:
            operations.append((offset, body[position : position + size]))
            position += size
    return operations


class JournaledFile(io.RawIOBase):
    """A binary file for h5py's ``fileobj`` driver whose flushes are atomic.

    Args:
        path: The file.
        mode: ``'r'`` reads, ``'r+'`` reads and writes an existing file, ``'w'`` creates or
            empties the file.

    Raises:
        BlockingIOError: Another process has the file open for writing (or, for a writer,
            open at all).
    """

    def __init__(self, path: Path, mode: JournaledMode) -> None:
        super().__init__()
        self.path = path
        self._writable = mode != "r"
        self._journal = journal_path(path)
        if mode == "w":
            # A journal left for the old content must never be replayed onto the new file.
            self._journal.unlink(missing_ok=True)
        flags = {"r": os.O_RDONLY, "r+": os.O_RDWR, "w": os.O_RDWR | os.O_CREAT | os.O_TRUNC}
        self._fd = os.open(path, flags[mode], 0o666)
        try:
            lock = fcntl.LOCK_EX if self._writable else fcntl.LOCK_SH
            fcntl.flock(self._fd, lock | fcntl.LOCK_NB)
        except BlockingIOError as error:
            os.close(self._fd)
            raise BlockingIOError(
                error.errno, f"{str(path)!r} is open for writing in another process"
            ) from error
        self._position = 0
        # Operations on committed bytes, held back until the next flush; after a truncation
        # into committed bytes, every operation, so that their order is kept.
        self._pending: list[Operation] = []
        self._shrunk = False
        self._journal_fd: int | None = None
        self._recover()
        self._committed = os.fstat(self._fd).st_size
        self._length = self._committed  # the file's length as h5py sees it
        for offset, data in self._pending:  # a reader's view of an unreplayed journal
            self._length = offset if data is None else max(self._length, offset + len(data))

    def _recover(self) -> None:
        try:
            data = self._journal.read_bytes()
        except FileNotFoundError:
            return
        operations = _parse_journal(data)
        if operations is None:  # interrupted before it was complete: the file was not touched
            if self._writable:
                self._journal.unlink()
            return
        if not self._writable:  # cannot replay; show the replayed state instead
            self._pending = operations
            return
        self._apply(operations)
        self._journal.unlink()

    def _apply(self, operations: list[Operation]) -> None:
        for offset, data in operations:
            if data is None:
                os.ftruncate(self._fd, offset)
            else:
                self._write_at(data, offset)

    def _write_at(self, data: "ReadableBuffer", offset: int) -> None:
        view = memoryview(data).cast("B")
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

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
        split = total if self._shrunk else min(max(self._committed - start, 0), total)
        if split:  # overwrites committed bytes: held back until the flush
            self._pending.append((start, bytes(view[:split])))
        if split < total:  # past the committed end nothing refers to these bytes yet
            self._write_at(view[split:], start + split)
        self._position += total
        self._length = max(self._length, start + total)
        return total

    def truncate(self, size: int | None = None) -> int:  # noqa: D102
        size = self._position if size is None else size
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
        if self.closed or not self._writable:
            return
        if self._pending:
            if self._journal_fd is None:
                self._journal_fd = os.open(self._journal, os.O_RDWR | os.O_CREAT, 0o666)
            os.pwrite(self._journal_fd, encode_journal(self._pending), 0)
            self._apply(self._pending)
            os.pwrite(self._journal_fd, bytes(len(_MAGIC)), 0)  # the journal is spent
            self._pending.clear()
            self._shrunk = False
        self._committed = self._length

    def close(self) -> None:
        """Commits pending writes and closes the file; the empty journal is removed."""
        if self.closed:
            return
        try:
            self.flush()
        finally:
            if self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal.unlink(missing_ok=True)
            os.close(self._fd)
            super().close()


def open_journaled(path: str | os.PathLike[str], mode: Literal["r", "w", "a"] = "r") -> h5py.File:
    """Opens an HDF5 file whose flushes are atomic (see the module documentation).

    A reader of a file with no journal to replay reads through HDF5's own driver, which is
    faster; it holds a shared lock on the file all the same, so no writer opens it meanwhile.

    Args:
        path: The file.
        mode: ``'r'`` reads; ``'w'`` creates or replaces the file; ``'a'`` reads and writes,
            creating the file if it does not exist.

    Raises:
        FileNotFoundError: ``mode`` is ``'r'`` and the file does not exist.
        BlockingIOError: Another process has the file open for writing.

    Returns:
        The open h5py file; closing it closes the file beneath and releases the lock.
    """
    file_path = Path(path)
    if mode == "r":
        if _needs_replay(file_path):
            return _open_h5(JournaledFile(file_path, "r"), "r")
        return _open_native_reader(file_path)
    if mode == "a" and file_path.exists() and file_path.stat().st_size > 0:
        return _open_h5(JournaledFile(file_path, "r+"), "r+")
    return _open_h5(JournaledFile(file_path, "w"), "w")


def _needs_replay(path: Path) -> bool:
    try:
        return _parse_journal(journal_path(path).read_bytes()) is not None
    except FileNotFoundError:
        return False


#: Bounds of HDF5's metadata cache. Every flush walks the whole cache, so a writer that flushes
#: after each write (as the storages do) pays for its size on every write; HDF5's defaults (2 MB,
#: growing to 32 MB) make a small write two to three times slower once a file has thousands of
#: entries, where this size costs a few percent on reads.
METADATA_CACHE_BYTES = 512 * 1024


class _ClosingFile(h5py.File):
    """An h5py file that closes, with itself, the journaled file or lock it was opened with."""

    companion: "JournaledFile | int | None" = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            companion, self.companion = self.companion, None
            if isinstance(companion, JournaledFile):
                companion.close()
            elif companion is not None:
                os.close(companion)  # releases the lock


def _open_native_reader(path: Path) -> h5py.File:
    lock = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        file = _ClosingFile(path, "r", locking=False)
    except BlockingIOError as error:
        os.close(lock)
        raise BlockingIOError(
            error.errno, f"{str(path)!r} is open for writing in another process"
        ) from error
    except BaseException:
        os.close(lock)
        raise
    file.companion = lock
    return file


def _open_h5(raw: JournaledFile, mode: str) -> h5py.File:
    try:
        file = _ClosingFile(raw, mode)
        file.companion = raw
        config = file.id.get_mdc_config()
        config.set_initial_size = True
        config.initial_size = METADATA_CACHE_BYTES
        config.min_size = METADATA_CACHE_BYTES // 2
        config.max_size = METADATA_CACHE_BYTES
        file.id.set_mdc_config(config)
        return file
    except BaseException:
        raw.close()
        raise
