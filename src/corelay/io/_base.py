"""What the storages share: the base class, the storage of nothing, and the file storages' hooks.

The public names are imported from :mod:`corelay.io.storage`.
"""

import os
import types
from abc import ABC, abstractmethod
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from pathlib import Path
from types import TracebackType
from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
    Protocol,
    Self,
    TypedDict,
    Unpack,
    runtime_checkable,
)

from corelay._typecheck import typechecked
from corelay.base import Param
from corelay.io._keys import Key, split_key
from corelay.io.errors import NoDataSource, NoDataTarget
from corelay.io.tree import Node, TreeInput, validate
from corelay.plugboard import Plugboard, SlotValueError

Mode = Literal["r", "w", "a"]
"""The modes of a storage: ``'r'`` reads, ``'w'`` replaces the file, ``'a'`` reads and adds."""

_MODES: dict[str, Mode] = {"r": "r", "w": "w", "a": "a"}


class StorageParams(TypedDict, total=False):
    """The parameters of :class:`HDF5Storage` and :class:`PickleStorage`, as :meth:`at` takes them.

    A misspelt name or a value of the wrong type is an error for type checkers, and a
    :class:`TypeError` at run time.
    """

    data_key: str | None
    """The key to address; ``None`` goes back to the storage's default (if any)."""


def _own_methods(cls: type) -> None:
    """Gives a class of the library its own copy of each public method it inherits.

    The methods of the shared bases are written once; a copy named after ``cls``, checked when
    ``@typechecked`` decorates the class, makes a wrongly typed argument's message (and
    Python's, for a wrong number of arguments) name the class the user called
    (``HDF5Storage.get``), not a base. (``Self`` in the hints needs the
    class decorator: a method alone cannot be checked.) Subclasses outside the library keep the
    methods they inherit, checked under their library class's name.
    """
    if not cls.__module__.startswith("corelay."):
        return
    for base in cls.__mro__[1:]:
        if not base.__module__.startswith("corelay."):
            continue
        for name, method in vars(base).items():
            private = name.startswith("_") and not name.endswith("__")
            if private or name in vars(cls) or not isinstance(method, types.FunctionType):
                continue
            original = getattr(method, "__wrapped__", method)  # beartype skips Any-only hints
            if not isinstance(original, types.FunctionType):
                continue
            if getattr(cls, name) is not method:  # overridden on the way down
                continue
            copy = types.FunctionType(
                original.__code__,
                original.__globals__,
                original.__name__,
                original.__defaults__,
                original.__closure__,
            )
            copy.__kwdefaults__ = original.__kwdefaults__
            copy.__annotations__ = dict(original.__annotations__)
            copy.__doc__ = original.__doc__
            copy.__module__ = cls.__module__
            copy.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, copy)


class _Contents(Mapping[str, Any]):
    """A storage seen as a read-only mapping, for the views :meth:`DataStorageBase.items` makes."""

    def __init__(self, storage: "DataStorageBase") -> None:
        self._storage = storage

    def __getitem__(self, key: str) -> Any:
        try:
            return self._storage[key]
        except NoDataSource as error:  # what Mapping's views expect of an absent key
            raise KeyError(key) from error

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._storage

    def __iter__(self) -> Iterator[str]:
        return iter(self._storage)

    def __len__(self) -> int:
        return len(self._storage)


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

    A storage is a context manager; ``storage[key]``, ``storage[key] = value``,
    ``del storage[key]`` and ``key in storage`` address the entry at ``key``, and :meth:`at`
    gives a view on another key that shares the open file.

    It has the basics of a mapping from keys to stored trees, built on :meth:`keys` and ``[]``:
    ``len()``, iteration over the keys, :meth:`get`, :meth:`items` and :meth:`values`. It is not
    registered as a :class:`collections.abc.MutableMapping`, on purpose: a mapping compares
    equal by its contents (``==`` would read every value of the file, and a storage could not
    be hashed), and generic code that copies mappings would load the whole file.
    """

    #: The underlying file object; ``None`` when the storage is not backed by a file.
    io: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        _own_methods(cls)
        super().__init_subclass__(**kwargs)

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

    def __iter__(self) -> Iterator[str]:
        """Iterates over the keys, as :meth:`keys` listed them when the iteration began."""
        return iter(self.keys())

    def __len__(self) -> int:
        """The number of keys."""
        return len(self.keys())

    def get(self, key: str, default: Any = None) -> Any:
        """Reads the data stored at ``key``, or returns ``default`` if nothing is stored there.

        Args:
            key: The key.
            default: What to return when nothing is stored at ``key``.

        Raises:
            TypeError: ``key`` is not a str.
            ValueError: The storage is closed, or ``key`` is invalid.
        """
        try:
            return self[key]
        except NoDataSource:
            return default

    def items(self) -> ItemsView[str, Any]:
        """A view of the ``(key, data)`` pairs; each value is read when the iteration reaches it."""
        return ItemsView(_Contents(self))

    def values(self) -> ValuesView[Any]:
        """A view of the stored data; each value is read when the iteration reaches it."""
        return ValuesView(_Contents(self))

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
        """Reads the data stored at ``key``, whatever key this storage is set to.

        Raises:
            NoDataSource: Nothing, or an incomplete entry, is stored at ``key``.
            TypeError: ``key`` is not a str.
            ValueError: The storage is closed, or ``key`` is invalid.
        """
        return self.at(data_key=key).read()

    def __setitem__(self, key: str, value: TreeInput) -> None:
        """Stores ``value`` at ``key``, whatever key this storage is set to.

        Raises:
            NoDataTarget: The storage was opened read-only.
            TypeError: ``key`` is not a str, or a node of ``value`` cannot be stored (the
                message names its path).
            ValueError: The storage is closed, ``key`` or a dict key is invalid, or a group on
                the key's path is a dataset.
        """
        self.at(data_key=key).write(value)

    def __contains__(self, key: str) -> bool:
        """Tells whether data is stored at ``key``.

        Raises:
            TypeError: ``key`` is not a str.
            ValueError: The storage is closed, or ``key`` is invalid.
        """
        return self.at(data_key=key).exists()

    def __delitem__(self, key: str) -> None:
        """Deletes the data stored at ``key``; a storage that cannot delete raises NoDataTarget.

        Raises:
            NoDataTarget: This storage cannot delete.
        """
        raise NoDataTarget(f"{type(self).__name__} cannot delete keys")

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

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

    def at(self) -> Self:
        """Returns this storage: a NoStorage has no parameters that could differ.

        Raises:
            TypeError: Any argument: a NoStorage has no parameters.
        """
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

    def __delitem__(self, key: str) -> None:
        """Raises :class:`NoDataTarget`: nothing can be changed."""
        raise NoDataTarget()


@typechecked
class FileStorage(DataStorageBase):
    """What the file storages share: a file, a mode, and a key to address.

    The public methods check everything, then call the hooks a file format implements, in this
    order:

    1. ``__init__(path, mode, data_key, **kwargs)``: this class checks the mode, the key and
       the parameters, and that a file to read exists; the format's ``__init__`` then opens the
       file (and may index it), setting :attr:`io`. A store that is not one file (a Zarr store
       object) calls ``_set_parameters(mode, data_key)`` instead, for the same checks
       without the file's, and overrides ``_where()``, which names the store in messages.
    2. ``_closed()``: whether the file is closed. Checked before every hook below: a closed
       storage raises ``ValueError`` and calls no hook.
    3. ``_read_key(key)``: returns the tree stored at the :class:`~corelay.io._keys.Key`
       ``key`` (checked: valid names), or raises :class:`NoDataSource` when nothing (or an
       incomplete entry) is there.
    4. ``_write_key(key, tree, node)``: stores ``tree``, already validated whole (``node``
       describes it, and the file is open for writing), at ``key``, replacing what was there;
       the key holds the old tree or the new one, never a mix, when it returns or raises.
    5. ``_has_key(key)``: whether a tree is stored at ``key``.
    6. ``_delete_key(key)``: deletes the tree stored at ``key`` (checked: present, and the file
       open for writing), durably and atomically, as ``_write_key`` writes.
    7. ``keys()``: the keys at the top level, public and documented by each format.

    ``_any_text`` tells whether the format stores every str exactly (NUL characters and lone
    surrogates too): it decides what ``validate`` accepts before ``_write_key``.
    """

    data_key: Annotated[str, Param(str)]
    """The key that :meth:`read`, :meth:`write` and :meth:`exists` address.

    A :class:`~corelay.base.Param`: read on the class, it is the parameter; assigning a value
    that is not a ``str`` is a :class:`TypeError`; reading it before it is set is a
    :class:`TypeError` too.
    """

    _format: ClassVar[str]
    _any_text: ClassVar[bool] = False

    def __init__(self, path: str | os.PathLike[str], mode: Mode, data_key: str | None) -> None:
        self._set_parameters(mode, data_key)
        if mode == "r" and not os.path.exists(path):
            raise FileNotFoundError(f"no {self._format} file at {str(path)!r}")
        self.path = Path(path)
        """The file, as given when the storage was opened."""

    def _set_parameters(self, mode: Mode, data_key: str | None) -> None:
        # The checks of __init__ that need no file: a store that is not a file starts here.
        self.mode: Mode = _check_mode(mode)
        """The mode the file was opened in, ``'r'``, ``'w'`` or ``'a'``."""
        if data_key is None:
            super().__init__()
        else:
            super().__init__(data_key=data_key)
        if data_key is not None:
            split_key(data_key)

    def _where(self) -> str:
        # How messages name the store.
        return repr(str(self.path))

    @abstractmethod
    def _closed(self) -> bool: ...

    @abstractmethod
    def _read_key(self, key: Key) -> Any: ...

    @abstractmethod
    def _write_key(self, key: Key, tree: TreeInput, node: Node) -> None: ...

    @abstractmethod
    def _has_key(self, key: Key) -> bool: ...

    @abstractmethod
    def _delete_key(self, key: Key) -> None: ...

    def at(self, **kwargs: Unpack[StorageParams]) -> Self:
        """Returns a view on another key (or with other parameters) that shares the open file.

        This storage is left unchanged, whatever key the constructor set.

        Args:
            **kwargs: The parameters that differ (see :class:`StorageParams`): ``data_key``.

        Raises:
            TypeError: An unknown parameter, or a value of the wrong type.

        Returns:
            The view, of this storage's class.
        """
        return super().at(**kwargs)

    def _key(self) -> str | None:
        try:
            return self.data_key
        except SlotValueError:  # not set, no default
            return None

    def __bool__(self) -> bool:
        """Tells whether the storage is open: ``False`` once it is closed."""
        return not self._closed()

    def _checked(self, key: str | None) -> Key:
        if self._closed():
            raise ValueError(f"I/O operation on a closed {type(self).__name__} ({self._where()})")
        if key is None:
            raise TypeError(
                f"{type(self).__name__} has no data_key: set it, or use storage[key] or at()"
            )
        return Key(key, split_key(key))

    def _write_checked(self, key: str | None, tree: TreeInput) -> None:
        checked = self._checked(key)
        self._check_writable()
        self._write_key(checked, tree, validate(tree, any_text=self._any_text))

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise NoDataTarget(f"{type(self).__name__} {self._where()} is open read-only ('r')")

    def __repr__(self) -> str:
        closed = " (closed)" if self._closed() else ""
        return (
            f"<{type(self).__name__} {self._where()} mode={self.mode!r} "
            f"data_key={self._key()!r}{closed}>"
        )

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
        return self._read_key(self._checked(self._key()))

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
        return self._has_key(self._checked(self._key()))

    # Faster than the base class's view made with at(), and the same.
    def __getitem__(self, key: str) -> Any:
        return self._read_key(self._checked(key))

    def __setitem__(self, key: str, value: TreeInput) -> None:
        self._write_checked(key, value)

    def __contains__(self, key: str) -> bool:
        return self._has_key(self._checked(key))

    def __delitem__(self, key: str) -> None:
        """Deletes the data stored at ``key``, durably and atomically, as a write stores it.

        Raises:
            NoDataSource: Nothing is stored at ``key``.
            NoDataTarget: The storage was opened read-only.
            TypeError: ``key`` is not a str.
            ValueError: The storage is closed, or ``key`` is invalid.
        """
        checked = self._checked(key)
        self._check_writable()
        if not self._has_key(checked):
            raise NoDataSource(f"no data at key {checked.text!r} in {self._where()}")
        self._delete_key(checked)
