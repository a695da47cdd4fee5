"""The sidecar journal's record: its byte format, and the checks that bind it to its file.

A journal is a header (magic, the inode and size of the file it belongs to, the length of the
body), the operations (writes and truncations), and a checksum of both. :mod:`corelay.io.journal`
writes and replays them; this module only encodes, parses and checks them.
"""

import errno
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import Literal

import xxhash

from corelay.io._lock import open_regular

__all__ = [
    "MAGIC",
    "Operation",
    "check_journal_slot",
    "encode_journal",
    "journal_path",
    "journal_pieces",
    "parse_journal",
    "read_journal",
    "replayable",
    "warn_foreign",
]

MAGIC = b"corelay-journal-3\n"
# magic, inode of the file, its size before the journal is applied, length of the operations
_HEADER = struct.Struct(f"<{len(MAGIC)}sQQQ")
_OPERATION = struct.Struct("<QQ")  # offset, length of the data; _TRUNCATE: a truncation
_TRUNCATE = 2**64 - 1
_CHECKSUM = struct.Struct("<Q")
# Offsets and sizes beyond this are not from a real file: a crafted journal, refused whole.
_MAX_OFFSET = 2**62

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
    return b"".join(journal_pieces(operations, inode, size))


def journal_pieces(operations: list[Operation], inode: int = 0, size: int = 0) -> list[bytes]:
    """The journal of ``operations`` as consecutive pieces, for one gathering write.

    Their concatenation is :func:`encode_journal`'s result; the data of the operations are
    pieces of their own, not copied into one body.

    Args:
        operations: What the journal does to the file, in order.
        inode: The inode number of the file it belongs to.
        size: The file's size before the operations are applied.
    """
    pieces = [b""]  # the header, once the body's length is known
    length = 0
    checksum = xxhash.xxh3_64(_HEADER.pack(MAGIC, inode, size, 0))
    for offset, data in operations:
        if data is None:
            head = _OPERATION.pack(offset, _TRUNCATE)
            checksum.update(head)
            pieces.append(head)
            length += len(head)
        else:
            head = _OPERATION.pack(offset, len(data))
            checksum.update(head)
            checksum.update(data)
            pieces += (head, data)
            length += len(head) + len(data)
    pieces[0] = _HEADER.pack(MAGIC, inode, size, length)
    pieces.append(_CHECKSUM.pack(checksum.intdigest()))
    return pieces


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


def parse_journal(data: bytes) -> "_Journal | Literal[False] | None":
    """The complete journal in ``data``.

    Returns:
        ``None`` if it is incomplete or spent (as a killed writer leaves it); ``False`` if it
        is complete but malformed (crafted).
    """
    if len(data) < _HEADER.size:
        return None
    magic, inode, size, length = _HEADER.unpack_from(data)
    if magic != MAGIC or length > len(data):
        return None
    end = _HEADER.size + length
    if len(data) < end + _CHECKSUM.size:
        return None
    body = data[_HEADER.size : end]
    summed = _HEADER.pack(MAGIC, inode, size, 0) + body
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


def read_journal(path: Path) -> bytes | None:
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


def check_journal_slot(path: Path) -> None:
    """Refuses a journal path that holds anything but a regular file (or nothing)."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(status.st_mode):
        raise OSError(errno.EINVAL, f"{str(path)!r} is not a regular journal file: refused")


def warn_foreign(path: Path, stacklevel: int = 4) -> None:
    warnings.warn(
        f"{str(path)!r} does not belong to its file (copied from another file, or crafted): "
        "ignored",
        RuntimeWarning,
        stacklevel=stacklevel,
    )


def replayable(path: Path, status: os.stat_result) -> bool:
    """Tells whether the file at ``path``, of ``status``, has a journal to replay.

    A journal bound to another file is ignored with a :class:`RuntimeWarning`.

    Raises:
        OSError: The journal is a link, a FIFO or anything else but a regular file.
    """
    data = read_journal(journal_path(path))
    journal = None if data is None else parse_journal(data)
    if journal is not None and (journal is False or not journal.binds(status)):
        warn_foreign(journal_path(path), stacklevel=5)  # the warning names the caller's caller
        return False
    return journal is not None
