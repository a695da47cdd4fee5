"""Opening HDF5 files through the journal, rolling a failed write back, replacing a node.

The byte-level journal is :mod:`corelay.io.journal`; here h5py is opened on top of it.
"""

import _signal
import contextlib
import ctypes
import errno
import glob
import os
import secrets
import stat
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

import h5py
from h5py import h5f
from h5py._objects import phil

from corelay.io._lock import FileLock, acquire, held_here, open_regular
from corelay.io.journal import (
    OWNER,
    JournaledFile,
    check_journal_slot,
    journal_path,
    replayable,
)


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
            lock = acquire(fd, file_path, "replace" if mode == "w" else "write", "hdf5", OWNER)
        except BaseException:
            os.close(fd)
            raise
        if mode == "a" and os.fstat(fd).st_size > 0:
            return _open_h5(JournaledFile(file_path, "r+", opened=(fd, lock), keep_tail=True), "r+")
        try:  # replaced whole, under the lock of the old file
            created = _create(file_path, os.fstat(fd))
        finally:
            os.close(fd)
            lock.release()
        if created is not None:
            return created
    raise BlockingIOError(errno.EWOULDBLOCK, f"{str(file_path)!r} keeps changing: not opened")


def _create(path: Path, old: os.stat_result | None) -> h5py.File | None:
    """Builds an empty HDF5 file beside ``path`` and moves it there.

    It replaces the file of ``old`` (locked by the caller), or, without ``old``, goes there only
    if nothing is there; ``None`` if something appeared meanwhile.
    """
    check_journal_slot(journal_path(path))
    temporary = path.with_name(f".{path.name}.corelay-new-{secrets.token_hex(6)}")
    fd = open_regular(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, follow=False)
    try:
        lock = acquire(fd, temporary, "write", "hdf5", OWNER)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    try:
        raw = JournaledFile(temporary, "r+", opened=(fd, lock), keep_tail=True)
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
        lock = acquire(fd, path, "read", "hdf5", OWNER)
    except BaseException:
        os.close(fd)
        raise
    try:
        journal = replayable(path, os.fstat(fd))
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
    _userblock = 0  # where HDF5's addresses start in the file; set when opened

    def close(self) -> None:
        try:
            super().close()
        finally:
            companion, self.companion = self.companion, None
            if isinstance(companion, JournaledFile):
                companion.close()
            elif companion is not None:
                companion.release()

    def flush(self) -> None:
        """Commits every change (atomically when journaled), as ``h5py.File.flush``.

        Then tells the journal which space the committed state has freed, so that the next
        write puts arrays there directly instead of copying them into the journal.
        """
        super().flush()
        raw = self.companion
        # Most flushes free nothing worth it: the total free space says so, cheaply.
        if (
            isinstance(raw, JournaledFile)
            and raw.writable()
            and self.id.get_freespace() >= DIRECT_BYTES
        ):
            raw.set_unreferenced(_sections(self.id.id, self._userblock, DIRECT_BYTES))

    def note_userblock(self) -> None:
        """Records where HDF5's addresses start in the file (fixed when the file was made)."""
        self._userblock = self.userblock_size

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


class _SectionInfo(ctypes.Structure):
    _fields_ = (("addr", ctypes.c_uint64), ("size", ctypes.c_uint64))


def _load_free_sections() -> "Any | None":
    # h5py exposes no H5Fget_free_sections; it is called in the HDF5 library h5py loaded (the
    # same handle: dlopen of a loaded library returns it). Without it, replacements are still
    # correct, only journaled whole.
    here = os.path.dirname(os.path.dirname(h5py.__file__))
    candidates = sorted(glob.glob(os.path.join(here, "h5py.libs", "libhdf5-*.so*")))
    if not candidates:
        with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
            candidates = sorted(
                {line.split()[-1] for line in maps if "/libhdf5.so" in line or "/libhdf5-" in line}
            )
    for candidate in candidates:
        try:
            function = ctypes.CDLL(candidate).H5Fget_free_sections
        except (OSError, AttributeError):
            continue
        function.restype = ctypes.c_ssize_t
        function.argtypes = (
            ctypes.c_int64,
            ctypes.c_int,
            ctypes.c_size_t,
            ctypes.POINTER(_SectionInfo),
        )
        return function
    return None


_FREE_SECTIONS = _load_free_sections()
_MEM_DEFAULT = 0  # H5F_MEM_DEFAULT: the sections of every kind of data


def free_sections(file: h5py.File, minimum: int = 0) -> list[tuple[int, int]]:
    """The free space HDF5 tracks in ``file``, as ``(offset, length)`` pairs in the file.

    Right after a flush, space the file's committed state does not refer to. Empty when the
    HDF5 library offers no way to ask.

    Args:
        file: The open file.
        minimum: Leave out sections shorter than this many bytes.
    """
    return _sections(file.id.id, file.userblock_size, minimum)


def _sections(file_id: int, base: int, minimum: int) -> list[tuple[int, int]]:
    function = _FREE_SECTIONS
    if function is None:
        return []
    with phil:
        count = function(file_id, _MEM_DEFAULT, 0, None)
        if count <= 0:
            return []
        sections = (_SectionInfo * count)()
        count = function(file_id, _MEM_DEFAULT, count, sections)
    # HDF5 addresses start after the user block.
    return [
        (section.addr + base, section.size)
        for section in sections[: max(count, 0)]
        if section.size >= minimum
    ]


#: Free sections smaller than this are left to the journal: what matters is that arrays are
#: not copied into it, and a write into a small section is a system call where the journal
#: would have kept the bytes in memory until the flush.
DIRECT_BYTES = 64 * 1024


def _configure(file: h5py.File, raw: JournaledFile, mode: str) -> None:
    h5py.File.__init__(file, raw, mode)
    config = file.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = METADATA_CACHE_BYTES
    config.min_size = METADATA_CACHE_BYTES // 2
    config.max_size = METADATA_CACHE_BYTES
    file.id.set_mdc_config(config)
    if isinstance(file, _ClosingFile):
        file.note_userblock()


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


def interrupts_deferred() -> "_Deferral":
    """Holds back Ctrl-C (``SIGINT``) until the block ends, then raises it.

    A :class:`KeyboardInterrupt` raised inside one of HDF5's callbacks (the journaled file's
    writes) leaves HDF5's cache inconsistent for good. Outside the main thread, or when
    ``SIGINT`` is not handled by Python's default handler, nothing is deferred. A block that
    ends with an exception of its own lets that exception through, not the held interrupt.

    Returns:
        A context manager, used once.
    """
    return _Deferral()


class _Deferral:
    """The context manager of :func:`interrupts_deferred`.

    It swaps handlers through the C module beneath :mod:`signal`: the wrappers there convert
    each handler to and from an enum, which cost more than the rest of a small write's checks.
    """

    __slots__ = ("_previous", "_received")

    def __init__(self) -> None:
        self._previous: _signal.Handler | None = None
        self._received = False

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        previous = _signal.getsignal(_signal.SIGINT)
        if previous is _signal.default_int_handler:  # a user's own handler is left alone
            _signal.signal(_signal.SIGINT, self._hold)
            self._previous = previous

    def _hold(self, number: int, frame: FrameType | None) -> None:
        self._received = True

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        previous, self._previous = self._previous, None
        if previous is None:
            return
        _signal.signal(_signal.SIGINT, previous)
        if self._received and kind is None:
            raise KeyboardInterrupt
