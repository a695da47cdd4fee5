"""Zarr arrays as sources of :class:`~corelay.io.lazy.LazyArray`, and trees read lazily.

A tree is opened as :func:`~corelay.io._zarr.read.read_key` reads it, with the same checks of
what the store holds, except that numeric arrays of one or more dimensions are not read: they
become lazy arrays.

A key's old value is deleted once the key is replaced, and zarr reads a missing chunk as fill
values: a lazy array read after its key was replaced (or deleted) would silently return zeros.
So each read of a block reads the key's pointer again after the block, as a whole read does:
if the key no longer points at the value the array was opened on, the read raises
:class:`~corelay.io.storage.NoDataSource`. A value is deleted only after its key stopped
pointing at it, so a block read while the pointer still names the value holds its data.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.abc.codec import Codec
from zarr.abc.store import Store
from zarr.core.array import AsyncArray
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.storage import StorePath

from corelay.io._keys import TEMP_PREFIX
from corelay.io._zarr.layout import (
    DTYPE_ATTR,
    KIND_ATTR,
    VALUE_ATTR,
    attributes_of,
    get_doc,
    run,
)
from corelay.io._zarr.read import (
    ReadLimits,
    TreeReader,
    array_metadata_of,
    check_chunk_size,
    value_name,
)
from corelay.io.errors import NoDataSource, UnreadableNodeError
from corelay.io.lazy import LazyArray
from corelay.io.tree import dtype_problem

__all__ = ["ZarrSource", "lazy_key"]

_NUMERIC = "biufc"
# Tries before giving up on a key replaced again and again while its tree is opened.
_ATTEMPTS = 20


@dataclass(frozen=True)
class Pointer:
    """The key a value was reached through, and the value it named then."""

    path: str
    version: str


class ZarrSource:
    """A numeric Zarr array of one or more dimensions, read by slices.

    Args:
        store: The store.
        path: The array's path in the store.
        metadata: The array's metadata, as read when the tree was opened.
        pointer: The key the array belongs to and its value then, checked after every read;
            ``None`` for an array reached through no key (another program's).
        dtype: The array's NumPy dtype, as written.
        where: How errors name it.
        alive: Tells whether the storage that opened it is open.
    """

    def __init__(
        self,
        store: Store,
        path: str,
        metadata: ArrayV3Metadata,
        pointer: Pointer | None,
        dtype: np.dtype[Any],
        where: str,
        alive: Callable[[], bool],
    ) -> None:
        self._store = store
        self._array = AsyncArray(metadata=metadata, store_path=StorePath(store, path))
        self._pointer = pointer
        self._alive = alive
        self.shape: tuple[int, ...] = metadata.shape
        self.dtype = dtype
        self.chunks: tuple[int, ...] | None = metadata.chunks
        names = [_codec_name(codec) for codec in metadata.codecs]
        self.compression: str | None = "+".join(name for name in names if name) or None
        self.where = where

    def alive(self) -> bool:
        """Tells whether the storage that opened the array is open."""
        return self._alive()

    def read(self, selection: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        """Reads the block ``selection`` selects; only the chunks it touches are read.

        Raises:
            NoDataSource: The array's key was replaced or deleted since the tree was opened.
            UnreadableNodeError: A chunk cannot be decoded.
        """
        return run(self._read(selection))

    async def _read(self, selection: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        try:
            block: np.ndarray[Any, Any] = np.asarray(await self._array.getitem(selection))
        except UnreadableNodeError as error:  # a bounded codec's, which has no path
            raise UnreadableNodeError(f"{self.where}: {error}") from None
        except OSError:
            raise
        except Exception as error:  # a codec's error for a chunk it cannot decode
            raise UnreadableNodeError(f"{self.where}: cannot be read: {error}") from None
        pointer = self._pointer
        if pointer is not None:
            document = await get_doc(self._store, pointer.path)
            if document is None or attributes_of(document).get(VALUE_ATTR) != pointer.version:
                change = "deleted" if document is None else "replaced"
                raise NoDataSource(
                    f"LazyArray of {self.where}: its key was {change} after lazy() opened it; "
                    "open it again"
                )
        return block.astype(self.dtype, copy=False)


def _codec_name(codec: Codec) -> str | None:
    # The name in the metadata document (the reading codecs are zarr's, bounded in size).
    name = codec.to_dict().get("name")
    # The serializer (bytes), axis reordering (transpose) and checksums (crc32c) compress nothing.
    if not isinstance(name, str) or name in ("bytes", "transpose", "crc32c"):
        return None
    return name


def _numeric_dtype(document: dict[str, Any]) -> np.dtype[Any] | None:
    """The NumPy dtype of a numeric array of one or more dimensions; ``None`` for others.

    ``None`` too for what is not valid: the whole read of the node then says why.
    """
    if document.get("node_type") != "array" or not document.get("shape"):
        return None
    attributes = attributes_of(document)
    kind = attributes.get(KIND_ATTR)
    text = attributes.get(DTYPE_ATTR) if kind == "ndarray" else document.get("data_type")
    if kind not in (None, "ndarray") or not isinstance(text, str):
        return None
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError, SyntaxError):
        return None
    if dtype.kind not in _NUMERIC or dtype_problem(dtype) is not None:
        return None
    return dtype


class _LazyReader(TreeReader):
    """Reads a tree with every numeric array a :class:`LazyArray`."""

    def __init__(
        self,
        store: Store,
        limits: ReadLimits,
        pointer: Pointer | None,
        where: str,
        alive: Callable[[], bool],
    ) -> None:
        super().__init__(store, limits)
        self.pointer = pointer
        self.where = where
        self.alive = alive

    async def value(self, path: str, name: str, depth: int) -> Any:
        # The arrays below a key check that key's pointer.
        inner = _LazyReader(self.store, self.limits, Pointer(path, name), self.where, self.alive)
        return await TreeReader.value(inner, path, name, depth)

    async def array(self, path: str, document: dict[str, Any], attributes: dict[str, Any]) -> Any:
        dtype = _numeric_dtype(document)
        if dtype is None:
            return await super().array(path, document, attributes)  # read, or refused
        metadata = array_metadata_of(path, document)
        stored = metadata.dtype.to_native_dtype()
        if (stored.kind, stored.itemsize) != (dtype.kind, dtype.itemsize):
            raise UnreadableNodeError(f"{path}: data of {stored} is not {dtype}")
        # A slice decodes each chunk it touches whole.
        check_chunk_size(path, metadata, self.limits.max_bytes)
        # Named as the user knows it: without the members that hold keys' values.
        name = "/".join(part for part in path.split("/") if not part.startswith(TEMP_PREFIX))
        where = f"{name!r} in {self.where}"
        source = ZarrSource(self.store, path, metadata, self.pointer, dtype, where, self.alive)
        return LazyArray(source)


async def lazy_key(
    store: Store, path: str, where: str, alive: Callable[[], bool], limits: ReadLimits
) -> Any:
    """The tree of the key at ``path`` with every numeric array a :class:`LazyArray`.

    Other leaves are read (within ``limits``). Opened again if the key is replaced meanwhile.

    Args:
        store: The store.
        path: The key's path in the store.
        where: How errors name the store.
        alive: Tells whether the storage is open.
        limits: What reading the other leaves may allocate.

    Raises:
        KeyError: Nothing is stored at ``path``, or a node of its value is missing.
        UnreadableNodeError: A node breaks the rules of the format.
    """
    for _ in range(_ATTEMPTS):
        document = await get_doc(store, path)
        if document is None:
            raise KeyError(f"no key {path!r}")
        attributes = attributes_of(document)
        reader = _LazyReader(store, limits, None, where, alive)
        if attributes.get(KIND_ATTR) != "key":
            return await reader.node(path, document, 0)
        version = value_name(attributes, path)
        try:
            tree = await reader.value(path, version, 0)
            failure: KeyError | None = None
        except KeyError as error:
            tree, failure = None, error
        again = await get_doc(store, path)
        if again is not None and attributes_of(again).get(VALUE_ATTR) == version:
            if failure is not None:
                raise failure
            return tree
    raise KeyError(f"{path!r} was replaced {_ATTEMPTS} times while it was opened")
