"""Read and write the intermediate results of analysis pipelines in HDF5 and pickle files.

Every class of the reference API lives here; the file formats are implemented by one private
codec module per backend.
"""

import os
from abc import ABC, abstractmethod
from collections.abc import KeysView
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import h5py

from corelay._typecheck import typechecked
from corelay.base import Param
from corelay.io import _hdf5, _pickle
from corelay.io._hashed import HashedHDF5
from corelay.io._hdf5 import UnreadableNodeError
from corelay.io._keys import TEMP_PREFIX, split_key
from corelay.io.errors import NoDataSource, NoDataTarget
from corelay.io.journal import open_journaled, roll_back
from corelay.io.tree import (
    Node,
    RecursiveHashTuple,
    RecursiveNumPyArrayTuple,
    StringInfo,
    TreeInput,
    validate,
)
from corelay.plugboard import Plugboard, SlotValueError

__all__ = [
    "DataStorageBase",
    "HDF5Storage",
    "HashedHDF5",
    "NoDataSource",
    "NoDataTarget",
    "NoStorage",
    "PickleStorage",
    "RecursiveHashTuple",
    "RecursiveNumPyArrayTuple",
    "Storable",
    "StringInfo",
    "TreeInput",
    "UnreadableNodeError",
]

Mode = Literal["r", "w", "a"]
_MODES: dict[str, Mode] = {"r": "r", "w": "w", "a": "a"}


@runtime_checkable
class Storable(Protocol):
    """Anything with the ``read(data_in, meta)`` and ``write(data_out, data_in, meta)`` methods."""

    def read(self, data_in: Any, meta: Any) -> Any:
        """Returns the output that was produced from ``data_in`` with ``meta``, if stored.

        Raises:
            NoDataSource: Nothing is stored for them.
        """
        ...

    def write(self, data_out: Any, data_in: Any, meta: Any) -> None:
        """Stores ``data_out``, the output produced from ``data_in`` with ``meta``."""
        ...


def _check_mode(mode: str) -> Mode:
    checked = _MODES.get(mode)
    if checked is None:
        raise ValueError(f"invalid mode {mode!r}; expected 'r', 'w' or 'a'")
    return checked


@typechecked
class DataStorageBase(ABC, Plugboard):
    """The base class of key-value stores of result trees.

    A storage is a context manager; ``storage[key]``, ``storage[key] = value`` and
    ``key in storage`` address the entry at ``key``, and :meth:`at` gives a view on another key
    that shares the open file.
    """

    #: The underlying file object; ``None`` when the storage is not backed by a file.
    io: Any

    def __init__(self, **kwargs: Any) -> None:
        """Initializes the declared parameters.

        Args:
            **kwargs: Values of the parameters declared by the subclass.

        Raises:
            TypeError: An unknown parameter name, or a value of the wrong type.
        """
        super().__init__(**kwargs)
        self.io = None

    @abstractmethod
    def read(self, data_in: Any = None, meta: Any = None) -> Any:
        """Reads the stored data.

        Args:
            data_in: The input the data was produced from (unused by key-value stores).
            meta: Identifying information about the data (unused by key-value stores).

        Raises:
            NoDataSource: Nothing is stored.

        Returns:
            The stored data.
        """

    @abstractmethod
    def write(self, data_out: Any, data_in: Any = None, meta: Any = None) -> None:
        """Stores ``data_out``.

        Args:
            data_out: The data to store.
            data_in: The input the data was produced from (unused by key-value stores).
            meta: Identifying information about the data (unused by key-value stores).
        """

    @abstractmethod
    def exists(self) -> bool:
        """Tells whether data is stored.

        Returns:
            ``True`` if data is stored.
        """

    @abstractmethod
    def keys(self) -> KeysView[str]:
        """Lists the stored keys.

        Returns:
            The keys.
        """

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __getitem__(self, key: str) -> Any:
        """Reads the data stored at ``key``, whatever key this storage is set to."""
        return self.at(data_key=key).read()

    def __setitem__(self, key: str, value: TreeInput) -> None:
        """Stores ``value`` at ``key``, whatever key this storage is set to."""
        self.at(data_key=key).write(value)

    def __contains__(self, key: str) -> bool:
        """Tells whether data is stored at ``key``."""
        return self.at(data_key=key).exists()

    def __bool__(self) -> bool:
        """Tells whether the storage is backed by a store: ``True`` unless it is a NoStorage."""
        return True

    def close(self) -> None:
        """Closes the underlying file, for this storage and all views on it.

        Closing twice is harmless.
        """
        if self.io is not None:
            self.io.close()


@typechecked
class NoStorage(DataStorageBase):
    """A storage that stores nothing.

    Reading raises :class:`NoDataSource`, writing :class:`NoDataTarget`: a pipeline given one
    simply computes every step.
    """

    def __bool__(self) -> bool:
        """Returns ``False``: nothing backs this storage."""
        return False

    def read(self, data_in: Any = None, meta: Any = None) -> Any:
        """Raises :class:`NoDataSource`: nothing is ever stored.

        Args:
            data_in: Ignored.
            meta: Ignored.

        Raises:
            NoDataSource: Always.
        """
        raise NoDataSource()

    def write(self, data_out: Any, data_in: Any = None, meta: Any = None) -> None:
        """Raises :class:`NoDataTarget`: nothing can be stored.

        Args:
            data_out: Ignored.
            data_in: Ignored.
            meta: Ignored.

        Raises:
            NoDataTarget: Always.
        """
        raise NoDataTarget()

    def exists(self) -> bool:
        """Raises :class:`NoDataSource`: there is no store to look in.

        Raises:
            NoDataSource: Always.
        """
        raise NoDataSource()

    def keys(self) -> KeysView[str]:
        """Raises :class:`NoDataSource`: there is no store to list.

        Raises:
            NoDataSource: Always.
        """
        raise NoDataSource()

    def at(self, **kwargs: Any) -> Self:
        """Returns this storage: a NoStorage has no parameters that could differ.

        Args:
            **kwargs: None accepted.

        Raises:
            TypeError: Any keyword argument: a NoStorage has no parameters.
        """
        for name in kwargs:
            raise TypeError(f"NoStorage has no parameter {name!r}; parameters: none")
        return self

    # A key addresses nothing here: reading and writing raise what they always raise.
    def __getitem__(self, key: str) -> Any:
        """Raises :class:`NoDataSource`: nothing is ever stored."""
        raise NoDataSource()

    def __setitem__(self, key: str, value: TreeInput) -> None:
        """Raises :class:`NoDataTarget`: nothing can be stored."""
        raise NoDataTarget()

    def __contains__(self, key: str) -> bool:
        """Raises :class:`NoDataSource`: there is no store to look in."""
        raise NoDataSource()


@typechecked
class _FileStorage(DataStorageBase):
    """What the file storages share: a file, a mode, and a key to address.

    The public methods check the storage and the key and validate trees; a subclass implements
    them for one file format with ``_read_key``, ``_write_key`` and ``_has_key``.
    """

    data_key: Annotated[str, Param(str)]
    """The key that :meth:`read`, :meth:`write` and :meth:`exists` address.

    A :class:`~corelay.base.Param`: read on the class, it is the parameter; assigning a value
    that is not a ``str`` is a :class:`TypeError`; reading it before it is set is a
    :class:`TypeError` too.
    """

    _format: ClassVar[str]
    # Whether the format stores every str exactly (NUL characters and lone surrogates too).
    _any_text: ClassVar[bool] = False

    def __init__(self, path: str | Path, mode: str, data_key: str | None, **kwargs: Any) -> None:
        self.mode: Mode = _check_mode(mode)
        """The mode the file was opened in, ``'r'``, ``'w'`` or ``'a'``."""
        if data_key is not None:
            kwargs["data_key"] = data_key
        super().__init__(**kwargs)
        if data_key is not None:
            split_key(data_key)
        if mode == "r" and not os.path.exists(path):
            raise FileNotFoundError(f"no {self._format} file at {str(path)!r}")
        self.path = Path(path)
        """The file, as given when the storage was opened."""

    @abstractmethod
    def _closed(self) -> bool: ...

    @abstractmethod
    def _read_key(self, key: str, names: list[str]) -> Any: ...

    @abstractmethod
    def _write_key(self, key: str, names: list[str], tree: TreeInput, node: Node) -> None: ...

    @abstractmethod
    def _has_key(self, key: str, names: list[str]) -> bool: ...

    def _key(self) -> str | None:
        try:
            return self.data_key
        except SlotValueError:  # not set, no default
            return None

    def __bool__(self) -> bool:
        """Tells whether the storage is open: ``False`` once it is closed."""
        return not self._closed()

    def _checked(self, key: str | None) -> tuple[str, list[str]]:
        if self._closed():
            raise ValueError(
                f"I/O operation on a closed {type(self).__name__} ({str(self.path)!r})"
            )
        if key is None:
            raise TypeError(
                f"{type(self).__name__} has no data_key: set it, or use storage[key] or at()"
            )
        return key, split_key(key)

    def _write_checked(self, key: str | None, tree: TreeInput) -> None:
        checked, names = self._checked(key)
        if self.mode == "r":
            raise NoDataTarget(f"{type(self).__name__} {str(self.path)!r} is open read-only ('r')")
        self._write_key(checked, names, tree, validate(tree, any_text=self._any_text))

    def read(self, data_in: Any = None, meta: Any = None) -> Any:
        """Reads the tree stored at :attr:`data_key`.

        Args:
            data_in: Unused.
            meta: Unused.

        Raises:
            NoDataSource: Nothing, or an incomplete entry, is stored at the key.
            UnreadableNodeError: (HDF5, a ``ValueError``) A node the library does not read,
                named by its path: an external link or virtual dataset (unless followed), a soft
                link to nothing or in a loop, shared or cyclic groups, a named datatype, a
                member name that is not UTF-8, an unknown kind attribute, nesting deeper than
                ``MAX_DEPTH``, or more declared data than ``max_read_bytes``.
            TypeError: No data_key is set.
            ValueError: The storage is closed, or the key is invalid.

        Returns:
            The tree: dicts as ``OrderedDict``, tuples, lists, arrays and scalars as written.
        """
        return self._read_key(*self._checked(self._key()))

    def write(self, data_out: TreeInput, data_in: Any = None, meta: Any = None) -> None:
        """Stores ``data_out`` at :attr:`data_key`, replacing what was there.

        Args:
            data_out: The tree: arrays, scalars, str, bytes, None, and dicts (str keys), tuples
                and lists of them, at any depth.
            data_in: Unused.
            meta: Unused.

        Raises:
            NoDataTarget: The storage was opened read-only.
            TypeError: No data_key is set, or a node of ``data_out`` cannot be stored (the
                message names its path).
            ValueError: The storage is closed, the key or a dict key is invalid, or a group on
                the key's path is a dataset.
        """
        self._write_checked(self._key(), data_out)

    def exists(self) -> bool:
        """Tells whether data is stored at :attr:`data_key`.

        Raises:
            TypeError: No data_key is set.
            ValueError: The storage is closed, or the key is invalid; for HDF5 an
                :class:`UnreadableNodeError` when the key's path goes through a link the storage
                does not follow (see :attr:`HDF5Storage.follow_external`).
        """
        return self._has_key(*self._checked(self._key()))

    # Faster than the base class's view made with at(), and the same.
    def __getitem__(self, key: str) -> Any:
        """Reads the data stored at ``key``, whatever key this storage is set to.

        Raises:
            NoDataSource: Nothing, or an incomplete entry, is stored at ``key``.
            TypeError: ``key`` is not a str.
            ValueError: The storage is closed, or ``key`` is invalid.
        """
        return self._read_key(*self._checked(key))

    def __setitem__(self, key: str, value: TreeInput) -> None:
        """Stores ``value`` at ``key``, whatever key this storage is set to.

        Raises:
            NoDataTarget: The storage was opened read-only.
            TypeError: ``key`` is not a str, or a node of ``value`` cannot be stored (the
                message names its path).
            ValueError: The storage is closed, ``key`` or a dict key is invalid, or a group on
                the key's path is a dataset.
        """
        self._write_checked(key, value)

    def __contains__(self, key: str) -> bool:
        """Tells whether data is stored at ``key``.

        Raises:
            TypeError: ``key`` is not a str.
            ValueError: The storage is closed, or ``key`` is invalid.
        """
        return self._has_key(*self._checked(key))


@typechecked
class HDF5Storage(_FileStorage):
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
        self, path: str | Path, mode: str = "r", data_key: str | None = None, **kwargs: Any
    ) -> None:
        """Opens the HDF5 file.

        Args:
            path: The file.
            mode: ``'r'`` reads an existing file; ``'w'`` creates the file, replacing an existing
                one; ``'a'`` reads and writes, creating the file if it does not exist.
            data_key: The key to address; may be given later with :meth:`at` or ``[]``.
            **kwargs: Other parameters of the storage.

        Raises:
            ValueError: ``mode`` is not ``'r'``, ``'w'`` or ``'a'``, or ``data_key`` is invalid.
            TypeError: An unknown parameter or a value of the wrong type.
            FileNotFoundError: ``mode`` is ``'r'`` and the file does not exist.
        """
        super().__init__(path, mode, data_key, **kwargs)
        self.io = open_journaled(path, self.mode)

    def _closed(self) -> bool:
        return not self.io.id.valid

    def _read_key(self, key: str, names: list[str]) -> Any:
        limits = self._read_limits()
        obj = _hdf5.find(self.io, names, limits.external)
        if obj is None:
            raise NoDataSource(f"no data at key {key!r} in {str(self.path)!r}")
        try:
            return _hdf5.read_node(obj, limits, "/" + key)
        except KeyError as error:
            raise NoDataSource(f"incomplete entry at key {key!r}: {error}") from error

    def _read_limits(self) -> _hdf5.ReadLimits:
        return _hdf5.ReadLimits(max_bytes=self.max_read_bytes, external=self.follow_external)

    def _write_key(self, key: str, names: list[str], tree: TreeInput, node: Node) -> None:
        with _hdf5.interrupts_deferred():
            try:
                self._swap_in(names, tree, node, key)
                self.io.flush()
            except BaseException:
                # Until the flush, nothing reached the file's committed state (see
                # corelay.io.journal): dropping HDF5's cache returns to the last returned write,
                # whatever step failed (a full disk, an exception, an interrupt).
                roll_back(self.io)
                raise

    def _swap_in(self, names: list[str], tree: TreeInput, node: Node, key: str) -> None:
        *group_names, name = names
        parent = self._parent_group(self.io, group_names, key)
        # A value being replaced is written beside the old one, then swapped into place: a file
        # opened natively (not journaled, so not rolled back) keeps the old value if the write
        # fails.
        replacing = _hdf5.has_member(parent, name)
        target = TEMP_PREFIX + name if replacing else name
        if replacing and _hdf5.has_member(parent, target):
            del parent[target]  # left by an exception whose cleanup failed
        try:
            _hdf5.write_node(parent, target, tree, node)
        except BaseException:
            try:
                if _hdf5.has_member(parent, target):
                    del parent[target]
            except Exception:
                pass
            raise
        if replacing:
            del parent[name]
            parent.move(target, name)

    @staticmethod
    def _parent_group(file: h5py.File, names: list[str], key: str) -> h5py.Group:
        group: h5py.Group = file
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

    def _has_key(self, key: str, names: list[str]) -> bool:
        return _hdf5.find(self.io, names, self.follow_external) is not None

    def keys(self) -> KeysView[str]:
        """Lists the keys at the top level of the file.

        Raises:
            ValueError: The storage is closed.
        """
        if self._closed():
            raise ValueError(f"I/O operation on a closed HDF5Storage ({str(self.path)!r})")
        names = self.io.keys()
        return KeysView({name: None for name in names if not name.startswith(TEMP_PREFIX)})


@typechecked
class PickleStorage(_FileStorage):
    """A key-value store of result trees in a file of appended pickle records.

    Each write appends one record ``{'data': tree, 'key': key}``, the format of corelay 1.0.0's
    PickleStorage, so files go both ways; the last record of a key holds its value, and
    :meth:`keys` lists every key in the file. A write validates the whole tree first (the trees
    HDF5Storage accepts, rejected with the same errors), then appends the record and flushes it:
    a returned write survives the process being killed (``os.fsync`` is not called, as by
    HDF5Storage), and a torn last record, cut short by a crash, is ignored with a warning.

    Opening indexes the records by walking their pickle opcodes, seeking over array payloads:
    it unpickles nothing and reads only metadata. Reading a key unpickles just its last record,
    straight from the file into the arrays (no second copy), and caches the value in
    :attr:`data`. Loading resolves only the globals that stored trees need (NumPy arrays and
    scalars, ``complex``, ``OrderedDict``, sets) and refuses any other with a
    :class:`pickle.UnpicklingError` naming it: a file cannot run code. Besides stored trees, a
    read returns the plain values corelay 1.0.0 files may hold (dicts with ``int`` or other
    plain keys as ``OrderedDict``, sets and frozensets); object arrays are refused. Reading
    takes work and memory in proportion to the record, at any depth; a record crafted to take
    more (memo indexes or lengths beyond the file, shared or cyclic structure) is refused with
    a :class:`pickle.UnpicklingError`.

    One storage at a time may write a file. Others may read it, and see the records that were
    complete when they opened it.
    """

    io: IO[bytes]
    """The open file."""

    data: dict[str, Any]
    """The values read so far, by key, shared with views.

    A read returns the cached value (the same object every time: do not modify it); a write
    drops the key's value, so that the next read loads the new record.
    """

    _format = "pickle"
    _any_text = True

    def __init__(
        self, path: str | Path, mode: str = "r", data_key: str | None = None, **kwargs: Any
    ) -> None:
        """Opens the file and indexes its records.

        Args:
            path: The file.
            mode: ``'r'`` reads an existing file; ``'w'`` creates the file, replacing an existing
                one; ``'a'`` reads the existing records and appends new ones, creating the file if
                it does not exist (a torn last record is cut off first).
            data_key: The key to address; may be given later with :meth:`at` or ``[]``.
            **kwargs: Other parameters of the storage.

        Raises:
            ValueError: ``mode`` is not ``'r'``, ``'w'`` or ``'a'``, or ``data_key`` is invalid.
            TypeError: An unknown parameter or a value of the wrong type.
            FileNotFoundError: ``mode`` is ``'r'`` and the file does not exist.
            pickle.UnpicklingError: The file is not a file of records.
        """
        super().__init__(path, mode, data_key, **kwargs)
        self.data = {}
        self._records = _pickle.RecordFile(self.path, self.mode)
        self.io = self._records.file

    def _closed(self) -> bool:
        return self.io.closed

    def _read_key(self, key: str, names: list[str]) -> Any:
        if key in self.data:
            return self.data[key]
        if key not in self._records.index:
            raise NoDataSource(f"no data at key {key!r} in {str(self.path)!r}")
        value = self._records.load(key)
        self.data[key] = value
        return value

    def _write_key(self, key: str, names: list[str], tree: TreeInput, node: Node) -> None:
        self.data.pop(key, None)
        self._records.append(key, tree, node)

    def _has_key(self, key: str, names: list[str]) -> bool:
        return key in self._records.index

    def keys(self) -> KeysView[str]:
        """Lists every key of the file, in the order of their first records.

        Raises:
            ValueError: The storage is closed.
        """
        if self._closed():
            raise ValueError(f"I/O operation on a closed PickleStorage ({str(self.path)!r})")
        return KeysView(dict.fromkeys(self._records.index))
