"""ZarrStorage: the key-value store of the Zarr format.

Imports without zarr installed: the format's modules are imported once :func:`require_zarr` has
checked that zarr is there.
"""

import os
from collections.abc import KeysView
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from corelay._typecheck import typechecked
from corelay.io._base import Mode
from corelay.io._file_storage import FileStorage
from corelay.io._keys import Key
from corelay.io._zarr import ZarrStoreLike, require_zarr
from corelay.io.errors import NoDataSource
from corelay.io.tree import DEFAULT_MAX_READ_BYTES, Node, TreeInput

if TYPE_CHECKING:
    from corelay.io._zarr.layout import Location

__all__ = ["ZarrStorage"]


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
        compression: Literal["zstd", "gzip"] | None = "zstd",
    ) -> None:
        """Opens the store.

        Args:
            store: A directory (a local store), or any ``zarr.abc.store.Store``, for example
                ``zarr.storage.ObjectStore(obstore.store.S3Store(...))``.
            mode: ``'r'`` reads an existing store; ``'w'`` empties the store, or creates it;
                ``'a'`` reads and writes, creating the store if there is none.
            data_key: The key to address; may be given later with :meth:`at` or ``[]``.
            compression: How arrays are compressed: ``'zstd'``, ``'gzip'`` or ``None``.

        Raises:
            ImportError: zarr is not installed (``pip install "corelay-io-storage[zarr]"``).
            ValueError: ``mode``, ``compression`` or ``data_key`` is invalid.
            TypeError: An unknown parameter or a value of the wrong type.
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
        self.compression: Literal["zstd", "gzip"] | None = compression
        """How the arrays this storage writes are compressed."""
        self._location: Location = open_location(store, self.mode)
        if not isinstance(store, str | os.PathLike):
            self.path = Path(self._location.where)
        """The directory of a local store; for other stores, their description."""
        self.io = self._location.store
        self._open = [True]  # shared with views

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

        run(write_key(self._location, key.text, key.names, tree, node, self.compression))

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
