"""The file storages' shared face: a file, a mode and a key, and the hooks a format implements.

The public names are imported from :mod:`corelay.io.storage`.
"""

import os
from abc import abstractmethod
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, Unpack

from corelay._typecheck import typechecked
from corelay.base import Param
from corelay.io._base import DataStorageBase, Mode, StorageParams
from corelay.io._keys import Key, split_key
from corelay.io.errors import NoDataSource, NoDataTarget
from corelay.io.tree import Node, TreeInput, validate
from corelay.plugboard import SlotValueError

__all__ = ["FileStorage"]

_MODES: dict[str, Mode] = {"r": "r", "w": "w", "a": "a"}


def _check_mode(mode: str) -> Mode:
    checked = _MODES.get(mode)
    if checked is None:
        raise ValueError(f"invalid mode {mode!r}; expected 'r', 'w' or 'a'")
    return checked


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
            UnreadableNodeError: (HDF5 and Zarr, a ``ValueError``) A node the library does
                not read, named by its path: in HDF5 an external link or virtual dataset (unless
                followed), a soft link to nothing or in a loop, shared or cyclic groups, a named
                datatype, a member name that is not UTF-8; in Zarr a symbolic link or special
                file, a member name that is not a name; in both an unknown kind attribute,
                nesting deeper than ``MAX_DEPTH``, or more declared data than
                ``max_read_bytes``.
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
