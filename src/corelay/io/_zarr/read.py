"""Reading trees and keys in the Zarr format: written by this package, or by another program."""

import asyncio
import base64
import struct
from collections import OrderedDict
from typing import Any, cast

import numpy as np
from zarr.abc.store import Store
from zarr.core.array import AsyncArray
from zarr.storage import StorePath

from corelay.io._keys import TEMP_PREFIX
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

__all__ = ["key_exists", "list_keys", "read_array", "read_key", "read_node", "scalar_of"]

# Reads retried when the value changes under them before giving up.
_READ_ATTEMPTS = 20


def _from_bits(bits: str) -> float:
    value: float = struct.unpack("<d", bytes.fromhex(bits))[0]
    return value


def scalar_of(kind: str, stored: Any) -> Any:
    """The Python scalar of ``kind`` that a group's value attribute ``stored`` holds."""
    if kind == "float":
        return _from_bits(stored)
    if kind == "complex":
        return complex(_from_bits(stored[0]), _from_bits(stored[1]))
    if kind == "bytes":
        return base64.b64decode(stored)
    if kind == "int":
        return int(stored)
    if kind == "bool":
        return bool(stored)
    return str(stored)


async def read_array(store: Store, path: str, document: dict[str, Any]) -> np.ndarray[Any, Any]:
    """Reads the array at ``path`` whose metadata document is ``document``, whole."""
    array = AsyncArray(metadata=cast(Any, document), store_path=StorePath(store, path))
    data: Any = await array.getitem(...)
    return np.asarray(data)


def _restored(data: np.ndarray[Any, Any], dtype: object) -> np.ndarray[Any, Any]:
    if not isinstance(dtype, str):
        return data
    wanted = np.dtype(dtype)
    if wanted.kind == "S":
        rows = np.ascontiguousarray(data, dtype=np.uint8)
        return rows.view(wanted).reshape(rows.shape[:-1])
    if wanted.kind == "U" and data.dtype.kind == "T":
        # Through native order: NumPy's StringDType converts to native-order unicode only.
        data = data.astype(wanted.newbyteorder("="))
    return data.astype(wanted, copy=False)


async def read_node(store: Store, path: str, document: dict[str, Any] | None = None) -> Any:
    """Reads the tree stored at ``path``: written here, or by another program.

    Raises:
        KeyError: A node of the tree is missing.
    """
    if document is None:
        document = await get_doc(store, path)
        if document is None:
            raise KeyError(f"no node {path!r}")
    attributes = attributes_of(document)
    kind = attributes.get(KIND_ATTR)
    if document.get("node_type") == "array":
        data = await read_array(store, path, document)
        if kind in ("ndarray", "generic"):
            data = _restored(data, attributes.get(DTYPE_ATTR))
            return data[()] if kind == "generic" else data
        return data if data.ndim else data[()]
    if kind == "dict":
        keys = [str(key) for key in attributes.get(KEYS_ATTR, [])]
        values = await asyncio.gather(*(read_node(store, f"{path}/{key}") for key in keys))
        return OrderedDict(zip(keys, values, strict=True))
    if kind in ("tuple", "list"):
        length = int(attributes.get(LENGTH_ATTR, 0))
        items = await asyncio.gather(*(read_node(store, f"{path}/{i}") for i in range(length)))
        return tuple(items) if kind == "tuple" else list(items)
    if kind == "none":
        return None
    if kind in PYTHON_SCALARS:
        return scalar_of(kind, attributes.get(VALUE_ATTR))
    if kind == "key":
        return await read_node(store, join(path, str(attributes.get(VALUE_ATTR))))
    return await _read_plain_group(store, path, kind == "keys")


async def _read_plain_group(store: Store, path: str, keys: bool) -> OrderedDict[str | int, Any]:
    # A group of keys, or one written by another program: its members with metadata, by name
    # (names of digits as ints, as for HDF5 files of other programs).
    listed = [name async for name in store.list_dir(join(path, ""))]
    names = sorted(name for name in listed if name != METADATA and not name.startswith(TEMP_PREFIX))
    documents = await asyncio.gather(*(get_doc(store, join(path, name)) for name in names))
    found = [(name, doc) for name, doc in zip(names, documents, strict=True) if doc is not None]
    values = await asyncio.gather(*(read_node(store, join(path, name), doc) for name, doc in found))
    return OrderedDict(
        (name if keys or not name.isdigit() else int(name), value)
        for (name, _), value in zip(found, values, strict=True)
    )


async def read_key(store: Store, path: str, marker: str | None = None) -> Any:
    """Reads the value of the key at ``path``; a value replaced meanwhile is read again.

    Args:
        store: The store.
        path: The key's path.
        marker: An attribute the key must have; without it, the key reads as absent.

    Raises:
        KeyError: Nothing is stored at ``path``, or a node of its value is missing.
    """
    for _ in range(_READ_ATTEMPTS):
        document = await get_doc(store, path)
        if document is None:
            raise KeyError(f"no key {path!r}")
        attributes = attributes_of(document)
        if marker is not None and marker not in attributes:
            raise KeyError(f"{path!r} is not a complete entry")
        if attributes.get(KIND_ATTR) != "key":
            return await read_node(store, path, document)
        version = str(attributes.get(VALUE_ATTR))
        try:
            value = await read_node(store, join(path, version))
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
    listed = [name async for name in store.list_dir(join(path, ""))]
    names = sorted(name for name in listed if name != METADATA and not name.startswith(TEMP_PREFIX))
    found = await asyncio.gather(*(get_doc(store, join(path, name)) for name in names))
    return [name for name, document in zip(names, found, strict=True) if document is not None]
