"""Writing trees in the Zarr format, and replacing a key's value by switching its pointer."""

import asyncio
import base64
import struct
from collections.abc import Awaitable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.abc.codec import BytesBytesCodec
from zarr.abc.store import Store
from zarr.codecs import BytesCodec, GzipCodec, VLenUTF8Codec, ZstdCodec
from zarr.core.array import AsyncArray
from zarr.core.array_spec import ArrayConfig
from zarr.core.dtype import parse_dtype
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.storage import StorePath

from corelay.io._keys import TEMP_PREFIX
from corelay.io._zarr.layout import (
    DTYPE_ATTR,
    KEYS_ATTR,
    KIND_ATTR,
    LENGTH_ATTR,
    METADATA,
    PROTOTYPE,
    VALUE_ATTR,
    Compression,
    Location,
    attributes_of,
    get_doc,
    join,
    new_version,
    put_group,
)
from corelay.io.tree import Node

__all__ = [
    "array_codecs",
    "array_metadata",
    "check_names",
    "chunk_shape",
    "delete_key",
    "make_parents",
    "missing_parents",
    "replacing",
    "write_key",
    "write_tree",
]

_COMPRESSIONS = ("zstd", "gzip", None)
# About this many bytes per chunk, along the leading axes: few objects per array on an object
# store, and small enough for a slice to read little more than it needs.
_CHUNK_BYTES = 4 * 2**20
# Store requests in flight at once for one tree.
_CONCURRENCY = 32


def chunk_shape(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Chunks of about 4 MiB: whole trailing axes, as many leading rows as fit."""
    chunks = [max(1, size) for size in shape]
    inner = max(1, itemsize)
    for axis in range(len(shape) - 1, -1, -1):
        if inner * chunks[axis] > _CHUNK_BYTES:
            chunks[axis] = max(1, _CHUNK_BYTES // inner)
            for leading in range(axis):
                chunks[leading] = 1
            break
        inner *= chunks[axis]
    return tuple(chunks)


def array_codecs(compression: Compression) -> tuple[BytesBytesCodec, ...]:
    """Zarr's compressor codecs for ``compression``.

    Raises:
        ValueError: ``compression`` is not ``'zstd'``, ``'gzip'`` or ``None``.
    """
    if compression == "zstd":
        return (ZstdCodec(),)
    if compression == "gzip":
        return (GzipCodec(),)
    if compression is None:
        return ()
    raise ValueError(f"invalid compression {compression!r}; expected one of {_COMPRESSIONS}")


@dataclass
class _Array:
    path: str
    data: np.ndarray[Any, Any]
    attributes: dict[str, Any]


@dataclass
class _Group:
    path: str
    attributes: dict[str, Any]


def _float_bits(value: float) -> str:
    return struct.pack("<d", value).hex()


def _scalar_value(kind: str, value: Any) -> Any:
    if kind == "float":
        return _float_bits(value)
    if kind == "complex":
        return [_float_bits(value.real), _float_bits(value.imag)]
    if kind == "bytes":
        return base64.b64encode(value).decode("ascii")
    return value  # bool, int, str as JSON; None has no value


def _nodes(path: str, value: Any, node: Node) -> Iterator[_Array | _Group]:
    kind = node.kind
    if kind == "dict":
        yield _Group(path, {KIND_ATTR: kind, KEYS_ATTR: list(value)})
        for key, item in value.items():
            yield from _nodes(f"{path}/{key}", item, node.children[key])  # type: ignore[union-attr]
    elif kind in ("tuple", "list"):
        yield _Group(path, {KIND_ATTR: kind, LENGTH_ATTR: len(value)})
        for index, (item, item_node) in enumerate(zip(value, node.items, strict=True)):  # type: ignore[union-attr]
            yield from _nodes(f"{path}/{index}", item, item_node)
    elif kind in ("ndarray", "generic"):
        array = np.asarray(value)
        yield _Array(path, array, {KIND_ATTR: kind, DTYPE_ATTR: array.dtype.str})
    elif kind == "none":
        yield _Group(path, {KIND_ATTR: kind})
    else:
        yield _Group(path, {KIND_ATTR: kind, VALUE_ATTR: _scalar_value(kind, value)})


def _stored(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # What Zarr stores for an array: unicode as variable-length UTF-8 strings (a type of the
    # Zarr v3 specification; its fixed-length unicode is not), bytes as uint8 rows.
    if array.dtype.kind == "U":
        # NumPy converts only native-order unicode to StringDType.
        native = array.astype(array.dtype.newbyteorder("="), copy=False)
        return native.astype(np.dtypes.StringDType())
    if array.dtype.kind == "S":
        contiguous = np.ascontiguousarray(array)
        return contiguous.view(np.uint8).reshape((*array.shape, array.dtype.itemsize))
    return array


def array_metadata(
    array: np.ndarray[Any, Any],
    attributes: dict[str, Any],
    compression: Compression,
    chunks: tuple[int, ...] | None = None,
) -> ArrayV3Metadata:
    """The Zarr metadata of ``array`` as this format stores it (see :func:`_stored`).

    ``chunks`` defaults to :func:`chunk_shape` of the array's own shape.
    """
    data_type = parse_dtype(array.dtype, zarr_format=3)
    serializer = VLenUTF8Codec() if array.dtype.kind == "T" else BytesCodec()
    if chunks is None:
        chunks = chunk_shape(array.shape, array.dtype.itemsize or 16)
    return ArrayV3Metadata(
        shape=array.shape,
        data_type=data_type,
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": chunks}},
        chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
        fill_value=data_type.default_scalar(),
        codecs=(serializer, *array_codecs(compression)),
        attributes=attributes,
        dimension_names=None,
    )


async def _write_array(store: Store, node: _Array, compression: Compression) -> None:
    data = _stored(node.data)
    metadata = array_metadata(data, node.attributes, compression)
    await store.set(join(node.path, METADATA), metadata.to_buffer_dict(PROTOTYPE)[METADATA])
    if data.size:
        # Every chunk is written: one equal to the fill value (0) would read back as the fill
        # value, which loses the sign of a negative zero.
        config = ArrayConfig(order="C", write_empty_chunks=True)
        array = AsyncArray(metadata=metadata, store_path=StorePath(store, node.path), config=config)
        await array.setitem(..., data)


async def _bounded(awaitables: Iterator[Awaitable[None]]) -> None:
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def one(awaitable: Awaitable[None]) -> None:
        async with limit:
            await awaitable

    tasks = [asyncio.ensure_future(one(awaitable)) for awaitable in awaitables]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


def check_names(names: list[str], what: str) -> None:
    """Refuses a member name Zarr keeps for itself: its metadata documents are ``zarr.json``.

    Raises:
        ValueError: A name is ``'zarr.json'``; the message names ``what`` and where it is.
    """
    if METADATA in names:
        where = "/".join(names[: names.index(METADATA) + 1])
        raise ValueError(
            f"{what}: the name {METADATA!r} (at {where!r}) cannot be stored in a Zarr store, "
            "whose metadata documents have that name"
        )


async def write_tree(
    store: Store, path: str, value: Any, node: Node, compression: Compression
) -> None:
    """Writes the validated ``value``, described by ``node``, as the node at ``path``.

    Raises:
        ValueError: A dict key of ``value`` is ``'zarr.json'``. Nothing is written.
    """
    items = list(_nodes(path, value, node))
    for item in items:  # checked before the first write
        check_names(item.path[len(path) + 1 :].split("/"), "cannot write the tree")
    await _bounded(
        _write_array(store, item, compression)
        if isinstance(item, _Array)
        else put_group(store, item.path, item.attributes)
        for item in items
    )


async def replacing(
    store: Store,
    path: str,
    value: Any,
    node: Node,
    compression: Compression,
    attributes: dict[str, Any] | None = None,
    sweep: bool = True,
    old: dict[str, Any] | None = None,
) -> None:
    """Writes ``value`` as the key at ``path``, atomically replacing what was there.

    The value goes under a fresh member name, then the key's metadata document (with
    ``attributes`` besides the pointer) is written to point at it, then the old value is
    deleted. With ``sweep``, every other member of the key goes too (values left by killed
    writers, keys below this one), as when an HDF5 group is replaced; without it only the old
    value, so that concurrent writers of the key never delete each other's values.

    Args:
        store: The store.
        path: The key's path in the store.
        value: The validated tree.
        node: Its description.
        compression: How its arrays are compressed.
        attributes: More attributes of the key.
        sweep: Whether to delete every other member of the key.
        old: The key's metadata document if it was already read.
    """
    if old is None:
        old = await get_doc(store, path)
    old_version = attributes_of(old).get(VALUE_ATTR) if old is not None else None
    version = new_version()
    target = join(path, version)
    try:
        await write_tree(store, target, value, node, compression)
        await put_group(store, path, {KIND_ATTR: "key", VALUE_ATTR: version, **(attributes or {})})
    except BaseException:
        with suppress(Exception):
            await store.delete_dir(target)
        raise
    if sweep:
        names = [name async for name in store.list_dir(join(path, ""))]
        stale = [name for name in names if name not in (METADATA, version)]
        # Metadata documents first: a key below this one is absent before its value goes.
        for name in stale:
            inner = [key async for key in store.list_prefix(join(path, name, ""))]
            with suppress(FileNotFoundError):
                await asyncio.gather(
                    *(store.delete(key) for key in inner if key.endswith("/" + METADATA))
                )
        await asyncio.gather(*(_delete_dir(store, join(path, name)) for name in stale))
    elif isinstance(old_version, str) and old_version.startswith(TEMP_PREFIX):
        await _delete_dir(store, join(path, old_version))


async def delete_key(store: Store, path: str) -> None:
    """Deletes the key at ``path``, its metadata document first.

    That one object gone, every reader finds the key absent; its values and the keys below it
    go after.
    """
    with suppress(FileNotFoundError):
        await store.delete(join(path, METADATA))
    await _delete_dir(store, path)


async def _delete_dir(store: Store, prefix: str) -> None:
    # Another writer may be deleting the same old value: what it deleted first is not an error.
    for _ in range(3):
        try:
            await store.delete_dir(prefix)
            return
        except FileNotFoundError:
            continue


async def write_key(
    location: Location, key: str, names: list[str], value: Any, node: Node, compression: Compression
) -> None:
    """Writes ``value`` as the key ``names`` of ``location``, creating the groups on its path.

    Raises:
        ValueError: A node on the key's path is an array, or a name is ``'zarr.json'``.
            Nothing is written.
    """
    check_names(names, f"cannot write key {key!r}")
    missing = await missing_parents(location, key, names)
    await replacing(location.store, location.path(*names), value, node, compression)
    await make_parents(location.store, missing)


async def missing_parents(location: Location, key: str, names: list[str]) -> list[str]:
    """The store paths of the groups on the way to the key ``names`` that do not exist yet.

    Raises:
        ValueError: A node on the key's path is an array.
    """
    parents = [location.path(*names[:depth]) for depth in range(1, len(names))]
    documents = await asyncio.gather(*(get_doc(location.store, parent) for parent in parents))
    for depth, document in enumerate(documents):
        if document is not None and document.get("node_type") != "group":
            where = "/".join(names[: depth + 1])
            raise ValueError(f"cannot write key {key!r}: {where!r} is an array, not a group")
    return [parent for parent, document in zip(parents, documents, strict=True) if document is None]


async def make_parents(store: Store, missing: list[str]) -> None:
    """Writes the groups of keys :func:`missing_parents` found missing, innermost first.

    The key appears to readers when the outermost new group does.
    """
    for parent in reversed(missing):
        await put_group(store, parent, {KIND_ATTR: "keys"})
