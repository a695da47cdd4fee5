"""HDF5Storage: the key-value store of the HDF5 format."""

import os
import re
from collections.abc import KeysView
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
from h5py import h5d, h5g, h5s
from numpy.typing import NDArray

from corelay._typecheck import typechecked
from corelay.io import _hdf5
from corelay.io._base import Mode
from corelay.io._file_storage import FileStorage
from corelay.io._hdf5.layout import PLAIN_KINDS, memory_type, str_attr
from corelay.io._hdf5.lazy import DatasetSource
from corelay.io._hdf5.write import Compression, check_compression, create_resizable
from corelay.io._keys import TEMP_PREFIX, Key
from corelay.io.errors import NoDataSource
from corelay.io.lazy import LazyArray
from corelay.io.tree import Node, TreeInput, validate

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

    Big arrays: numeric arrays can be stored compressed (``compression``, chunked in chunks of
    about 1 MiB along the first axis), grown batch by batch (:meth:`append`), and read a slice
    at a time (:meth:`lazy`). Replacing a value writes its arrays once, where the old ones were
    once that is committed: the journal only holds HDF5's metadata.
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
        self,
        path: str | os.PathLike[str],
        mode: Mode = "r",
        data_key: str | None = None,
        *,
        compression: Compression = None,
    ) -> None:
        """Opens the HDF5 file.

        Args:
            path: The file.
            mode: ``'r'`` reads an existing file; ``'w'`` creates the file, replacing an existing
                one; ``'a'`` reads and writes, creating the file if it does not exist (or is
                empty).
            data_key: The key to address; may be given later with :meth:`at` or ``[]``.
            compression: How the numeric arrays it writes are compressed, unless a write says
                otherwise: ``None`` (stored as they are), ``'gzip'`` or ``'lzf'`` (which h5py
                reads with no plugin), or ``'zstd'`` (needs the ``zstd`` extra, hdf5plugin, to
                write and to read). Arrays of a few kilobytes or less are never compressed.

        Raises:
            ValueError: ``mode`` is not ``'r'``, ``'w'`` or ``'a'``, or ``data_key`` is invalid.
            ImportError: ``compression='zstd'`` without hdf5plugin.
            TypeError: An unknown parameter, a value of the wrong type, or an unknown
                ``compression``.
            FileNotFoundError: ``mode`` is ``'r'`` and the file does not exist.
            BlockingIOError: Another storage holds the file in a conflicting mode (the message
                says which process).
            OSError: The path is not an HDF5 file: a directory, a FIFO or other special file,
                an empty file (for ``'r'``), a truncated or damaged file, or a file of another
                format. The message is one line naming the path and the cause.
        """
        check_compression(compression)
        super().__init__(path, mode, data_key)
        self._compression: Compression = compression
        self.io = _open_hdf5(self.path, self.mode)

    @property
    def compression(self) -> Compression:
        """The default compression of the arrays this storage writes.

        It applies to ``storage[key] = value``, :meth:`write` (unless it says otherwise) and
        the first :meth:`append` of a key. Views made by :meth:`at` start with the storage's;
        assigning an unknown value is a :class:`TypeError`.
        """
        return self._compression

    @compression.setter
    def compression(self, compression: Compression) -> None:
        check_compression(compression)
        self._compression = compression

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

    def write(
        self,
        data_out: TreeInput,
        data_in: Any = None,
        meta: Any = None,
        *,
        compression: Compression | Literal["default"] = "default",
    ) -> None:
        """Stores ``data_out`` at :attr:`data_key`, replacing what was there.

        Args:
            data_out: The tree: arrays, scalars, str, bytes, None, and dicts (str keys), tuples
                and lists of them, at any depth.
            data_in: Unused.
            meta: Unused.
            compression: How this write compresses its numeric arrays (see the constructor);
                ``'default'``: as :attr:`compression` says.

        Raises:
            NoDataTarget: The storage was opened read-only.
            TypeError: No data_key is set, a node of ``data_out`` cannot be stored (the
                message names its path), or ``compression`` is unknown.
            ValueError: The storage is closed, the key or a dict key is invalid, or a group on
                the key's path is a dataset.
            ImportError: ``compression='zstd'`` without hdf5plugin.
        """
        if compression == "default":
            compression = self._compression
        else:
            check_compression(compression)
        key = self._checked(self._key())
        self._check_writable()
        _write_tree(
            self.io, key, data_out, validate(data_out, any_text=self._any_text), compression
        )

    def _write_key(self, key: Key, tree: TreeInput, node: Node) -> None:
        _write_tree(self.io, key, tree, node, self._compression)

    def append(self, key: str, batch: NDArray[Any]) -> tuple[int, ...]:
        """Appends ``batch`` to the array at ``key`` along its first axis.

        The first append creates the array, chunked (about 1 MiB per chunk), compressed as
        :attr:`compression` says, and resizable along the first axis; reading the key returns
        the whole array, and :meth:`lazy` a part of it. Each append is durable like a write:
        when it returns, the batch is in the file, and a process killed during an append leaves
        the array as it was before it (whole batches only). Everything is checked before the
        file changes.

        Args:
            key: Where the array is (``'a/b'`` for nested groups).
            batch: Rows to append: a numeric array of the array's dtype, of one or more
                dimensions, whose shape past the first axis is the array's.

        Returns:
            The array's shape after the append.

        Raises:
            NoDataTarget: The storage was opened read-only.
            TypeError: ``batch`` is not a numeric array, or its dtype is not the array's, or
                ``key`` holds something else than an array made by :meth:`append` (a group, a
                scalar, an array of fixed size written whole).
            ValueError: ``batch`` is 0-d or its shape past the first axis is not the array's,
                the key is invalid, or the storage is closed.
        """
        checked = self._checked(key)
        self._check_writable()
        where = f"append to {key!r} in {str(self.path)!r}"
        if batch.dtype.kind not in PLAIN_KINDS or batch.dtype.fields is not None:
            raise TypeError(f"{where}: batch has dtype {batch.dtype}, not a numeric dtype")
        if batch.ndim == 0:
            raise ValueError(f"{where}: batch is 0-d; it needs an axis to append along")
        found = _hdf5.find(self.io, checked.names, self.follow_external)
        dataset = None if found is None else _appendable(found, batch, where)
        with _hdf5.interrupts_deferred():
            try:
                if dataset is None:
                    *group_names, name = checked.names
                    parent = _parent_group(self.io, group_names, key)
                    dataset = create_resizable(parent.id, name.encode(), batch, self._compression)
                    shape = batch.shape
                else:
                    shape = _grow(dataset, batch)
                self.io.flush()
            except BaseException:
                _hdf5.roll_back(self.io)  # the batch goes whole or not at all
                raise
        return tuple(int(length) for length in shape)

    def lazy(self, key: str | None = None) -> Any:
        """Returns the tree at ``key`` with every numeric array a :class:`LazyArray`.

        Nothing of those arrays is read until they are indexed: a slice reads only the chunks
        it touches. Other leaves (scalars, str, bytes, string arrays) are read as :meth:`read`
        reads them. The arrays are read-only and usable until the storage is closed.

        Args:
            key: The key; defaults to :attr:`data_key`.

        Raises:
            NoDataSource: Nothing, or an incomplete entry, is stored at the key.
            UnreadableNodeError: A node the library does not read (see :meth:`read`).
            TypeError: No key is given and no data_key is set.
            ValueError: The storage is closed, or the key is invalid.
        """
        checked = self._checked(key if key is not None else self._key())
        limits = self._read_limits()
        found = _hdf5.find(self.io, checked.names, limits.external)
        if found is None:
            raise NoDataSource(f"no data at key {checked.text!r} in {str(self.path)!r}")
        io = self.io
        file = str(self.path)

        def alive() -> bool:
            return bool(io.id.valid)

        def leaf(dataset: h5d.DatasetID, path: str) -> LazyArray:
            source = DatasetSource(
                dataset, f"{path!r} in {file!r}", alive, max_bytes=limits.max_bytes
            )
            return LazyArray(source)

        try:
            return _hdf5.read_node(found, limits, "/" + checked.text, leaf)
        except KeyError as error:
            raise NoDataSource(f"incomplete entry at key {checked.text!r}: {error}") from error

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


def _grow(dataset: h5d.DatasetID, batch: np.ndarray[Any, Any]) -> tuple[int, ...]:
    """Appends ``batch`` to the resizable ``dataset`` and returns its new shape."""
    shape = dataset.shape
    assert shape is not None
    start = shape[0]
    grown = (start + batch.shape[0], *shape[1:])
    if batch.shape[0] == 0:
        return shape
    dataset.set_extent(grown)
    space = dataset.get_space()
    space.select_hyperslab((start,) + (0,) * (len(shape) - 1), batch.shape)
    data = np.ascontiguousarray(batch)  # a copy only if the caller's batch is strided
    dataset.write(h5s.create_simple(batch.shape), space, data, memory_type(data.dtype))
    return grown


def _appendable(found: Any, batch: np.ndarray[Any, Any], where: str) -> h5d.DatasetID:
    """The array at the key, if ``batch`` can be appended to it; refused otherwise."""
    if not isinstance(found, h5d.DatasetID):
        raise TypeError(f"{where}: the key holds a group, not an array to append to")
    kind = str_attr(found, _hdf5.KIND_ATTR, scalar_only=True)
    maximum = found.get_space().get_simple_extent_dims(True)
    shape = found.shape
    if (
        kind not in (None, "ndarray")
        or not shape
        or found.dtype.kind not in PLAIN_KINDS
        or maximum[0] != h5s.UNLIMITED
    ):
        raise TypeError(
            f"{where}: the key holds a {kind or 'dataset'} of shape {shape}, not an array "
            "made by append (resizable along its first axis)"
        )
    if found.dtype.newbyteorder("=") != batch.dtype.newbyteorder("="):
        raise TypeError(f"{where}: batch has dtype {batch.dtype}, the array {found.dtype}")
    if batch.shape[1:] != shape[1:] or batch.ndim != len(shape):
        raise ValueError(
            f"{where}: batch has shape {batch.shape}, the array {shape}: the shapes past "
            "the first axis differ"
        )
    return found


def _write_tree(
    io: h5py.File, key: Key, tree: TreeInput, node: Node, compression: Compression
) -> None:
    """Writes the validated ``tree`` at ``key`` of the file ``io``, replacing what was there.

    A function, not a method: the storage's methods are checked at run time, and the tree was
    checked already.
    """
    with _hdf5.interrupts_deferred():
        try:
            *group_names, name = key.names
            parent = _parent_group(io, group_names, key.text)
            with _hdf5.replacing(parent.id, name.encode()) as target:
                _hdf5.write_node(parent, target.decode(), tree, node, compression)
            io.flush()
        except BaseException:
            # Until the flush, nothing reached the file's committed state (see
            # corelay.io.journal): dropping HDF5's cache returns to the last returned write,
            # whatever step failed (a full disk, an exception, an interrupt).
            _hdf5.roll_back(io)
            raise


def _parent_group(io: h5py.File, names: list[str], key: str) -> h5py.Group:
    """The group that holds ``key``, made (with the groups on its way) if missing."""
    group: h5py.Group = io
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
