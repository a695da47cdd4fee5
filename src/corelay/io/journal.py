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

import contextlib
import errno
import io
import os
import secrets
import stat
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import h5py
import xxhash
from h5py import h5f

from corelay.io._lock import FileLock, LockKind, acquire, held_here, open_regular

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = [
    "JournaledFile",
    "Operation",
    "encode_journal",
    "journal_path",
    "open_journaled",
]

_MAGIC = b"corelay-journal-3\n"
# magic, inode of the file, its size before the journal is applied, length of the operations
_HEADER = struct.Struct(f"<{len(_MAGIC)}sQQQ")
_OPERATION = struct.Struct("<QQ")  # offset, length of the data; _TRUNCATE: a truncation
_TRUNCATE = 2**64 - 1
_CHECKSUM = struct.Struct("<Q")
# Offsets and sizes beyond this are not from a real file: a crafted journal, refused whole.
_MAX_OFFSET = 2**62

JournaledMode = Literal["r", "r+", "w"]

#: A write of bytes at an offset, or (with ``None``) a truncation to a size.
Operation = tuple[int, bytes | None]


def journal_path(path: Path) -> Path:
    """The sidecar journal of the HDF5 file at ``path``."""
    return path.with_name(path.name + ".journal")


def encode_journal(operations: list[Operation], inode: int = 0, size: int = 0) -> bytes:
    """The journal of ``operations``: a header, the operations, and their checksum.

    Args:
        operations: What the journal does to the file, in order.
        inode: The inode number of the file it belongs to.
        size: The file's size before the operations are applied.
    """
    body = b"".join(
        _OPERATION.pack(offset, _TRUNCATE)
        if data is None
        else _OPERATION.pack(offset, len(data)) + data
        for offset, data in operations
    )
    checksum = _CHECKSUM.pack(xxhash.xxh3_64_intdigest(_HEADER.pack(_MAGIC, inode, size, 0) + body))
    return _HEADER.pack(_MAGIC, inode, size, len(body)) + body + checksum


class _Journal:
    """A complete journal: the file it is bound to and its operations."""

    def __init__(self, inode: int, size: int, operations: list[Operation]) -> None:
        self.inode = inode
        self.size = size
        self.operations = operations

    def binds(self, status: os.stat_result) -> bool:
        """Whether the journal belongs to the file of ``status``, as a crash may have left it.

        The file must be the same inode, and its size one that the file had before the
        journal was applied or at some point while it was being applied.
        """
        if status.st_ino != self.inode:
            return False
        current, found = self.size, status.st_size == self.size
        for offset, data in self.operations:
            if data is None:
                current = offset
                found = found or status.st_size == current
            else:
                end = max(current, offset + len(data))
                found = found or current <= status.st_size <= end
                current = end
        return found


def _parse_journal(data: bytes) -> "_Journal | Literal[False] | None":
    """The complete journal in ``data``.

    Returns:
        ``None`` if it is incomplete or spent (as a killed writer leaves it); ``False`` if it
        is complete but malformed (crafted).
    """
    if len(data) < _HEADER.size:
        return None
    magic, inode, size, length = _HEADER.unpack_from(data)
    if magic != _MAGIC or length > len(data):
        return None
    end = _HEADER.size + length
    if len(data) < end + _CHECKSUM.size:
        return None
    body = data[_HEADER.size : end]
    summed = _HEADER.pack(_MAGIC, inode, size, 0) + body
    if xxhash.xxh3_64_intdigest(summed) != _CHECKSUM.unpack_from(data, end)[0]:
        return None
    if size > _MAX_OFFSET:
        return False
    operations: list[Operation] = []
    position = 0
    while position < len(body):
        if position + _OPERATION.size > len(body):
            return False
        offset, count = _OPERATION.unpack_from(body, position)
        position += _OPERATION.size
        if count == _TRUNCATE:
            if offset > _MAX_OFFSET:
                return False
            operations.append((offset, None))
            continue
        if offset > _MAX_OFFSET or position + count > len(body):
            return False
        operations.append((offset, body[position : position + count]))
        position += count
    return _Journal(inode, size, operations)


def _read_journal(path: Path) -> bytes | None:
    """The bytes of the journal at ``path``, or ``None`` if there is none.

    Raises:
        OSError: The journal is a link, a FIFO or anything else but a regular file.
    """
    try:
        fd = open_regular(path, os.O_RDONLY, follow=False, what="journal file")
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as file:
        return file.read()


def _check_journal_slot(path: Path) -> None:
    """Refuses a journal path that holds anything but a regular file (or nothing)."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(status.st_mode):
        raise OSError(errno.EINVAL, f"{str(path)!r} is not a regular journal file: refused")


def _foreign(path: Path) -> None:
    warnings.warn(
        f"{str(path)!r} does not belong to its file (copied from another file, or crafted): "
        "ignored",
        RuntimeWarning,
        stacklevel=4,
    )


class JournaledFile(io.RawIOBase):
    """A binary file for h5py's ``fileobj`` driver whose flushes are atomic.

    The file is opened without following a FIFO or device into a hang, and locked before
    anything on disk changes; a journal left beside it is replayed only if it is bound to this
    file (see :func:`open_journaled`).

    Args:
        path: The file.
        mode: ``'r'`` reads, ``'r+'`` reads and writes an existing file, ``'w'`` creates or
            empties the file.

    Raises:
        BlockingIOError: The file is open elsewhere in a way that excludes ``mode``; the message
            says whether in this process or another.
        OSError: The file or its journal is not a regular file.
    """

    def __init__(
        self, path: Path, mode: JournaledMode, *, opened: tuple[int, FileLock] | None = None
    ) -> None:
        super().__init__()
        self.path = path
        self._writable = mode != "r"
        self._journal = journal_path(path)
        if opened is None:
            flags = {"r": os.O_RDONLY, "r+": os.O_RDWR, "w": os.O_RDWR | os.O_CREAT}[mode]
            fd = open_regular(path, flags)
            try:
                kind: LockKind = "read" if mode == "r" else "write" if mode == "r+" else "replace"
                lock = acquire(fd, path, kind, "hdf5", _OWNER)
            except BaseException:
                os.close(fd)
                raise
            opened = fd, lock
        self._fd, self._lock = opened
        try:
            _check_journal_slot(self._journal)
            if mode == "w":  # only now that the file is locked: a journal for the old content
                self._journal.unlink(missing_ok=True)  # must never be replayed onto the new one
                os.ftruncate(self._fd, 0)
        except BaseException:
            self._release()
            raise
        self._journal_fd: int | None = None
        self._discarding = False
        self._reset()

    def _release(self) -> None:
        os.close(self._fd)
        self._lock.release()

    def _reset(self) -> None:
        self._position = 0
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
        data = _read_journal(self._journal)
        if data is None:
            return False
        journal = _parse_journal(data)
        if journal is None:  # interrupted before it was complete: the file was not touched
            if self._writable:
                self._unlink_journal()
            return False
        if journal is False or not journal.binds(os.fstat(self._fd)):
            _foreign(self._journal)
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
        mine = os.fstat(self._journal_fd)
        return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

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

    def restore(self) -> None:
        """Returns to the last committed state after :meth:`discard`, ready to be reopened."""
        self._discarding = False
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
        if self._discarding:
            self._position += total
            return total
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
        if self._pending:
            journal = self._open_journal()
            before = os.fstat(self._fd)
            encoded = encode_journal(self._pending, before.st_ino, before.st_size)
            _write_all(journal, encoded, 0)
            self._apply(self._pending)
            os.pwrite(journal, bytes(len(_MAGIC)), 0)  # the journal is spent
            self._pending.clear()
            self._shrunk = False
        self._committed = self._length

    def close(self) -> None:
        """Commits pending writes and closes the file; the spent journal is removed."""
        if self.closed:
            return
        try:
            self.flush()
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


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def open_journaled(path: str | os.PathLike[str], mode: Literal["r", "w", "a"] = "r") -> h5py.File:
    """Opens an HDF5 file whose flushes are atomic (see the module documentation).

    Every check and lock comes before anything on disk changes: a FIFO, a device or a
    directory is refused at once, and so is a journal that is a link or not a regular file; a
    file open elsewhere in a conflicting mode is refused with :class:`BlockingIOError`. A new
    file (mode ``'w'``, or ``'a'`` on a missing file) is built beside the path, committed, and
    moved into place, so that the path never names a half-created file.

    A journal is replayed only if it is bound to the file (its inode, and a size the file had
    while the journal was being applied); a journal from another file is ignored with a
    :class:`RuntimeWarning` (and removed by a writer).

    A reader of a file with no journal to replay reads through HDF5's own driver, which is
    faster; it holds a shared lock on the file all the same, so no writer opens it meanwhile.

    If this process already has the file open through plain ``h5py.File``, the file is opened
    the same way, and HDF5 shares one open file between the handles: each sees the other's
    writes. Its flushes are then HDF5's own, not atomic: a process killed during a flush may
    leave the file damaged, as with plain h5py.

    Args:
        path: The file.
        mode: ``'r'`` reads; ``'w'`` creates or replaces the file; ``'a'`` reads and writes,
            creating the file if it does not exist.

    Raises:
        FileNotFoundError: ``mode`` is ``'r'`` and the file does not exist.
        BlockingIOError: The file is open elsewhere in a way that excludes ``mode``; the
            message says whether in this process or another (with its pid when known).
        OSError: The file or its journal is not a regular file.

    Returns:
        The open h5py file; closing it closes the file beneath and releases the lock.
    """
    file_path = Path(path)
    shared = _open_natively_here(file_path, mode)
    if shared is not None:
        return shared
    if mode == "r":
        return _open_reader(file_path)
    for _ in range(8):  # another process may create or remove the file meanwhile
        try:
            fd = open_regular(file_path, os.O_RDONLY if mode == "w" else os.O_RDWR)
        except FileNotFoundError:
            created = _create(file_path, None)
            if created is not None:
                return created
            continue
        try:
            lock = acquire(fd, file_path, "replace" if mode == "w" else "write", "hdf5", _OWNER)
        except BaseException:
            os.close(fd)
            raise
        if mode == "a" and os.fstat(fd).st_size > 0:
            return _open_h5(JournaledFile(file_path, "r+", opened=(fd, lock)), "r+")
        try:  # replaced whole, under the lock of the old file
            created = _create(file_path, os.fstat(fd))
        finally:
            os.close(fd)
            lock.release()
        if created is not None:
            return created
    raise BlockingIOError(errno.EWOULDBLOCK, f"{str(file_path)!r} keeps changing: not opened")


_OWNER = "an HDF5Storage or open_journaled"


def _create(path: Path, old: os.stat_result | None) -> h5py.File | None:
    """Builds an empty HDF5 file beside ``path`` and moves it there.

    It replaces the file of ``old`` (locked by the caller), or, without ``old``, goes there only
    if nothing is there; ``None`` if something appeared meanwhile.
    """
    _check_journal_slot(journal_path(path))
    temporary = path.with_name(f".{path.name}.corelay-new-{secrets.token_hex(6)}")
    fd = open_regular(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, follow=False)
    try:
        lock = acquire(fd, temporary, "write", "hdf5", _OWNER)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    try:
        raw = JournaledFile(temporary, "r+", opened=(fd, lock))
    except BaseException:
        os.close(fd)
        lock.release()
        temporary.unlink(missing_ok=True)
        raise
    try:
        file = _open_h5(raw, "w")
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    try:
        file.flush()
        if old is None:
            try:
                os.link(temporary, path)  # never replaces what another process created
            except FileExistsError:
                file.close()
                return None
        else:
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
            os.replace(temporary, path)
            journal_path(path).unlink(missing_ok=True)  # the old file's: never replayed here
        raw.rename(path)
        return file
    except BaseException:
        file.close()
        raise
    finally:
        temporary.unlink(missing_ok=True)


def _open_reader(path: Path) -> h5py.File:
    fd = open_regular(path, os.O_RDONLY)
    try:
        lock = acquire(fd, path, "read", "hdf5", _OWNER)
    except BaseException:
        os.close(fd)
        raise
    try:
        data = _read_journal(journal_path(path))
        journal = None if data is None else _parse_journal(data)
        if journal is not None and (journal is False or not journal.binds(os.fstat(fd))):
            _foreign(journal_path(path))
            journal = None
    except BaseException:
        os.close(fd)
        lock.release()
        raise
    if journal:
        return _open_h5(JournaledFile(path, "r", opened=(fd, lock)), "r")
    os.close(fd)  # the lock is held on a duplicate
    try:
        file = _ClosingFile(path, "r", locking=False)
    except BaseException:
        lock.release()
        raise
    file.companion = lock
    return file


def _open_natively_here(path: Path, mode: str) -> h5py.File | None:
    """Opens ``path`` through HDF5's own driver if this process has it open that way.

    HDF5 then shares one open file between the handles; a journaled handle beside a native one
    would be a second writer of the same bytes.
    """
    try:
        status = os.stat(path)
    except OSError:
        return None
    if held_here(status):  # opened by this library, whose locks decide
        return None
    for file_id in h5f.get_obj_ids(types=h5f.OBJ_FILE):
        try:
            other = os.stat(file_id.name)
        except (OSError, ValueError):
            continue  # a file object (ours are journaled), or a file gone since
        if (other.st_dev, other.st_ino) != (status.st_dev, status.st_ino):
            continue
        read_only = file_id.get_intent() & h5f.ACC_RDWR == 0
        if mode == "w" or (mode == "a" and read_only):
            use = "reading" if read_only else "writing"
            raise BlockingIOError(
                errno.EWOULDBLOCK,
                f"{str(path)!r} is open for {use} in this process (by h5py.File)",
            )
        return _ClosingFile(path, "r" if mode == "r" else "r+")
    return None


#: Bounds of HDF5's metadata cache. Every flush walks the whole cache, so a writer that flushes
#: after each write (as the storages do) pays for its size on every write; HDF5's defaults (2 MB,
#: growing to 32 MB) make a small write two to three times slower once a file has thousands of
#: entries, where this size costs a few percent on reads.
METADATA_CACHE_BYTES = 512 * 1024


class _ClosingFile(h5py.File):
    """An h5py file that closes, with itself, the journaled file or lock it was opened with."""

    companion: "JournaledFile | FileLock | None" = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            companion, self.companion = self.companion, None
            if isinstance(companion, JournaledFile):
                companion.close()
            elif companion is not None:
                companion.release()

    def roll_back(self) -> bool:
        """Returns the file to its last committed state, dropping HDF5's cached changes.

        For a write that failed part way (an error from the disk, an exception, an interrupt):
        HDF5's cache may then hold half of it, and must not reach the file.

        Returns:
            ``False`` if the file is not journaled (opened natively): nothing was rolled back.
        """
        raw = self.companion
        if not isinstance(raw, JournaledFile) or not raw.writable():
            return False
        raw.discard()
        with contextlib.suppress(Exception):  # whatever HDF5 says, its writes are discarded
            h5py.File.close(self)
        raw.restore()
        _configure(self, raw, "r+")
        return True


def _configure(file: h5py.File, raw: JournaledFile, mode: str) -> None:
    h5py.File.__init__(file, raw, mode)
    config = file.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = METADATA_CACHE_BYTES
    config.min_size = METADATA_CACHE_BYTES // 2
    config.max_size = METADATA_CACHE_BYTES
    file.id.set_mdc_config(config)


def _open_h5(raw: JournaledFile, mode: str) -> h5py.File:
    try:
        file = _ClosingFile.__new__(_ClosingFile)
        _configure(file, raw, mode)
        file.companion = raw
        return file
    except BaseException:
        raw.close()
        raise


def roll_back(file: h5py.File) -> bool:
    """Returns a file opened by :func:`open_journaled` for writing to its last committed state.

    HDF5's cached changes since the last flush are dropped (the objects open in the file are
    closed), and the same ``file`` object is usable again.

    Returns:
        ``False`` if ``file`` is not journaled (opened natively, or for reading): nothing was
        rolled back.
    """
    return isinstance(file, _ClosingFile) and file.roll_back()
