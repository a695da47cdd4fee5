"""Writing a validated tree as HDF5 groups and datasets, and replacing one atomically."""

import contextlib
import math
from collections.abc import Generator
from typing import Any, Literal, get_args

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5p, h5s, h5t, h5z
from h5py._objects import ObjectID

from corelay.io._hdf5.layout import (
    DTYPE_ATTR,
    FILE_TYPES,
    KIND_ATTR,
    PYTHON_SCALAR_TYPES,
    SCALAR_SPACE,
    STR_DTYPE,
    STR_MEMORY_TYPE,
    STR_TYPE,
    is_plain_array,
    memory_type,
)
from corelay.io._keys import TEMP_PREFIX
from corelay.io.tree import Node


def _group_create(track_order: bool) -> h5p.PropID:
    plist = h5p.create(h5p.GROUP_CREATE)
    plist.set_obj_track_times(False)
    if track_order:
        flags = h5p.CRT_ORDER_TRACKED | h5p.CRT_ORDER_INDEXED
        plist.set_link_creation_order(flags)
        plist.set_attr_creation_order(flags)
    return plist


def _link_create(encoding: int) -> h5p.PropID:
    plist = h5p.create(h5p.LINK_CREATE)
    plist.set_create_intermediate_group(True)
    plist.set_char_encoding(encoding)
    return plist


_GROUP_CREATE = {False: _group_create(False), True: _group_create(True)}
_LINK_CREATE_ASCII = _link_create(h5t.CSET_ASCII)
_LINK_CREATE_UTF8 = _link_create(h5t.CSET_UTF8)


def _link_create_for(name: bytes) -> h5p.PropID:
    return _LINK_CREATE_ASCII if name.isascii() else _LINK_CREATE_UTF8


def unlink(group: h5g.GroupID, path: bytes) -> None:
    """Removes the link at ``path`` in ``group``: one step of a replacement."""
    group.unlink(path)


def move(group: h5g.GroupID, source: bytes, destination: bytes) -> None:
    """Moves the link at ``source`` in ``group`` to ``destination``: one step of a replacement."""
    name = destination.rpartition(b"/")[2]
    group.links.move(source, group, destination, lcpl=_link_create_for(name))


@contextlib.contextmanager
def replacing(group: h5g.GroupID, path: bytes) -> Generator[bytes]:
    """Replaces the member at ``path`` in ``group`` with what the block writes.

    The block writes at the path it is given. If something is at ``path``, that is a temporary
    name beside it (``.corelay-tmp-`` before the last name; one left by a killed writer is removed
    first), and the new member is swapped into place when the block ends: a file opened natively
    (not journaled, so not rolled back) keeps the old member if the write fails. A new member is
    written in place. If the block raises, what it wrote is removed, as far as it can be.

    Args:
        group: The group ``path`` is relative to; the groups on the way must exist.
        path: Where the member goes, as ``b'a/b'``.

    Yields:
        The path to write at.
    """
    head, slash, name = path.rpartition(b"/")
    temporary = head + slash + TEMP_PREFIX.encode() + name
    links = group.links
    replace = links.exists(path)
    if links.exists(temporary):
        unlink(group, temporary)  # left by a writer that was killed
    target = temporary if replace else path
    try:
        yield target
    except BaseException:
        with contextlib.suppress(Exception):
            if links.exists(target):
                unlink(group, target)
        raise
    if replace:
        unlink(group, path)
        move(group, temporary, path)


def create_group(parent: h5py.Group, name: str, track_order: bool = False) -> h5py.Group:
    """Creates the group ``parent[name]``, as ``parent.create_group(name, track_order)`` does.

    With ``track_order``, HDF5 keeps the order in which links are created (and stores a group of
    few links compactly, in its object header).
    """
    key = name.encode()
    lcpl = _link_create_for(key)
    return h5py.Group(h5g.create(parent.id, key, lcpl=lcpl, gcpl=_GROUP_CREATE[track_order]))


def set_str_attr(oid: ObjectID, name: str, value: str) -> None:
    """Sets the attribute ``name`` of ``oid`` to ``value``, as h5py stores a str."""
    key = name.encode()
    if h5a.exists(oid, key):
        h5a.delete(oid, key)
    attr = h5a.create(oid, key, STR_TYPE, SCALAR_SPACE)
    attr.write(np.array(value, dtype=STR_DTYPE), mtype=STR_MEMORY_TYPE)


#: The compressions an array may be written with (``None``: stored as it is).
Compression = Literal["gzip", "lzf", "zstd"] | None
COMPRESSIONS: tuple[str, ...] = get_args(get_args(Compression)[0])

#: The bytes a chunk of a chunked dataset holds, about: the size HDF5's chunk cache holds one
#: of by default, and small enough that a slice of a few rows reads little more than it needs.
CHUNK_BYTES = 1 << 20

_GZIP_LEVEL = 4  # h5py's default level


def chunk_shape(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Chunks of about :data:`CHUNK_BYTES` for an array of ``shape``, along the leading axis.

    A chunk holds as many whole rows (items along axis 0) as fit; a row larger than a chunk is
    split along the next axis in the same way, and so on.
    """
    chunks = [max(length, 1) for length in shape]
    for axis in range(len(chunks)):
        rest = math.prod(chunks[axis + 1 :]) * itemsize  # one step along this axis
        if rest * chunks[axis] <= CHUNK_BYTES:
            break
        chunks[axis] = max(1, CHUNK_BYTES // rest)
        if rest <= CHUNK_BYTES:
            break
    return tuple(chunks)


def _zstd_filter() -> tuple[int, tuple[int, ...]]:
    try:
        import hdf5plugin  # an optional dependency
    except ImportError:
        raise ImportError(
            "compression='zstd' needs the hdf5plugin package: install the 'zstd' extra "
            "(pip install 'corelay-io-storage[zstd]')"
        ) from None
    zstd = hdf5plugin.Zstd()
    return int(zstd.filter_id), tuple(int(option) for option in zstd.filter_options)


def check_compression(compression: object) -> None:
    """Refuses a compression that is not one of :data:`Compression`.

    Raises:
        ValueError: An unknown compression.
        ImportError: ``'zstd'`` without hdf5plugin installed (the ``zstd`` extra).
    """
    if compression is not None and compression not in COMPRESSIONS:
        raise ValueError(
            f"unknown compression {compression!r}; expected None, "
            + ", ".join(repr(name) for name in COMPRESSIONS)
        )
    if compression == "zstd":
        _zstd_filter()


def chunked_plist(
    shape: tuple[int, ...], itemsize: int, compression: Compression, resizable: bool
) -> h5p.PropID:
    """The creation properties of a chunked dataset, compressed with ``compression``."""
    plist = h5p.create(h5p.DATASET_CREATE)
    plist.set_obj_track_times(False)
    # A dataset made to grow gets the chunks of a long array: its first batch may be short.
    plist.set_chunk(chunk_shape((2**62, *shape[1:]) if resizable else shape, itemsize))
    if resizable:
        # A dataset made to grow is written chunk by chunk as it grows.
        plist.set_alloc_time(h5d.ALLOC_TIME_INCR)
    if compression == "gzip":
        plist.set_deflate(_GZIP_LEVEL)
    elif compression == "lzf":
        plist.set_filter(h5z.FILTER_LZF, h5z.FLAG_OPTIONAL)
    elif compression == "zstd":
        filter_id, options = _zstd_filter()
        plist.set_filter(filter_id, h5z.FLAG_OPTIONAL, options)
    return plist


def create_dataset(
    group: h5g.GroupID, name: bytes, value: Any, compression: Compression = None
) -> h5d.DatasetID:
    """As ``group.create_dataset(name, data=value)``, for anything but unicode.

    A str must come as a 0-d array of ``h5py.string_dtype()``. A small numeric array is stored
    compact, inside the dataset's header: one read less for each read of it. A larger numeric
    array of one or more dimensions is chunked and compressed with ``compression`` (contiguous
    when it is ``None``).
    """
    array = np.asarray(value, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    dtype = array.dtype
    numeric = dtype.kind in "biufc" and dtype.fields is None
    file_type = FILE_TYPES.get(dtype) if numeric else None
    if file_type is None:
        file_type = h5t.py_create(dtype, logical=True)
        if numeric:
            FILE_TYPES[dtype] = file_type
    compact = numeric and 0 < array.nbytes <= _COMPACT_BYTES
    space = h5s.create_simple(array.shape)
    if compact:
        plist = _COMPACT
    elif compression is not None and numeric and array.ndim > 0 and array.size > 0:
        plist = chunked_plist(array.shape, dtype.itemsize, compression, resizable=False)
    else:
        plist = _CONTIGUOUS
    dataset = h5d.create(group, name, file_type, space, dcpl=plist)
    if array.size:
        dataset.write(h5s.ALL, h5s.ALL, array, memory_type(dtype) if numeric else None)
    return dataset


def create_resizable(
    group: h5g.GroupID, name: bytes, batch: np.ndarray[Any, Any], compression: Compression
) -> h5d.DatasetID:
    """Creates a dataset that grows along axis 0, chunked, and holding ``batch``."""
    dtype = batch.dtype
    space = h5s.create_simple(batch.shape, (h5s.UNLIMITED, *batch.shape[1:]))
    plist = chunked_plist(batch.shape, dtype.itemsize, compression, resizable=True)
    dataset = h5d.create(group, name, h5t.py_create(dtype, logical=True), space, dcpl=plist)
    if batch.size:
        dataset.write(h5s.ALL, h5s.ALL, np.ascontiguousarray(batch), memory_type(dtype))
    return dataset


# Up to this size an array is stored in its dataset's object header (HDF5's compact layout):
# one allocation and one read instead of two. Larger ones are stored contiguously.
_COMPACT_BYTES = 4096
_CONTIGUOUS = h5p.create(h5p.DATASET_CREATE)
_CONTIGUOUS.set_obj_track_times(False)  # h5py's default: the same data gives the same bytes
_COMPACT = h5p.create(h5p.DATASET_CREATE)
_COMPACT.set_obj_track_times(False)
_COMPACT.set_layout(h5d.COMPACT)


def write_node(
    parent: h5py.Group, name: str, value: Any, node: Node, compression: Compression = None
) -> None:
    """Writes the validated ``value``, described by ``node``, as ``parent[name]``.

    Numeric arrays larger than a few kilobytes are compressed with ``compression``.
    """
    kind = node.kind
    created: ObjectID
    if kind == "dict":
        group = create_group(parent, name, track_order=True)
        for key, item in value.items():
            write_node(group, key, item, node.children[key], compression)  # type: ignore[union-attr]
        created = group.id
    elif kind in ("tuple", "list"):
        group = create_group(parent, name)
        for index, (item, item_node) in enumerate(zip(value, node.items, strict=True)):  # type: ignore[union-attr]
            write_node(group, str(index), item, item_node, compression)
        created = group.id
    elif kind in ("ndarray", "generic"):
        if value.dtype.kind == "U":
            created = _write_unicode(parent, name, value).id
        else:
            created = create_dataset(parent.id, name.encode(), value, compression)
            if kind == "ndarray" and is_plain_array(value):
                return
    elif kind == "str":
        created = create_dataset(parent.id, name.encode(), np.array(value, dtype=STR_DTYPE))
    elif kind == "bytes":
        created = create_dataset(parent.id, name.encode(), np.frombuffer(value, dtype=np.uint8))
    elif kind == "none":
        created = parent.create_dataset(name, data=h5py.Empty("u1")).id
    else:
        created = create_dataset(parent.id, name.encode(), PYTHON_SCALAR_TYPES[kind](value))
    set_str_attr(created, KIND_ATTR, kind)


def _write_unicode(parent: h5py.Group, name: str, value: Any) -> h5py.Dataset:
    # HDF5 has no UCS-4 strings: store fixed-length UTF-8 and remember the NumPy dtype.
    encoded = np.asarray(np.char.encode(value, "utf-8"))
    # A view, not a copy: the same bytes, tagged as UTF-8 for h5py.
    utf8 = encoded.view(h5py.string_dtype("utf-8", encoded.dtype.itemsize))
    dataset = parent.create_dataset(name, data=utf8)
    dataset.attrs[DTYPE_ATTR] = value.dtype.str
    return dataset


# ---------------------------------------------------------------------------------- reading
