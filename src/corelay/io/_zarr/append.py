"""Growing an array of the Zarr format batch by batch.

An array made by ``append`` is the value of its key like any other (see :mod:`corelay.io._zarr`),
with the attribute ``corelay.appendable`` and chunks of about 4 MiB of rows, whatever the first
batch's length. A batch is written into the chunks past the array's shape first; then the
array's metadata document, the one object that holds the shape, is rewritten with the new
shape. Until that last write, readers (and a process that restarts after a kill) see the array
as it was: rows past its shape are never read. The last chunk, when partly filled, is read,
completed and rewritten whole by zarr: its rows within the old shape keep their values, so a
reader that reads it before or after sees the same rows.
"""

from contextlib import suppress
from typing import Any, cast

import numpy as np
from zarr.abc.store import Store
from zarr.core.array import AsyncArray
from zarr.core.array_spec import ArrayConfig
from zarr.storage import StorePath

from corelay.io._zarr.layout import (
    APPENDABLE_ATTR,
    DTYPE_ATTR,
    KIND_ATTR,
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
from corelay.io._zarr.read import array_metadata_of
from corelay.io._zarr.write import (
    array_metadata,
    check_names,
    chunk_shape,
    make_parents,
    missing_parents,
)
from corelay.io.errors import NoDataSource

__all__ = ["append_batch", "check_batch"]

# The dtype kinds an appended array may have: booleans and numbers.
_NUMERIC = "biufc"
# Every chunk is written, even one equal to the fill value: a negative zero keeps its sign.
_CONFIG = ArrayConfig(order="C", write_empty_chunks=True)


def check_batch(batch: np.ndarray[Any, Any], where: str) -> None:
    """Refuses a batch that no array made by append can take.

    Raises:
        TypeError: ``batch`` is not a numeric array.
        ValueError: ``batch`` is 0-d.
    """
    if batch.dtype.kind not in _NUMERIC or batch.dtype.fields is not None:
        raise TypeError(f"{where}: batch has dtype {batch.dtype}, not a numeric dtype")
    if batch.ndim == 0:
        raise ValueError(f"{where}: batch is 0-d; it needs an axis to append along")


async def append_batch(
    location: Location,
    key: str,
    names: list[str],
    batch: np.ndarray[Any, Any],
    compression: Compression,
    where: str,
) -> tuple[int, ...]:
    """Appends the checked ``batch`` to the array at the key ``names``, creating it if absent.

    Everything is checked before the store changes.

    Returns:
        The array's shape after the append.

    Raises:
        TypeError: The key holds something else than an array made by append, or an array of
            another dtype.
        ValueError: The batch's shape past the first axis is not the array's, a node on the
            key's path is an array, or a name on it is ``'zarr.json'``.
        NoDataSource: The key points at a value that is missing (a damaged store).
    """
    store = location.store
    path = location.path(*names)
    check_names(names, f"cannot append to key {key!r}")
    missing = await missing_parents(location, key, names)
    pointer = await get_doc(store, path)
    if pointer is None:
        await _create(store, path, batch, compression)
        shape = tuple(int(length) for length in batch.shape)
    else:
        value_path, document = await _appendable(store, path, pointer, batch, where)
        shape = await _grow(store, value_path, document, batch)
    # Groups on the way that a killed first append did not get to write are written now.
    await make_parents(store, missing)
    return shape


async def _create(
    store: Store, path: str, batch: np.ndarray[Any, Any], compression: Compression
) -> None:
    # As for a write: the array goes under a fresh name, and the key's pointer is written last.
    version = new_version()
    target = join(path, version)
    attributes = {KIND_ATTR: "ndarray", DTYPE_ATTR: batch.dtype.str, APPENDABLE_ATTR: True}
    # The chunks of a long array: the first batch may be short.
    chunks = chunk_shape((2**62, *batch.shape[1:]), batch.dtype.itemsize)
    metadata = array_metadata(batch, attributes, compression, chunks)
    try:
        await store.set(join(target, METADATA), metadata.to_buffer_dict(PROTOTYPE)[METADATA])
        if batch.size:
            stored = StorePath(store, target)
            array = AsyncArray(metadata=metadata, store_path=stored, config=_CONFIG)
            await array.setitem(..., batch)
        await put_group(store, path, {KIND_ATTR: "key", VALUE_ATTR: version})
    except BaseException:
        with suppress(Exception):
            await store.delete_dir(target)
        raise


async def _appendable(
    store: Store,
    path: str,
    pointer: dict[str, Any],
    batch: np.ndarray[Any, Any],
    where: str,
) -> tuple[str, dict[str, Any]]:
    """The path and metadata document of the array at the key, if ``batch`` can be appended."""
    attributes = attributes_of(pointer)
    if attributes.get(KIND_ATTR) != "key":
        what = "group of keys" if pointer.get("node_type") == "group" else "node of another program"
        raise TypeError(f"{where}: the key holds a {what}, not an array to append to")
    version = str(attributes.get(VALUE_ATTR))
    value_path = join(path, version)
    document = await get_doc(store, value_path)
    if document is None:
        raise NoDataSource(f"{where}: the key's value {version!r} is missing")
    value = attributes_of(document)
    kind = value.get(KIND_ATTR)
    shape = tuple(int(length) for length in cast(list[Any], document.get("shape", [])))
    if document.get("node_type") != "array":
        raise TypeError(f"{where}: the key holds a {kind or 'group'}, not an array to append to")
    if kind != "ndarray" or value.get(APPENDABLE_ATTR) is not True:
        what = "an array" if kind in (None, "ndarray") else f"a {kind} value"
        raise TypeError(
            f"{where}: the key holds {what} of shape {shape} written whole, not an array made "
            "by append"
        )
    dtype = np.dtype(str(value.get(DTYPE_ATTR)))
    if dtype.newbyteorder("=") != batch.dtype.newbyteorder("="):
        raise TypeError(f"{where}: batch has dtype {batch.dtype}, the array {dtype}")
    if batch.shape[1:] != shape[1:] or batch.ndim != len(shape):
        raise ValueError(
            f"{where}: batch has shape {batch.shape}, the array {shape}: the shapes past "
            "the first axis differ"
        )
    return value_path, document


async def _grow(
    store: Store, path: str, document: dict[str, Any], batch: np.ndarray[Any, Any]
) -> tuple[int, ...]:
    metadata = array_metadata_of(path, document)
    shape = metadata.shape
    if batch.shape[0] == 0:
        return shape
    start = shape[0]
    grown = metadata.update_shape((start + batch.shape[0], *shape[1:]))
    array = AsyncArray(metadata=grown, store_path=StorePath(store, path), config=_CONFIG)
    await array.setitem(slice(start, grown.shape[0]), batch)
    # The commit: readers see the new shape, and the rows it adds, from here on.
    await store.set(join(path, METADATA), grown.to_buffer_dict(PROTOTYPE)[METADATA])
    return grown.shape
