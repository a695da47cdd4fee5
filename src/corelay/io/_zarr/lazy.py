"""Zarr arrays as sources of :class:`~corelay.io.lazy.LazyArray`, and trees read lazily.

A key's old value is deleted once the key is replaced, and zarr reads a missing chunk as fill
values: a lazy array read after its key was replaced (or deleted) would silently return zeros.
So each read of a block reads the key's pointer again after the block, as a whole read does:
if the key no longer points at the value the array was opened on, the read raises
:class:`~corelay.io.storage.NoDataSource`. A value is deleted only after its key stopped
pointing at it, so a block read before the pointer still names the value holds its data.
"""

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from zarr.abc.store import Store
from zarr.core.array import AsyncArray
from zarr.storage import StorePath

from corelay.io._keys import TEMP_PREFIX
from corelay.io._zarr.append import metadata_of
from corelay.io._zarr.layout import (
    DTYPE_ATTR,
    KEYS_ATTR,
    KIND_ATTR,
    LENGTH_ATTR,
    METADATA,
    VALUE_ATTR,
    attributes_of,
    get_doc,
    join,
    run,
)
from corelay.io._zarr.read import read_node
from corelay.io.errors import NoDataSource
from corelay.io.lazy import LazyArray

__all__ = ["ZarrSource", "lazy_key"]

_NUMERIC = "biufc"
# Tries before giving up on a key replaced again and again while its tree is opened.
_ATTEMPTS = 20


@dataclass(frozen=True)
class _Pointer:
    """The key a value was reached through, and the value it named then."""

    path: str
    version: str


class ZarrSource:
    """A numeric Zarr array of one or more dimensions, read by slices.

    Args:
        store: The store.
        path: The array's path in the store.
        document: The array's metadata document, as read when the tree was opened.
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
        document: dict[str, Any],
        pointer: _Pointer | None,
        dtype: np.dtype[Any],
        where: str,
        alive: Callable[[], bool],
    ) -> None:
        metadata = metadata_of(document)
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
        """
        return run(self._read(selection))

    async def _read(self, selection: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        block: np.ndarray[Any, Any] = np.asarray(await self._array.getitem(selection))
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


def _codec_name(codec: object) -> str | None:
    # The serializer (bytes), axis reordering (transpose) and checksums (crc32c) compress nothing.
    name = type(codec).__name__.removesuffix("Codec").lower()
    return None if name in ("bytes", "transpose", "crc32c") else name


def _numeric_dtype(document: dict[str, Any]) -> np.dtype[Any] | None:
    """The NumPy dtype of a numeric array of one or more dimensions; ``None`` for others."""
    if document.get("node_type") != "array" or not document.get("shape"):
        return None
    attributes = attributes_of(document)
    kind = attributes.get(KIND_ATTR)
    text = attributes.get(DTYPE_ATTR) if kind == "ndarray" else document.get("data_type")
    if kind not in (None, "ndarray") or not isinstance(text, str):
        return None
    try:
        dtype = np.dtype(text)
    except TypeError:
        return None  # a Zarr type NumPy does not name
    return dtype if dtype.kind in _NUMERIC and dtype.fields is None else None


class _Opener:
    """Reads a tree with every numeric array a :class:`LazyArray`."""

    def __init__(self, store: Store, where: str, alive: Callable[[], bool]) -> None:
        self.store = store
        self.where = where
        self.alive = alive

    async def node(
        self, path: str, name: str, document: dict[str, Any], pointer: _Pointer | None
    ) -> Any:
        attributes = attributes_of(document)
        kind = attributes.get(KIND_ATTR)
        dtype = _numeric_dtype(document)
        if dtype is not None:
            where = f"{name!r} in {self.where}"
            source = ZarrSource(self.store, path, document, pointer, dtype, where, self.alive)
            return LazyArray(source)
        if document.get("node_type") == "array":
            return await read_node(self.store, path, document)
        if kind == "dict":
            keys = [str(key) for key in attributes.get(KEYS_ATTR, [])]
            values = await self.members(path, name, keys, pointer)
            return OrderedDict(zip(keys, values, strict=True))
        if kind in ("tuple", "list"):
            length = int(attributes.get(LENGTH_ATTR, 0))
            items = await self.members(path, name, [str(i) for i in range(length)], pointer)
            return tuple(items) if kind == "tuple" else list(items)
        if kind == "key":
            version = str(attributes.get(VALUE_ATTR))
            value_path = join(path, version)
            value = await get_doc(self.store, value_path)
            if value is None:
                raise KeyError(f"no node {value_path!r}")
            return await self.node(value_path, name, value, _Pointer(path, version))
        if kind is None or kind == "keys":
            return await self.plain_group(path, name, kind == "keys", pointer)
        return await read_node(self.store, path, document)  # scalars, and the errors

    async def members(
        self, path: str, name: str, members: list[str], pointer: _Pointer | None
    ) -> list[Any]:
        paths = [join(path, member) for member in members]
        documents = await asyncio.gather(*(get_doc(self.store, item) for item in paths))
        for item, document in zip(paths, documents, strict=True):
            if document is None:
                raise KeyError(f"no node {item!r}")
        return await asyncio.gather(
            *(
                self.node(item, f"{name}/{member}", cast(dict[str, Any], document), pointer)
                for item, member, document in zip(paths, members, documents, strict=True)
            )
        )

    async def plain_group(
        self, path: str, name: str, keys: bool, pointer: _Pointer | None
    ) -> OrderedDict[str | int, Any]:
        # As a whole read reads it: members with metadata, by name (digits as ints).
        listed = [item async for item in self.store.list_dir(join(path, ""))]
        names = sorted(n for n in listed if n != METADATA and not n.startswith(TEMP_PREFIX))
        documents = await asyncio.gather(*(get_doc(self.store, join(path, n)) for n in names))
        found = [(n, doc) for n, doc in zip(names, documents, strict=True) if doc is not None]
        values = await asyncio.gather(
            *(self.node(join(path, n), f"{name}/{n}", doc, pointer) for n, doc in found)
        )
        return OrderedDict(
            (n if keys or not n.isdigit() else int(n), value)
            for (n, _), value in zip(found, values, strict=True)
        )


async def lazy_key(store: Store, path: str, key: str, where: str, alive: Callable[[], bool]) -> Any:
    """The tree of the key at ``path`` with every numeric array a :class:`LazyArray`.

    Other leaves are read. Opened again if the key is replaced meanwhile.

    Args:
        store: The store.
        path: The key's path in the store.
        key: The key, as errors name it.
        where: How errors name the store.
        alive: Tells whether the storage is open.

    Raises:
        KeyError: Nothing is stored at ``path``, or a node of its value is missing.
    """
    opener = _Opener(store, where, alive)
    for _ in range(_ATTEMPTS):
        document = await get_doc(store, path)
        if document is None:
            raise KeyError(f"no key {path!r}")
        attributes = attributes_of(document)
        if attributes.get(KIND_ATTR) != "key":
            return await opener.node(path, key, document, None)
        version = attributes.get(VALUE_ATTR)
        try:
            tree = await opener.node(path, key, document, None)
            failure: KeyError | None = None
        except KeyError as error:
            tree, failure = None, error
        again = await get_doc(store, path)
        if again is not None and attributes_of(again).get(VALUE_ATTR) == version:
            if failure is not None:
                raise failure
            return tree
    raise KeyError(f"{path!r} was replaced {_ATTEMPTS} times while it was opened")
