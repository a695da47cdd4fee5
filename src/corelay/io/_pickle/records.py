"""The file of records: indexed on open, one record unpickled per read, appended per write."""

import contextlib
import io
import mmap
import os
import secrets
import weakref
from pathlib import Path
from typing import IO, Any

from corelay.io import _lock
from corelay.io._pickle.form import NODE_SLACK, NODES_PER_OPCODE, check_record, plain, read_form
from corelay.io._pickle.mapped import load_mapped
from corelay.io._pickle.safe import (
    PROTOCOL,
    CorruptRecordError,
    RefusedValueError,
    TreePickler,
    unpickle,
)
from corelay.io._pickle.scan import DELETED_FIELD, Incomplete, Walker, file_size, scan
from corelay.io.tree import Node

# ---------------------------------------------------------------------------------- the file


class RecordFile:
    """An open record file and the index of its keys.

    Args:
        path: The file.
        mode: ``'r'``, ``'w'`` or ``'a'`` (already checked).

    Raises:
        CorruptRecordError: The file is not a record file.
        RefusedGlobalError: See :func:`scan`.
    """

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self.mode = mode
        self.file: IO[bytes] = _lock.open_locked(path, mode)
        self.index: dict[str, int] = {}
        if mode == "w":
            return
        try:
            self.index, end = scan(self.file, path)
            if mode == "a" and end < file_size(self.file):
                # Appending after a torn record would bury it inside the file.
                self.file.truncate(end)
        except BaseException:
            self.file.close()
            raise

    def load(
        self, key: str, *, checked: bool = True, max_depth: int | None = None, mapped: bool = False
    ) -> Any:
        """Reads the value of ``key`` from its last record, as storages return trees.

        Args:
            key: The key.
            mapped: Whether arrays of 64 KiB or more written in band by protocol 5 (as this
                library writes them) are memory-mapped from the file, read-only, instead of
                read. The file stays locked against being emptied while any of them lives.
            checked: Whether to raise unless the value is a stored tree or one of the plain
                values of corelay 1.0.0 files (see :func:`read_form`); without the check, a
                value loaded with the allowed globals alone may hold, say, a ``bytearray``.
            max_depth: The most containers the value may nest, or ``None`` for any depth.

        Raises:
            KeyError: ``key`` has no record.
            RefusedGlobalError: The record references a global that is not allowed.
            RefusedValueError: The record holds an object array.
            CorruptRecordError: The record does not hold ``key``, or a value storages return,
                or it is built to take work or memory out of proportion to its size.
        """
        offset = self.index[key]
        where = f"{str(self.path)!r}, record at byte {offset}"
        # Walked again (metadata only) before unpickling: the checks of memo indexes, frames
        # and lengths that bound the memory of the unpickler, and the opcode count that bounds
        # the tree, hold for the bytes in the file now.
        self.file.seek(offset)
        walker = Walker(self.file, file_size(self.file))
        try:
            walker.walk()
        except Incomplete:
            raise CorruptRecordError(f"{where}: the record ends with the file") from None
        except Exception as error:  # Malformed, or what damaged arguments make readers raise
            raise CorruptRecordError(f"{where}: not a pickle ({error})") from None
        self.file.seek(offset)
        record = self._load_mapped(offset, where) if mapped else unpickle(self.file, where)
        found, data = check_record(record, where)
        if found != key:
            raise CorruptRecordError(f"{where}: holds key {found!r}, not {key!r}")
        limit = NODE_SLACK + NODES_PER_OPCODE * walker.ops
        try:
            return read_form(data, limit=limit, checked=checked, max_depth=max_depth)
        except (CorruptRecordError, RefusedValueError) as error:
            raise type(error)(f"{where}: {error}") from None

    def _load_mapped(self, offset: int, where: str) -> object:
        status = os.fstat(self.file.fileno())
        # The mapping gets its own open file: one made from the storage's descriptor would keep
        # the storage's lock as long as the mapping lives.
        try:
            fd = _lock.open_regular(self.path, os.O_RDONLY)
        except OSError:
            return unpickle(self.file, where)
        try:
            if (os.fstat(fd).st_ino, os.fstat(fd).st_dev) != (status.st_ino, status.st_dev):
                return unpickle(self.file, where)  # the path names another file by now
            # A shared lock for as long as the mapping lives: a writer that would empty the
            # file (mode 'w') is refused meanwhile, so no mapped page vanishes under an array.
            lock = _lock.acquire(fd, self.path, "read", "pickle", "arrays mapped by PickleStorage")
            try:
                mapping = mmap.mmap(fd, status.st_size, access=mmap.ACCESS_READ)
            except BaseException:
                lock.release()
                raise
        finally:
            os.close(fd)
        weakref.finalize(mapping, lock.release)
        return load_mapped(mapping, offset, where)

    def append(self, key: str, value: Any, node: Node) -> None:
        """Appends a record of the validated ``value``, described by ``node``, and flushes it.

        If writing fails part way, the partial record is cut off the file again; if even that
        fails, the file is closed (the next open ignores the torn record).
        """
        self.index[key] = self._append({"data": plain(value, node), "key": key})

    def delete(self, key: str) -> None:
        """Appends the tombstone of ``key`` and flushes it; the key leaves the index.

        If writing fails part way, the partial record is cut off the file again, as by
        :meth:`append`.
        """
        self._append({"data": None, "key": key, DELETED_FIELD: True})
        self.index.pop(key, None)

    def _append(self, record: dict[str, object]) -> int:
        """Appends ``record`` and flushes it; returns the offset where it starts."""
        file = self.file
        start = file.seek(0, io.SEEK_END)
        try:
            TreePickler(file, PROTOCOL).dump(record)
            file.flush()
        except BaseException:
            try:
                file.seek(start)
                file.truncate()
            except BaseException:
                file.close()
                raise
            raise
        return start

    def compact(self) -> int:
        """Rewrites the file with the last record of each key only, and returns the bytes saved.

        The live records are copied, in the order their keys first appeared, to a new file
        beside this one, locked before it is written; the new file then replaces this one in
        one rename (a kill before it leaves the old file, after it the new one). The open file
        object is moved onto the new file, so views of the storage go on using it; readers
        that opened the old file keep reading the old one.

        Raises:
            OSError: The new file could not be written (this file is then unchanged).
        """
        file = self.file
        file.flush()
        old_fd = file.fileno()
        before = os.fstat(old_fd)
        prefix = f".{self.path.name}.corelay-compact-"
        for stale in self.path.parent.glob(prefix + "*"):  # left by a killed compaction
            with contextlib.suppress(OSError):
                stale.unlink()
        temporary = self.path.with_name(prefix + secrets.token_hex(6))
        new_fd = _lock.open_regular(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, follow=False)
        try:
            kind: _lock.LockKind = "replace" if self.mode == "w" else "write"
            new_lock = _lock.acquire(new_fd, temporary, kind, "pickle", "a PickleStorage")
        except BaseException:
            os.close(new_fd)
            temporary.unlink(missing_ok=True)
            raise
        try:
            index = self._copy_live(old_fd, new_fd)
            os.fchmod(new_fd, before.st_mode & 0o7777)
            os.replace(temporary, self.path)
        except BaseException:
            os.close(new_fd)
            new_lock.release()
            temporary.unlink(missing_ok=True)
            raise
        # The file object's descriptor now names the new file; the old file's lock goes with
        # the old descriptor.
        raw = file.raw if isinstance(file, io.BufferedRandom) else None
        os.dup2(new_fd, old_fd)
        os.close(new_fd)
        if isinstance(raw, _lock.LockedFileIO):
            old_lock, raw.lock = raw.lock, new_lock
            old_lock.release()
        file.seek(0, io.SEEK_END)
        self.index = index
        return before.st_size - os.fstat(old_fd).st_size

    def _copy_live(self, source: int, target: int) -> dict[str, int]:
        """Copies the last record of each key from ``source`` to ``target``; the new index."""
        size = os.fstat(source).st_size
        index: dict[str, int] = {}
        written = 0
        for key, start in self.index.items():
            self.file.seek(start)
            walker = Walker(self.file, size)
            walker.walk()
            end = self.file.tell()
            index[key] = written
            position = start
            while position < end:  # a chunk at a time: records may hold big arrays
                chunk = os.pread(source, min(_COPY_BYTES, end - position), position)
                if not chunk:
                    raise OSError(f"{str(self.path)!r} ended inside the record at byte {start}")
                view = memoryview(chunk)
                while view:
                    done = os.pwrite(target, view, written)
                    view, written = view[done:], written + done
                position += len(chunk)
        return index


_COPY_BYTES = 8 << 20
