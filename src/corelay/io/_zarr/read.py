"""Reading trees and keys in the Zarr format: written by this package, or by another program.

A store may come from anywhere, so a read trusts none of it: every member name it follows is a
single name (never ``'..'`` or ``'a/b'``), a dict names each member once, a sequence's length is
checked against the members listed, a key points at a value, not at another key, containers
nest at most :data:`~corelay.io.tree.MAX_DEPTH` deep, and the data arrays declare beyond what
the store holds for them is bounded (:class:`ReadLimits`) before anything is allocated. What
breaks these rules raises :class:`~corelay.io.errors.UnreadableNodeError` naming its path.
"""

import asyncio
import base64
import math
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from zarr.abc.store import Store
from zarr.core.array import AsyncArray, parse_array_metadata
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.storage import StorePath

from corelay.io._keys import TEMP_PREFIX, name_problem
from corelay.io._zarr.bounded import bounded_metadata, inner_chunk_count
from corelay.io._zarr.layout import (
    DTYPE_ATTR,
    KEYS_ATTR,
    KIND_ATTR,
    LENGTH_ATTR,
    METADATA,
    PYTHON_SCALARS,
    VALUE_ATTR,
    attributes_of,
    get_doc,
    join,
)
from corelay.io.errors import UnreadableNodeError
from corelay.io.tree import DEFAULT_MAX_READ_BYTES, MAX_DEPTH, dtype_problem

__all__ = [
    "ReadLimits",
    "array_metadata_of",
    "check_chunk_size",
    "check_declared",
    "dict_keys",
    "first_missing_item",
    "key_exists",
    "list_keys",
    "read_array",
    "read_key",
    "read_node",
    "scalar_of",
    "sequence_length",
    "value_name",
]

# Reads retried when the value changes under them before giving up.
_READ_ATTEMPTS = 20
# Group kinds a reader knows: containers, scalars, keys, and groups of keys or entries.
_GROUP_KINDS = frozenset(("dict", "tuple", "list", "key", "keys", "hashed", *PYTHON_SCALARS))
# An array may declare this many chunks that the store does not hold (read as fill values)
# before the read is refused: each costs a request.
_MAX_MISSING_CHUNKS = 1 << 16
# Items of a sequence requested at once.
_ITEM_BATCH = 1024


@dataclass(frozen=True)
class ReadLimits:
    """What one read of a Zarr tree may allocate."""

    max_bytes: int = DEFAULT_MAX_READ_BYTES
    """The most bytes the arrays of one read may declare beyond what the store holds for them."""


def _from_bits(bits: str) -> float:
    value: float = struct.unpack("<d", bytes.fromhex(bits))[0]
    return value


def scalar_of(kind: str, stored: Any) -> Any:
    """The Python scalar of ``kind`` that a group's value attribute ``stored`` holds.

    Raises:
        ValueError: ``stored`` does not hold a value of ``kind``.
    """
    try:
        if kind == "float":
            return _from_bits(stored)
        if kind == "complex":
            return complex(_from_bits(stored[0]), _from_bits(stored[1]))
        if kind == "bytes":
            return base64.b64decode(stored, validate=True)
        if kind == "int" and isinstance(stored, int) and not isinstance(stored, bool):
            return stored
        if kind == "bool" and isinstance(stored, bool):
            return stored
        if kind == "str" and isinstance(stored, str):
            return stored
    except (ValueError, TypeError, IndexError, KeyError, struct.error) as error:
        raise ValueError(f"not a {kind} value: {error}") from None
    raise ValueError(f"not a {kind} value: {type(stored).__name__}")


def value_name(attributes: dict[str, Any], path: str) -> str:
    """The member of the key at ``path`` that holds its value, checked to be one of its members.

    Raises:
        UnreadableNodeError: The pointer is not the name of a value.
    """
    name = attributes.get(VALUE_ATTR)
    if (
        not isinstance(name, str)
        or not name.startswith(TEMP_PREFIX)
        or name_problem(name[len(TEMP_PREFIX) :]) is not None
    ):
        raise UnreadableNodeError(f"{path}: the key points at {name!r}, not at a value")
    return name


def array_metadata_of(path: str, document: dict[str, Any]) -> ArrayV3Metadata:
    """The Zarr array metadata of ``document``, the document of the array at ``path``.

    Its compressors check the size each chunk declares before decoding it (see
    :mod:`corelay.io._zarr.bounded`).

    Raises:
        UnreadableNodeError: The document is not valid Zarr v3 array metadata, or names a codec
            whose output cannot be bounded.
    """
    try:
        metadata = parse_array_metadata(document)
    except Exception as error:  # zarr raises many kinds for malformed metadata
        raise UnreadableNodeError(f"{path}: invalid Zarr array metadata: {error}") from None
    if not isinstance(metadata, ArrayV3Metadata):
        raise UnreadableNodeError(f"{path}: not Zarr v3 array metadata")
    return bounded_metadata(metadata, path)


def _restored(data: np.ndarray[Any, Any], dtype: object, path: str) -> np.ndarray[Any, Any]:
    if not isinstance(dtype, str):
        return data
    try:
        wanted = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError) as error:
        raise UnreadableNodeError(f"{path}: invalid dtype attribute {dtype!r}: {error}") from None
    problem = dtype_problem(wanted)
    if problem is not None:
        raise UnreadableNodeError(f"{path}: the dtype attribute names an unsupported {problem}")
    if wanted.kind == "S":
        if data.dtype != np.uint8 or not data.ndim or data.shape[-1] != wanted.itemsize:
            raise UnreadableNodeError(f"{path}: data of {data.dtype} is not {wanted}")
        return np.ascontiguousarray(data).view(wanted).reshape(data.shape[:-1])
    if wanted.kind == "U":
        if data.dtype.kind not in "TU":
            raise UnreadableNodeError(f"{path}: data of {data.dtype} is not {wanted}")
        # Through native order: NumPy's StringDType converts to native-order unicode only.
        return data.astype(wanted.newbyteorder("=")).astype(wanted, copy=False)
    if (data.dtype.kind, data.dtype.itemsize) != (wanted.kind, wanted.itemsize):
        raise UnreadableNodeError(f"{path}: data of {data.dtype} is not {wanted}")
    return data.astype(wanted, copy=False)  # the byte order the tree was written in


def dict_keys(path: str, keys: object) -> list[str]:
    """The keys a dict's attribute ``keys`` lists, checked to be distinct member names.

    Raises:
        UnreadableNodeError: They are not.
    """
    if not isinstance(keys, list):
        raise UnreadableNodeError(f"{path}: {KEYS_ATTR} is not a list of keys")
    checked: list[str] = []
    for key in cast(list[object], keys):
        if not isinstance(key, str) or name_problem(key) is not None:
            raise UnreadableNodeError(f"{path}: {KEYS_ATTR} holds {key!r}, not a member name")
        checked.append(key)
    if len(set(checked)) != len(checked):
        # Each member read once: repeated keys would read one member many times over.
        raise UnreadableNodeError(f"{path}: {KEYS_ATTR} names a member twice")
    return checked


def sequence_length(path: str, length: object) -> int:
    """A tuple's or list's attribute ``length``, checked to be a length.

    Raises:
        UnreadableNodeError: It is not.
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise UnreadableNodeError(f"{path}: {LENGTH_ATTR} is {length!r}, not a length")
    return length


async def first_missing_item(store: Store, path: str, length: int) -> int | None:
    """The first index below ``length`` with no member in the group at ``path``, or ``None``.

    The group is listed once: a length of billions must not make billions of requests.
    """
    if not length:
        return None
    members = {name async for name in store.list_dir(join(path, ""))}
    # At most one step more than there are members.
    return next((index for index in range(length) if str(index) not in members), None)


class _Reader:
    """One read of a tree: the store, and what the read has declared so far."""

    def __init__(self, store: Store, limits: ReadLimits) -> None:
        self.store = store
        self.limits = limits
        self.declared = 0  # bytes declared beyond what the store holds, at most

    async def node(self, path: str, document: dict[str, Any] | None, depth: int) -> Any:
        if document is None:
            document = await get_doc(self.store, path)
            if document is None:
                raise KeyError(f"no node {path!r}")
        attributes = attributes_of(document)
        kind = attributes.get(KIND_ATTR)
        if document.get("node_type") == "array":
            return await self.array(path, document, attributes)
        if kind is not None and (not isinstance(kind, str) or kind not in _GROUP_KINDS):
            raise UnreadableNodeError(f"{path}: unknown corelay.kind {kind!r}")
        if kind == "none":
            return None
        if kind in PYTHON_SCALARS:
            try:
                return scalar_of(kind, attributes.get(VALUE_ATTR))
            except ValueError as error:
                raise UnreadableNodeError(f"{path}: {error}") from None
        if kind == "key":
            return await self.value(path, value_name(attributes, path), depth)
        if depth >= MAX_DEPTH:
            raise UnreadableNodeError(
                f"{path}: containers nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)"
            )
        if kind == "dict":
            keys = dict_keys(path, attributes.get(KEYS_ATTR))
            values = await asyncio.gather(
                *(self.node(join(path, key), None, depth + 1) for key in keys)
            )
            return OrderedDict(zip(keys, values, strict=True))
        if kind in ("tuple", "list"):
            items = await self.items(
                path, sequence_length(path, attributes.get(LENGTH_ATTR)), depth
            )
            return tuple(items) if kind == "tuple" else list(items)
        return await self.plain_group(path, kind in ("keys", "hashed"), depth + 1)

    async def items(self, path: str, length: int, depth: int) -> list[Any]:
        # In batches: a missing item ends the read, so that a length of billions written by
        # another program costs one batch of requests, not billions.
        items: list[Any] = []
        for start in range(0, length, _ITEM_BATCH):
            batch = range(start, min(length, start + _ITEM_BATCH))
            items += await asyncio.gather(
                *(self.node(join(path, str(index)), None, depth + 1) for index in batch)
            )
        return items

    async def value(self, path: str, name: str, depth: int) -> Any:
        target = join(path, name)
        document = await get_doc(self.store, target)
        if document is None:
            raise KeyError(f"no node {target!r}")
        if attributes_of(document).get(KIND_ATTR) == "key":
            raise UnreadableNodeError(f"{target}: a key's value is another key")
        return await self.node(target, document, depth)

    async def plain_group(self, path: str, keys: bool, depth: int) -> OrderedDict[str | int, Any]:
        # A group of keys, or one written by another program: its members with metadata, by
        # name (names of digits as ints, as for HDF5 files of other programs).
        names = await _member_names(self.store, path)
        documents = await asyncio.gather(*(get_doc(self.store, join(path, name)) for name in names))
        found = [(name, doc) for name, doc in zip(names, documents, strict=True) if doc is not None]
        values = await asyncio.gather(
            *(self.node(join(path, name), doc, depth) for name, doc in found)
        )
        return OrderedDict(
            (name if keys or not name.isdigit() else int(name), value)
            for (name, _), value in zip(found, values, strict=True)
        )

    async def array(self, path: str, document: dict[str, Any], attributes: dict[str, Any]) -> Any:
        metadata = array_metadata_of(path, document)
        self.declared = await check_declared(self.store, path, metadata, self.limits, self.declared)
        data = await read_array(self.store, path, metadata)
        kind = attributes.get(KIND_ATTR)
        if kind in ("ndarray", "generic"):
            data = _restored(data, attributes.get(DTYPE_ATTR), path)
            return data[()] if kind == "generic" else data
        if kind is not None:
            raise UnreadableNodeError(f"{path}: unknown corelay.kind {kind!r} of an array")
        return data if data.ndim else data[()]


async def check_declared(
    store: Store, path: str, metadata: ArrayV3Metadata, limits: ReadLimits, declared: int = 0
) -> int:
    """Refuses an array whose declared data the store does not hold, before it is read.

    Args:
        store: The store.
        path: The array's path.
        metadata: Its metadata.
        limits: What the read may allocate.
        declared: What the read declared beyond the store so far (at most).

    Returns:
        What the read declared beyond the store with this array (at most).

    Raises:
        UnreadableNodeError: The array declares more chunks the store does not hold than a read
            makes requests for, or more data than the limits allow.
    """
    grid = metadata.chunk_grid
    if not isinstance(grid, RegularChunkGrid):
        raise UnreadableNodeError(f"{path}: a chunk grid other than a regular one")
    chunks = inner_chunk_count(metadata, grid.chunk_shape)
    native = metadata.dtype.to_native_dtype()
    check_chunk_size(path, metadata, limits.max_bytes)
    # The data, and the index entries of a sharded array's inner chunks (16 bytes each).
    size = math.prod(metadata.shape) * max(native.itemsize, 1) + 16 * chunks
    if declared + size <= limits.max_bytes and chunks <= _MAX_MISSING_CHUNKS:
        return declared + size
    # Only arrays that may be out of proportion pay for listing what the store holds.
    stored_keys = [key async for key in store.list_prefix(join(path, ""))]
    stored = await store.getsize_prefix(join(path, "")) if stored_keys else 0
    if chunks - len(stored_keys) > _MAX_MISSING_CHUNKS:
        raise UnreadableNodeError(
            f"{path}: declares {chunks} chunks, the store holds {len(stored_keys)} objects"
        )
    declared += max(0, size - stored)
    if declared > limits.max_bytes:
        raise UnreadableNodeError(
            f"{path}: declares {size} bytes of {native} (shape {metadata.shape}), "
            f"{declared} bytes beyond what the store holds over this read, more than "
            f"max_read_bytes = {limits.max_bytes}"
        )
    return declared


def check_chunk_size(path: str, metadata: ArrayV3Metadata, most: int) -> None:
    """Refuses an array whose chunks decode to more than its data and than ``most`` bytes.

    A chunk (a shard, if the array is sharded) is decoded whole however little of it lies in
    the array: a chunk shape far beyond a small array's shape is what a read allocates.

    Raises:
        UnreadableNodeError: One chunk decodes to more bytes than the whole array holds and
            than ``most``.
    """
    grid = metadata.chunk_grid
    if not isinstance(grid, RegularChunkGrid):
        raise UnreadableNodeError(f"{path}: a chunk grid other than a regular one")
    itemsize = max(metadata.dtype.to_native_dtype().itemsize, 1)
    size = math.prod(grid.chunk_shape) * itemsize
    if size > max(most, math.prod(metadata.shape) * itemsize):
        raise UnreadableNodeError(
            f"{path}: a chunk of shape {grid.chunk_shape} of {metadata.dtype.to_native_dtype()} "
            f"decodes to {size} bytes, more than the array of shape {metadata.shape} holds and "
            f"than max_read_bytes = {most}"
        )


async def _member_names(store: Store, path: str) -> list[str]:
    listed = [name async for name in store.list_dir(join(path, ""))]
    names = sorted(name for name in listed if name != METADATA and not name.startswith(TEMP_PREFIX))
    for name in names:
        if name_problem(name) is not None:
            raise UnreadableNodeError(f"{join(path, name)}: {name_problem(name)}")
    return names


async def read_array(store: Store, path: str, metadata: ArrayV3Metadata) -> np.ndarray[Any, Any]:
    """Reads the array at ``path`` whose metadata is ``metadata``, whole.

    Raises:
        UnreadableNodeError: Its chunks cannot be decoded.
    """
    array = AsyncArray(metadata=metadata, store_path=StorePath(store, path))
    try:
        data: Any = await array.getitem(...)
    except UnreadableNodeError as error:
        if str(error).startswith(path):
            raise
        raise UnreadableNodeError(f"{path}: {error}") from None  # a codec's, which has no path
    except OSError:
        raise
    except Exception as error:  # a codec's error for a chunk it cannot decode
        raise UnreadableNodeError(f"{path}: cannot be read: {error}") from None
    return np.asarray(data)


async def read_node(
    store: Store,
    path: str,
    document: dict[str, Any] | None = None,
    limits: ReadLimits = ReadLimits(),
) -> Any:
    """Reads the tree stored at ``path``: written here, or by another program.

    Raises:
        KeyError: A node of the tree is missing.
        UnreadableNodeError: A node breaks the rules of the format (see the module).
    """
    return await _Reader(store, limits).node(path, document, 0)


async def read_key(
    store: Store, path: str, marker: str | None = None, limits: ReadLimits = ReadLimits()
) -> Any:
    """Reads the value of the key at ``path``; a value replaced meanwhile is read again.

    Args:
        store: The store.
        path: The key's path.
        marker: An attribute the key must have; without it, the key reads as absent.
        limits: What the read may allocate.

    Raises:
        KeyError: Nothing is stored at ``path``, or a node of its value is missing.
        UnreadableNodeError: A node breaks the rules of the format (see the module).
    """
    for _ in range(_READ_ATTEMPTS):
        document = await get_doc(store, path)
        if document is None:
            raise KeyError(f"no key {path!r}")
        attributes = attributes_of(document)
        if marker is not None and marker not in attributes:
            raise KeyError(f"{path!r} is not a complete entry")
        reader = _Reader(store, limits)
        if attributes.get(KIND_ATTR) != "key":
            return await reader.node(path, document, 0)
        version = value_name(attributes, path)
        try:
            value = await reader.value(path, version, 0)
            failure: KeyError | None = None
        except KeyError as error:
            value, failure = None, error
        again = await get_doc(store, path)
        if again is not None and attributes_of(again).get(VALUE_ATTR) == version:
            if failure is not None:
                raise failure
            return value
    raise KeyError(f"{path!r} was replaced {_READ_ATTEMPTS} times while it was read")


async def key_exists(store: Store, path: str) -> bool:
    """Tells whether a node (a key, a group of keys, or another program's node) is at ``path``."""
    return await get_doc(store, path) is not None


async def list_keys(store: Store, path: str) -> list[str]:
    """The names of the nodes in the group at ``path``, sorted, without values being written."""
    names = await _member_names(store, path)
    found = await asyncio.gather(*(get_doc(store, join(path, name)) for name in names))
    return [name for name, document in zip(names, found, strict=True) if document is not None]


class TreeReader(_Reader):
    """One read of a tree, as other modules of the format extend it (lazy reads).

    Its methods check what they follow as :func:`read_node` does: ``node(path, document,
    depth)`` reads a node, ``value(path, name, depth)`` a key's value, ``array(path, document,
    attributes)`` an array.

    Args:
        store: The store.
        limits: What the read may allocate.
    """
