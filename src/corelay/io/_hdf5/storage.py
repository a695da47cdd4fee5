"""HDF5Storage: the key-value store of the HDF5 format."""

import os
import re
from collections.abc import KeysView
from pathlib import Path
from typing import Any

import h5py
from h5py import h5g

from corelay._typecheck import typechecked
from corelay.io import _hdf5
from corelay.io._base import FileStorage, Mode
from corelay.io._keys import TEMP_PREFIX, Key
from corelay.io.errors import NoDataSource
from corelay.io.tree import Node, TreeInput

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TRUNCATED = re.compile(r"truncated file: eof = (\d+).*stored_eof = (\d+)")


def _open_hdf5(path: Path, mode: Mode) -> h5py.File:
    """Opens ``path`` journaled; HDF5's refusal to open it becomes one readable line."""
    try:
        return _hdf5.open_journaled(path, mode)
    except OSError as error:
        if error.errno is not None:  # the library's and the system's own messages are clear
            raise
        problem = _not_hdf5(path, str(error))
    raise OSError(f"{str(path)!r} {problem}")


def _not_hdf5(path: Path, reason: str) -> str:
    """What is wrong with the file HDF5 refused to open, in words (``reason`` is HDF5's)."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size == 0:
                return "is empty, not an HDF5 file"
            # HDF5 looks for its signature at the start and at 512, 1024, 2048... bytes.
            offset, signed = 0, False
            while offset < size and not signed:
                file.seek(offset)
                signed = file.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
                offset = 512 if offset == 0 else offset * 2
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    if not signed:
        return f"is not an HDF5 file (no HDF5 signature in its {size} bytes)"
    truncated = _TRUNCATED.search(reason)
    if truncated:
        return (
            f"is a truncated HDF5 file: {truncated[1]} bytes, where its header declares "
            f"{truncated[2]}"
        )
    return "is a damaged HDF5 file: it has the HDF5 signature, but HDF5 cannot open it"


@typechecked
class HDF5Storage(FileStorage):
    """A key-value store of result trees in an HDF5 file.

    Each key is a group or dataset at the top of the file (``'a/b'`` addresses nested groups).
    Dicts, tuples and lists become groups, leaves become datasets, and the node kind is recorded
    in an attribute so that every tree reads back exactly; files from other tools read as plain
    groups and datasets. A write validates the whole tree first, writes it (a replaced value
    beside the old one, swapped into place) and flushes the file, whose flushes are atomic (see
    :mod:`corelay.io.journal`): a key holds the old or the new value, never a mix, and a returned
    write survives the process being killed.
    """

    io: h5py.File
    """The open HDF5 file."""

    max_read_bytes: int = _hdf5.DEFAULT_MAX_READ_BYTES
    """The most bytes of data one read may declare beyond what the file holds for them (1 GiB).

    A chunked dataset declares a shape, not data: a file of a few kilobytes can declare
    terabytes of chunks never written (read as fill values) or compressed. What datasets declare
    beyond the bytes they take in the file counts against this limit, summed over one read;
    a read beyond it raises :class:`~corelay.io.storage.UnreadableNodeError` before allocating.
    Raise it for one storage (``storage.max_read_bytes = 8 << 30``; its views share it) or for
    all (``HDF5Storage.max_read_bytes = ...``) to read larger compressed or sparse datasets.
    """

    follow_external: bool = False
    """Whether reads follow external links and read virtual datasets and datasets stored in
    other files.

    Off by default: reading such a node raises :class:`~corelay.io.storage.UnreadableNodeError`
    naming it, so that a read never silently returns another file's data (or fill values for a
    source file that is missing). Set it to ``True`` on a storage (or on the class) to follow
    them.
    """

    _format = "HDF5"

    def __init__(
        self, path: str | os.PathLike[str], mode: Mode = "r", data_key: str | None = None
    ) -> None:
        """Opens the HDF5 file.

        Args:
            path: The file.
            mode: ``'r'`` reads an existing file; ``'w'`` creates the file, replacing an existing
                one; ``'a'`` reads and writes, creating the file if it does not exist (or is
                empty).
            data_key: The key to address; may be given later with :meth:`at` or ``[]``.

        Raises:
            ValueError: ``mode`` is not ``'r'``, ``'w'`` or ``'a'``, or ``data_key`` is invalid.
            TypeError: An unknown parameter or a value of the wrong type.
            FileNotFoundError: ``mode`` is ``'r'`` and the file does not exist.
            BlockingIOError: Another storage holds the file in a conflicting mode (the message
                says which process).
            OSError: The path is not an HDF5 file: a directory, a FIFO or other special file,
                an empty file (for ``'r'``), a truncated or damaged file, or a file of another
                format. The message is one line naming the path and the cause.
        """
        super().__init__(path, mode, data_key)
        self.io = _open_hdf5(self.path, self.mode)

    def _closed(self) -> bool:
        return not self.io.id.valid

    def _read_key(self, key: Key) -> Any:
        limits = self._read_limits()
        obj = _hdf5.find(self.io, key.names, limits.external)
        if obj is None:
            raise NoDataSource(f"no data at key {key.text!r} in {str(self.path)!r}")
        try:
            return _hdf5.read_node(obj, limits, "/" + key.text)
        except KeyError as error:
            raise NoDataSource(f"incomplete entry at key {key.text!r}: {error}") from error

    def _read_limits(self) -> _hdf5.ReadLimits:
        return _hdf5.ReadLimits(max_bytes=self.max_read_bytes, external=self.follow_external)

    def _write_key(self, key: Key, tree: TreeInput, node: Node) -> None:
        with _hdf5.interrupts_deferred():
            try:
                *group_names, name = key.names
                parent = self._parent_group(group_names, key.text)
                with _hdf5.replacing(parent.id, name.encode()) as target:
                    _hdf5.write_node(parent, target.decode(), tree, node)
                self.io.flush()
            except BaseException:
                # Until the flush, nothing reached the file's committed state (see
                # corelay.io.journal): dropping HDF5's cache returns to the last returned write,
                # whatever step failed (a full disk, an exception, an interrupt).
                _hdf5.roll_back(self.io)
                raise

    def _parent_group(self, names: list[str], key: str) -> h5py.Group:
        group: h5py.Group = self.io
        for depth, name in enumerate(names):
            where = "/".join(names[: depth + 1])
            # Membership is asked first: a lookup that fails goes through HDF5's error stack,
            # which a failed write's driver errors may have left unreadable.
            if not _hdf5.has_member(group, name):
                group = group.create_group(name)
                continue
            # A link out of the file on the key's path is refused, as reading refuses it.
            child = _hdf5.open_child(group, name, path=where)
            if not isinstance(child, h5py.Group):
                raise ValueError(f"cannot write key {key!r}: {where!r} is a dataset, not a group")
            group = child
        return group

    def _has_key(self, key: Key) -> bool:
        return _hdf5.find(self.io, key.names, self.follow_external) is not None

    def _delete_key(self, key: Key) -> None:
        *group_names, name = key.names
        parent = _hdf5.find(self.io, group_names, self.follow_external)
        if not isinstance(parent, h5g.GroupID):  # found with the key: cannot happen
            raise NoDataSource(f"no data at key {key.text!r} in {str(self.path)!r}")
        with _hdf5.interrupts_deferred():
            try:
                parent.unlink(name.encode())
                leftover = (TEMP_PREFIX + name).encode()
                if parent.links.exists(leftover):
                    parent.unlink(leftover)
                self.io.flush()
            except BaseException:
                # As for a write: the file returns to its last committed state.
                _hdf5.roll_back(self.io)
                raise

    def keys(self) -> KeysView[str]:
        """Lists the keys at the top level of the file, in the order h5py lists them.

        That is by name, or by creation in a file whose root group tracks creation order.

        Raises:
            ValueError: The storage is closed.
        """
        if self._closed():
            raise ValueError(f"I/O operation on a closed HDF5Storage ({str(self.path)!r})")
        names = self.io.keys()
        return KeysView({name: None for name in names if not name.startswith(TEMP_PREFIX)})
