"""PickleStorage: the key-value store of the pickle format."""

import os
from collections.abc import KeysView
from typing import IO, Any

from corelay._typecheck import typechecked
from corelay.io._base import Mode
from corelay.io._file_storage import FileStorage
from corelay.io._keys import Key
from corelay.io._pickle import records
from corelay.io.errors import NoDataSource
from corelay.io.tree import Node, TreeInput


@typechecked
class PickleStorage(FileStorage):
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
        self, path: str | os.PathLike[str], mode: Mode = "r", data_key: str | None = None
    ) -> None:
        """Opens the file and indexes its records.

        Args:
            path: The file.
            mode: ``'r'`` reads an existing file; ``'w'`` creates the file, replacing an existing
                one; ``'a'`` reads the existing records and appends new ones, creating the file if
                it does not exist (a torn last record is cut off first).
            data_key: The key to address; may be given later with :meth:`at` or ``[]``.

        Raises:
            ValueError: ``mode`` is not ``'r'``, ``'w'`` or ``'a'``, or ``data_key`` is invalid.
            TypeError: An unknown parameter or a value of the wrong type.
            FileNotFoundError: ``mode`` is ``'r'`` and the file does not exist.
            pickle.UnpicklingError: The file is not a file of records.
        """
        super().__init__(path, mode, data_key)
        self.data = {}
        self._records = records.RecordFile(self.path, self.mode)
        self.io = self._records.file

    def _closed(self) -> bool:
        return self.io.closed

    def _read_key(self, key: Key) -> Any:
        if key.text in self.data:
            return self.data[key.text]
        if key.text not in self._records.index:
            raise NoDataSource(f"no data at key {key.text!r} in {str(self.path)!r}")
        value = self._records.load(key.text)
        self.data[key.text] = value
        return value

    def _write_key(self, key: Key, tree: TreeInput, node: Node) -> None:
        self.data.pop(key.text, None)
        self._records.append(key.text, tree, node)

    def _has_key(self, key: Key) -> bool:
        return key.text in self._records.index

    def _delete_key(self, key: Key) -> None:
        self.data.pop(key.text, None)
        self._records.delete(key.text)

    def keys(self) -> KeysView[str]:
        """Lists every key of the file, in the order of their first records.

        Raises:
            ValueError: The storage is closed.
        """
        if self._closed():
            raise ValueError(f"I/O operation on a closed PickleStorage ({str(self.path)!r})")
        return KeysView(dict.fromkeys(self._records.index))

    def lazy(self, key: str | None = None) -> Any:
        """Returns the tree at ``key`` with its big arrays memory-mapped from the file.

        Arrays of 64 KiB or more that this library wrote (pickle protocol 5 puts their bytes in
        the record as they are in memory) come back read-only, mapped from the file: nothing of
        them is read until it is used, and the system pages it in and out as needed. Other
        values are loaded as :meth:`read` loads them: small arrays, records of other writers
        (corelay 1.0.0 pickles arrays with older protocols), and every value of a storage opened
        with mode ``'w'``, which must stay free to empty its file. While a mapped array lives,
        the file cannot be opened with mode ``'w'`` (which would empty it under the array); it
        stays valid after the storage is closed. The value is not cached.

        Args:
            key: The key; defaults to :attr:`data_key`.

        Raises:
            NoDataSource: Nothing is stored at the key.
            TypeError: No key is given and no data_key is set.
            ValueError: The storage is closed, or the key is invalid.
            pickle.UnpicklingError: The record is damaged or refused (see :meth:`read`).
        """
        checked = self._checked(key if key is not None else self._key())
        if checked.text not in self._records.index:
            raise NoDataSource(f"no data at key {checked.text!r} in {str(self.path)!r}")
        if self.mode == "w":
            return self._read_key(checked)
        return self._records.load(checked.text, mapped=True)

    def compact(self) -> int:
        """Rewrites the file with the last record of each key only, and returns the bytes saved.

        Each write appends a record, so replacing a key leaves its old records behind; this
        drops them. The file is replaced atomically, under the storage's lock: a process killed
        during compaction leaves the old file or the new one, never neither. Reading and
        writing go on through this storage and its views; readers that opened the file before
        keep reading the old one.

        Returns:
            The bytes by which the file shrank.

        Raises:
            NoDataTarget: The storage was opened read-only.
            ValueError: The storage is closed.
            OSError: The new file could not be written (the old one is kept).
        """
        if self._closed():
            raise ValueError(f"I/O operation on a closed PickleStorage ({str(self.path)!r})")
        self._check_writable()
        return self._records.compact()
