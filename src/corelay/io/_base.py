"""What the storages share: the base class, the storage of nothing, and the file storages' hooks.

The public names are imported from :mod:`corelay.io.storage`.
"""

import types
from abc import ABC, abstractmethod
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from types import TracebackType
from typing import (
    Any,
    Literal,
    Protocol,
    Self,
    TypedDict,
    runtime_checkable,
)

from corelay._typecheck import typechecked
from corelay.io.errors import NoDataSource, NoDataTarget
from corelay.io.tree import TreeInput
from corelay.plugboard import Plugboard

Mode = Literal["r", "w", "a"]
"""The modes of a storage: ``'r'`` reads, ``'w'`` replaces the file, ``'a'`` reads and adds."""


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
