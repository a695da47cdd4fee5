"""Opening storage files safely, and locking them: one writer, or readers, per file.

Both storages open their files here. :func:`open_regular` opens without blocking and refuses
anything that is not a regular file (a FIFO would hang the open or the first read).
:func:`acquire` takes the lock before anything on disk is changed, and says who holds a file it
cannot lock: this process (another storage, or ``h5py.File``) or another one (with its pid when
the system tells it).

Between processes the locks are the operating system's:

* ``flock`` locks the whole file: shared for an HDF5 reader, exclusive for any writer. HDF5's own
  file locking uses ``flock`` too, so plain ``h5py.File`` handles in other programs take part.
* A pickle file may be read while it is appended to, so its readers do not take the ``flock``;
  they hold a shared open-file-description lock on byte 0 instead, which only a writer that
  empties the file (mode ``'w'``) asks for exclusively.

Within a process, ``flock`` locks of two descriptors of one file exclude each other, so a
registry of the locks this process holds decides first, and names the storage holding the file.
"""

import errno
import fcntl
import io
import os
import stat
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, cast

__all__ = [
    "FileLock",
    "LockKind",
    "LockedFileIO",
    "acquire",
    "check_regular",
    "held_here",
    "open_locked",
    "open_regular",
]

#: ``'read'`` reads; ``'write'`` writes; ``'replace'`` empties the file (no reader may stay).
LockKind = Literal["read", "write", "replace"]
#: HDF5 files: readers exclude writers. Pickle files: readers coexist with one appender.
Style = Literal["hdf5", "pickle"]


def check_regular(fd: int, path: Path | str, what: str = "file") -> os.stat_result:
    """Returns the status of the open ``fd``.

    Raises:
        OSError: ``fd`` is not a regular file (errno ``EINVAL``, naming ``path``).
    """
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        raise OSError(errno.EINVAL, f"{str(path)!r} is not a regular {what}: refused")
    return status


def open_regular(path: Path | str, flags: int, *, follow: bool = True, what: str = "file") -> int:
    """Opens a regular file without ever blocking, and returns its descriptor.

    Args:
        path: The file.
        flags: ``os.open`` flags; ``O_NONBLOCK`` is added (and cleared once the file is known
            to be regular), so a FIFO or device cannot hang the open.
        follow: Whether a symbolic link at ``path`` is followed (``O_NOFOLLOW`` otherwise).
        what: How the file is named in an error.

    Raises:
        OSError: The file is not a regular file (or, without ``follow``, is a link), or the
            open failed.
    """
    extra = os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags | extra, 0o666)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO, errno.EMLINK):
            raise OSError(error.errno, f"{str(path)!r} is not a regular {what}: refused") from None
        raise
    try:
        check_regular(fd, path, what)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _no_kinds() -> dict[int, tuple[LockKind, str]]:
    return {}


@dataclass
class _Held:
    """The locks this process holds on one file."""

    kinds: dict[int, tuple[LockKind, str]] = field(default_factory=_no_kinds)  # token: kind, owner


_registry: dict[tuple[int, int], _Held] = {}
_registry_lock = threading.Lock()
_tokens = iter(range(1, 2**62))

# struct flock for F_OFD_SETLK: l_type, l_whence, l_start, l_len, l_pid (Linux layout).
_FLOCK = struct.Struct("hhqqi4x")
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)


def _conflicts(style: Style, held: LockKind, wanted: LockKind) -> bool:
    if "replace" in (held, wanted):
        return True
    if held == wanted == "read":
        return False
    if held == wanted == "write":
        return True
    return style == "hdf5"  # a reader and a writer


class FileLock:
    """A lock taken by :func:`acquire`; :meth:`release` lets it go (idempotent)."""

    def __init__(self, key: tuple[int, int], token: int, fd: int) -> None:
        self._key = key
        self._token = token
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """Whether the lock is still held."""
        return self._fd is not None

    def release(self) -> None:
        """Releases the lock."""
        with _registry_lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            held = _registry.get(self._key)
            if held is not None:
                held.kinds.pop(self._token, None)
                if not held.kinds:
                    del _registry[self._key]
            os.close(fd)  # the locks belong to this descriptor: they go with it


def held_here(status: os.stat_result) -> bool:
    """Whether this process holds a lock taken by :func:`acquire` on the file of ``status``."""
    with _registry_lock:
        return (status.st_dev, status.st_ino) in _registry


def _holders(status: os.stat_result) -> list[tuple[int, str]]:
    """(pid, 'READ' or 'WRITE') of the locks on the file, as far as the system lists them."""
    wanted = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    found: list[tuple[int, str]] = []
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                if "->" in fields:  # a waiting request, not a held lock
                    continue
                if len(fields) >= 6 and fields[5] == wanted:
                    try:
                        found.append((int(fields[4]), fields[3]))
                    except ValueError:
                        continue
    except OSError:
        pass
    return found


def _who(status: os.stat_result) -> str:
    holders = _holders(status)
    use = "writing" if any(use == "WRITE" for _, use in holders) else "reading"
    pids = sorted({pid for pid, _ in holders if pid > 0})
    if os.getpid() in pids:
        return f"open for {use} in this process (outside this library, for example by h5py.File)"
    if pids:
        return f"open for {use} in another process (pid {', '.join(map(str, pids))})"
    if holders:
        return f"open for {use} in another process"
    return "open in another process"


def _lock_os(fd: int, style: Style, kind: LockKind) -> None:
    # The byte lock first: if it fails, no lock of ours is listed beside the holder's.
    if style == "pickle" and kind != "write":
        lock_type = fcntl.F_RDLCK if kind == "read" else fcntl.F_WRLCK
        fcntl.fcntl(fd, _F_OFD_SETLK, _FLOCK.pack(lock_type, os.SEEK_SET, 0, 1, 0))
    if style == "hdf5" or kind != "read":
        operation = fcntl.LOCK_SH if kind == "read" else fcntl.LOCK_EX
        fcntl.flock(fd, operation | fcntl.LOCK_NB)


def acquire(fd: int, path: Path | str, kind: LockKind, style: Style, owner: str) -> FileLock:
    """Locks the open file ``fd`` for ``kind`` of use, without waiting.

    The lock is held on a duplicate of ``fd``, so closing ``fd`` does not release it.

    Args:
        fd: The open file.
        path: Its path, for messages.
        kind: What the caller will do.
        style: The storage format, which decides whether readers exclude a writer.
        owner: Who takes the lock, named to a later caller that is refused (for example
            ``'an HDF5Storage'``).

    Raises:
        BlockingIOError: The file is held in a way that excludes ``kind``; the message names
            the file and whether the holder is this process (and which storage) or another
            (with its pid when known).
    """
    status = os.fstat(fd)
    key = (status.st_dev, status.st_ino)
    with _registry_lock:
        held = _registry.get(key)
        if held is not None:
            for held_kind, held_owner in held.kinds.values():
                if _conflicts(style, held_kind, kind):
                    use = "reading" if held_kind == "read" else "writing"
                    raise BlockingIOError(
                        errno.EWOULDBLOCK,
                        f"{str(path)!r} is open for {use} in this process (by {held_owner})",
                    )
        lock_fd = os.dup(fd)
        try:
            _lock_os(lock_fd, style, kind)
        except OSError as error:
            os.close(lock_fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise BlockingIOError(errno.EWOULDBLOCK, f"{str(path)!r} is {_who(status)}") from None
        token = next(_tokens)
        _registry.setdefault(key, _Held()).kinds[token] = (kind, owner)
        return FileLock(key, token, lock_fd)


class LockedFileIO(io.FileIO):
    """A raw file that releases a :class:`FileLock` when it is closed."""

    def __init__(self, fd: int, mode: str, lock: FileLock) -> None:
        super().__init__(fd, mode)
        self.lock = lock

    def close(self) -> None:
        """Closes the file and releases its lock."""
        try:
            super().close()
        finally:
            self.lock.release()


def open_locked(path: Path, mode: str) -> IO[bytes]:
    """Opens a pickle record file and locks it, before anything on disk changes.

    Mode ``'r'`` reads (beside one appending writer); ``'a'`` appends, creating the file, as
    the only writer; ``'w'`` empties or creates the file, as its only user. A file that is not
    regular is refused at once.

    Raises:
        BlockingIOError: The file is held in a conflicting mode (see :func:`acquire`).
        OSError: The file is not a regular file.
    """
    flags = {
        "r": os.O_RDONLY,
        "w": os.O_RDWR | os.O_CREAT,
        "a": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    }
    fd = open_regular(path, flags[mode])
    try:
        kind: LockKind = "read" if mode == "r" else "write" if mode == "a" else "replace"
        lock = acquire(fd, path, kind, "pickle", "a PickleStorage")
    except BaseException:
        os.close(fd)
        raise
    try:
        if mode == "w":
            os.ftruncate(fd, 0)
        raw = LockedFileIO(fd, "rb" if mode == "r" else "r+b", lock)
    except BaseException:
        os.close(fd)
        lock.release()
        raise
    if mode == "r":
        return cast("IO[bytes]", io.BufferedReader(raw))
    return cast("IO[bytes]", io.BufferedRandom(raw))
