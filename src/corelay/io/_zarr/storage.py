"""ZarrStorage: the key-value store of the Zarr format.

Imports without zarr installed: the format's modules are imported once :func:`require_zarr` has
checked that zarr is there.
"""

import os
from collections.abc import KeysView
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from numpy.typing import NDArray

from corelay._typecheck import typechecked
from corelay.io._base import Mode
from corelay.io._file_storage import FileStorage
from corelay.io._keys import Key
from corelay.io._zarr import ZarrStoreLike, require_zarr
from corelay.io.errors import NoDataSource
from corelay.io.tree import DEFAULT_MAX_READ_BYTES, Node, TreeInput, validate

if TYPE_CHECKING:
    from corelay.io._zarr.layout import Location

__all__ = ["ZarrStorage"]

ZarrCompression: TypeAlias = Literal["zstd", "gzip"] | None
"""How a Zarr storage compresses arrays: zarr's zstd or gzip codec, or not at all."""


@typechecked
class ZarrStorage(FileStorage):
    """A key-value store of result trees in a Zarr v3 store: a directory, S3, or any other.

    HDF5Storage's contract over Zarr: each key is a group (``'a/b'`` addresses nested groups),
    trees read back exactly, and a write validates the whole tree first. The value is written
    under a fresh name and the key's metadata document switched to it last, so that a key holds
    the old or the new value, never a mix, for readers in any process or machine; a returned
    write survives the process being killed. Arrays are chunked and compressed (zstd by
    default); plain zarr and xarray read them. The layout is on the "Many processes, many
    machines" page of the documentation.

    Big arrays: an array grows batch by batch (:meth:`append`) and is read a slice at a time
    (:meth:`lazy`), as with :class:`~corelay.io.storage.HDF5Storage`.
    """

    io: Any
    """The Zarr store (a ``zarr.abc.store.Store``)."""

    max_read_bytes: int = DEFAULT_MAX_READ_BYTES
    """The most bytes of data one read may declare beyond what the store holds for them (1 GiB).

    A Zarr array declares a shape, not data: a store of a few kilobytes can declare terabytes
    of chunks never written (read as fill values) or compressed. What arrays declare beyond the
    bytes their chunks take counts against this limit, summed over one read; a read beyond it
    raises :class:`~corelay.io.storage.UnreadableNodeError` before allocating. Raise it for one
    storage (``storage.max_read_bytes = 8 << 30``) or for all (``ZarrStorage.max_read_bytes =
    ...``) to read larger compressed or sparse arrays.
    """

    _format = "Zarr"

    def __init__(
        self,
        store: ZarrStoreLike,
        mode: Mode = "r",
        data_key: str | None = None,
        *,
        compression: ZarrCompression = "zstd",
    ) -> None:
        """Opens the store.

        Args:
            store: A directory (a local store), or any ``zarr.abc.store.Store``, for example
                ``zarr.storage.ObjectStore(obstore.store.S3Store(...))``.
            mode: ``'r'`` reads an existing store; ``'w'`` empties the store, or creates it;
                ``'a'`` reads and writes, creating the store if there is none.
            data_key: The key to address; may be given later with :meth:`at` or ``[]``.
            compression: How the arrays it writes are compressed, unless a write says
                otherwise: ``'zstd'``, ``'gzip'`` or ``None``.

        Raises:
            ImportError: zarr is not installed (``pip install "corelay-io-storage[zarr]"``).
            ValueError: ``mode`` or ``data_key`` is invalid.
            TypeError: An unknown parameter, a value of the wrong type, or an unknown
                ``compression``.
            FileNotFoundError: ``mode`` is ``'r'`` and there is no Zarr v3 store.
            FileExistsError: ``store`` holds something that is not a Zarr v3 store.
        """
        require_zarr("ZarrStorage")
        from corelay.io._zarr.layout import open_location
        from corelay.io._zarr.write import array_codecs

        if isinstance(store, str | os.PathLike):
            super().__init__(Path(store), mode, data_key)
        else:
            self._set_parameters(mode, data_key)
        array_codecs(compression)  # checked before the store is touched
        self._compression: ZarrCompression = compression
        self._location: Location = open_location(store, self.mode)
        if not isinstance(store, str | os.PathLike):
            self.path = Path(self._location.where)
        """The directory of a local store; for other stores, their description."""
        self.io = self._location.store
        self._open = [True]  # shared with views

    @property
    def compression(self) -> ZarrCompression:
        """The default compression of the arrays this storage writes.

        It applies to ``storage[key] = value``, :meth:`write` (unless it says otherwise) and
        the first :meth:`append` of a key. Views made by :meth:`at` start with the storage's;
        assigning an unknown value is a :class:`TypeError`.
        """
        return self._compression

    @compression.setter
    def compression(self, compression: ZarrCompression) -> None:
        from corelay.io._zarr.write import array_codecs

        array_codecs(compression)
        self._compression = compression

    def _where(self) -> str:
        return self._location.where

    def _closed(self) -> bool:
        return not self._open[0]

    def close(self) -> None:
        """Closes the storage and all views on it; a store it opened itself is closed too.

        Closing twice is harmless.
        """
        if self._open[0]:
            self._open[0] = False
            if self._location.owned:
                self.io.close()

    def _read_key(self, key: Key) -> Any:
        from corelay.io._zarr.layout import run
        from corelay.io._zarr.read import ReadLimits, read_key

        limits = ReadLimits(self.max_read_bytes)
        try:
            return run(read_key(self.io, self._location.path(*key.names), limits=limits))
        except KeyError as error:
            raise NoDataSource(
                f"no data at key {key.text!r} in {self._where()}: {error}"
            ) from error

    def _write_key(self, key: Key, tree: TreeInput, node: Node) -> None:
        from corelay.io._zarr.layout import run
        from corelay.io._zarr.write import write_key

        run(write_key(self._location, key.text, key.names, tree, node, self._compression))

    def write(
        self,
        data_out: TreeInput,
        data_in: Any = None,
        meta: Any = None,
        *,
        compression: ZarrCompression | Literal["default"] = "default",
    ) -> None:
        """Stores ``data_out`` at :attr:`data_key`, replacing what was there.

        Args:
            data_out: The tree: arrays, scalars, str, bytes, None, and dicts (str keys), tuples
                and lists of them, at any depth.
            data_in: Unused.
            meta: Unused.
            compression: How this write compresses its arrays (``'zstd'``, ``'gzip'`` or
                ``None``); ``'default'``: as :attr:`compression` says.

        Raises:
            NoDataTarget: The storage was opened read-only.
            TypeError: No data_key is set, a node of ``data_out`` cannot be stored (the
                message names its path), or ``compression`` is unknown.
            ValueError: The storage is closed, the key or a dict key is invalid, a node on the
                key's path is an array, or a name on the key's path or a dict key is
                ``'zarr.json'`` (the name of Zarr's metadata documents).
        """
        from corelay.io._zarr.layout import run
        from corelay.io._zarr.write import write_key

        key = self._checked(self._key())
        self._check_writable()
        node = validate(data_out, any_text=self._any_text)
        chosen = self._compression if compression == "default" else compression
        run(write_key(self._location, key.text, key.names, data_out, node, chosen))

    def append(self, key: str, batch: NDArray[Any]) -> tuple[int, ...]:
        """Appends ``batch`` to the array at ``key`` along its first axis.

        The first append creates the array, in chunks of about 4 MiB of rows, compressed as
        :attr:`compression` says, and marked as made to grow; reading the key returns the whole
        array, and :meth:`lazy` a part of it. Each append is durable like a write: the batch's
        chunks are written first, and the array's metadata document, which holds its shape,
        last. A process killed during an append leaves the array as it was (whole batches
        only), and readers in any process see the old shape or the new one. Everything is
        checked before the store changes.

        Concurrent appenders to one key are not supported: two processes appending to the same
        key at once (or one appending while another replaces the key) can lose batches.
        Appenders to different keys do not disturb each other.

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
                scalar, an array written whole).
            ValueError: ``batch`` is 0-d or its shape past the first axis is not the array's,
                the key is invalid, a node on the key's path is an array, a name on it is
                ``'zarr.json'``, or the storage is closed.
            NoDataSource: The key points at a value that is missing from the store.
        """
        from corelay.io._zarr.append import append_batch, check_batch
        from corelay.io._zarr.layout import run

        checked = self._checked(key)
        self._check_writable()
        where = f"append to {key!r} in {self._where()}"
        check_batch(batch, where)
        return run(
            append_batch(
                self._location, checked.text, checked.names, batch, self._compression, where
            )
        )

    def lazy(self, key: str | None = None) -> Any:
        """Returns the tree at ``key`` with every numeric array a lazy array.

        Every numeric array of one or more dimensions is a
        :class:`~corelay.io.storage.LazyArray`: nothing of it is read until it is indexed, and
        a slice reads only the chunks it touches. Other leaves (scalars, str, bytes, string
        arrays) are read as :meth:`read` reads them. The arrays are read-only and usable until
        the storage is closed; they keep the shape they had when ``lazy`` returned (rows
        appended later are not seen).

        If the key is replaced or deleted afterwards (by this process or another), its old
        arrays are deleted: reading one of them then raises
        :class:`~corelay.io.storage.NoDataSource` (each read checks, after reading, that the
        key still holds the value it was opened on) rather than returning fill values. Call
        ``lazy`` again for the new value.

        Args:
            key: The key; defaults to :attr:`data_key`.

        Raises:
            NoDataSource: Nothing, or an incomplete entry, is stored at the key.
            UnreadableNodeError: A node breaks the rules of the format (as for :meth:`read`); a
                leaf that is read, not lazy, is bounded by :attr:`max_read_bytes`.
            TypeError: No key is given and no data_key is set.
            ValueError: The storage is closed, or the key is invalid.
        """
        from corelay.io._zarr.layout import run
        from corelay.io._zarr.lazy import lazy_key

        checked = self._checked(key if key is not None else self._key())
        opened = self._open

        def alive() -> bool:
            return opened[0]

        from corelay.io._zarr.read import ReadLimits

        path = self._location.path(*checked.names)
        limits = ReadLimits(self.max_read_bytes)
        try:
            return run(lazy_key(self.io, path, self._where(), alive, limits))
        except KeyError as error:
            raise NoDataSource(
                f"no data at key {checked.text!r} in {self._where()}: {error}"
            ) from error

    def _has_key(self, key: Key) -> bool:
        from corelay.io._zarr.layout import run
        from corelay.io._zarr.read import key_exists

        return run(key_exists(self.io, self._location.path(*key.names)))

    def _delete_key(self, key: Key) -> None:
        from corelay.io._zarr.layout import run
        from corelay.io._zarr.write import delete_key

        run(delete_key(self.io, self._location.path(*key.names)))

    def keys(self) -> KeysView[str]:
        """Lists the keys at the top level of the store, sorted.

        Raises:
            ValueError: The storage is closed.
        """
        from corelay.io._zarr.layout import run
        from corelay.io._zarr.read import list_keys

        if self._closed():
            raise ValueError(f"I/O operation on a closed ZarrStorage ({self._where()})")
        names = run(list_keys(self.io, self._location.prefix))
        return KeysView(dict.fromkeys(names))
