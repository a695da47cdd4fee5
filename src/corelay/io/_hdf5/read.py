"""Reading a stored tree from HDF5 groups and datasets, within limits."""

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5g, h5i, h5s, h5t
from h5py._objects import ObjectID

from corelay.io._hdf5.chunks import Pipeline, check_chunks, pipeline, read_decoded
from corelay.io._hdf5.layout import (
    DTYPE_ATTR,
    KIND_ATTR,
    PYTHON_SCALAR_TYPES,
    as_text,
    memory_type,
    open_member,
    str_attr,
)
from corelay.io._keys import TEMP_PREFIX
from corelay.io.errors import UnreadableNodeError
from corelay.io.tree import DEFAULT_MAX_READ_BYTES, MAX_DEPTH, StringInfo

# array, so the dtypes of the numeric types read so far are looked up by type.
_READ_TYPES: list[tuple[h5t.TypeID, np.dtype[Any]]] = []
_MAX_READ_TYPES = 32


def _numeric_dtype(dataset: h5d.DatasetID) -> np.dtype[Any] | None:
    file_type = dataset.get_type()
    for known_type, dtype in _READ_TYPES:
        if file_type.equal(known_type):
            return dtype
    dtype = dataset.dtype
    if dtype.kind not in "biufc" or dtype.fields is not None:
        return None
    if len(_READ_TYPES) < _MAX_READ_TYPES:
        _READ_TYPES.append((file_type.copy(), dtype))
    return dtype


def _read_numeric(
    dataset: h5d.DatasetID,
    known_shape: tuple[int, ...] | None = None,
    decoded: Pipeline | None = None,
) -> np.ndarray[Any, Any] | None:
    # As ``dataset[()]`` for a non-empty numeric dataset, as an array even when 0-d; else None.
    # With ``decoded``, its chunks are decoded here (see _decodes).
    dtype = _numeric_dtype(dataset)
    shape = dataset.shape if known_shape is None else known_shape
    if dtype is None or shape is None or 0 in shape:
        return None  # h5py.Empty has no shape
    array = np.empty(shape, dtype=dtype)
    if decoded is not None:
        return read_decoded(dataset, decoded, array)
    dataset.read(h5s.ALL, h5s.ALL, array, memory_type(dtype))
    return array


def _bounded(dataset: h5d.DatasetID, path: str, limits: "ReadLimits") -> Pipeline | None:
    """Makes sure no chunk of ``dataset`` decodes beyond a chunk's size.

    Returns:
        The pipeline to decode the chunks with (as :func:`read_decoded` does), or ``None`` if
        HDF5 may read the dataset: it is not filtered, or its chunks were checked.
    """
    pipe = pipeline(dataset, path, limits.any_filter)
    if pipe is None:
        return None
    if _decodes(dataset, pipe):
        return pipe
    check_chunks(dataset, pipe)
    return None


def _decodes(dataset: h5d.DatasetID, pipe: Pipeline) -> bool:
    # Numbers whose bytes in the file are those of their NumPy dtype are decoded here; other
    # types (bool, strings, unusual layouts) are converted by HDF5 from checked chunks.
    if not pipe.decodable:
        return False
    dtype = _numeric_dtype(dataset)
    shape = dataset.shape
    return (
        dtype is not None
        and dtype.kind in "iufc"
        and shape is not None
        and len(shape) > 0
        and 0 not in shape
        and memory_type(dtype).equal(dataset.get_type())
    )


def read_array(
    dataset: h5d.DatasetID, limits: "ReadLimits | None" = None, path: str | None = None
) -> np.ndarray[Any, Any]:
    """Reads the dataset of an ``ndarray`` or NumPy scalar leaf, as an array (0-d for a scalar).

    Args:
        dataset: The dataset.
        limits: What the read may allocate and follow; defaults to :class:`ReadLimits`'s
            defaults.
        path: How to name the dataset in errors; defaults to its name in the file.

    Raises:
        UnreadableNodeError: The dataset is virtual or stored in other files, or it declares
            more data than ``limits`` allow.
    """
    limits = limits if limits is not None else ReadLimits()
    where = path if path is not None else as_text(h5i.get_name(dataset))
    shape = _Reader(limits).check_dataset(dataset, where)
    return _read_array(dataset, shape, _bounded(dataset, where, limits))


def _read_array(
    dataset: h5d.DatasetID, shape: tuple[int, ...] | None = None, decoded: Pipeline | None = None
) -> np.ndarray[Any, Any]:
    array = _read_numeric(dataset, shape, decoded)
    if array is not None:
        return array
    wrapped = h5py.Dataset(dataset)
    # h5py reads a 0-d dataset as a NumPy scalar, in native byte order; for arrays of the
    # dataset's dtype this is no copy.
    array = np.asarray(wrapped[()], dtype=dataset.dtype)
    if array.dtype.kind == "S":  # unicode is stored as UTF-8 bytes, with its NumPy dtype
        unicode_dtype = str_attr(dataset, DTYPE_ATTR, scalar_only=True)
        if unicode_dtype is not None:
            if not isinstance(unicode_dtype, str):
                raise ValueError(f"the {DTYPE_ATTR} attribute is not a string")
            array = np.char.decode(array, "utf-8").astype(unicode_dtype, copy=False)
    return array


def string_info(dataset: h5py.Dataset) -> StringInfo | None:
    """The string encoding of ``dataset``, or ``None`` if it does not hold strings."""
    info = h5py.check_string_dtype(dataset.dtype)
    return None if info is None else StringInfo(info.encoding, info.length)


# A variable-length string takes this much in its dataset, which points into the file's heap.
_VLEN_ITEM_BYTES = 16
# Datasets up to this size are not compared with the file's size: one call less per small read.
_SMALL_BYTES = 1 << 20
_LEAF_KINDS = frozenset(("ndarray", "generic", "none", "str", "bytes", *PYTHON_SCALAR_TYPES))


@dataclass(frozen=True)
class ReadLimits:
    """What one read of an HDF5 tree may allocate and follow."""

    max_bytes: int = DEFAULT_MAX_READ_BYTES
    """The most bytes of data one read may declare beyond what the file holds for them.

    A chunked dataset declares its shape, not its data: a 1 KB file can declare terabytes of
    unwritten (fill value) or highly compressed chunks. The bytes a dataset declares beyond the
    bytes it takes in the file count against this limit, summed over the read; raise it to read
    larger compressed or sparsely written datasets.
    """

    any_filter: bool = False
    """Read chunks through HDF5 filters whose output size cannot be checked before decoding.

    Off by default: the chunks of gzip, shuffle, fletcher32, zstd and lzf datasets are checked
    not to decode beyond a chunk's size (see :mod:`corelay.io._hdf5.chunks`); datasets with any
    other filter are refused, as a small chunk could make the filter allocate gigabytes.
    """

    external: bool = False
    """Follow external links and read virtual datasets and datasets stored in other files.

    Off by default: a file read should not return another file's data, or fill values for a
    missing source file, without the reader asking for it.
    """


#: Makes the stand-in of a numeric dataset of one or more dimensions read lazily, given the
#: dataset and its path.
LazyLeaf = Callable[[h5d.DatasetID, str], Any]


def read_node(
    obj: h5py.Group | h5py.Dataset | ObjectID,
    limits: ReadLimits | None = None,
    path: str | None = None,
    lazy: LazyLeaf | None = None,
) -> Any:
    """Reads the tree stored at ``obj``.

    Args:
        obj: The group or dataset, or its low-level object.
        limits: What the read may allocate and follow; defaults to :class:`ReadLimits`'s
            defaults.
        path: How to name ``obj`` in errors; defaults to its name in the file.
        lazy: If given, numeric arrays of one or more dimensions are not read: each is
            replaced by what ``lazy`` makes of its dataset (and it is not counted against
            ``limits.max_bytes``).

    Raises:
        KeyError: A recorded tuple or list misses an item.
        UnreadableNodeError: A node the library does not read (see there).
    """
    oid = obj if isinstance(obj, ObjectID) else obj.id
    where = path if path is not None else as_text(h5i.get_name(oid))
    return _Reader(limits if limits is not None else ReadLimits(), lazy).node(oid, where, 0)


class _Reader:
    """One read: the groups reached so far and the bytes declared so far."""

    def __init__(self, limits: ReadLimits, lazy: LazyLeaf | None = None) -> None:
        self.limits = limits
        self.lazy = lazy
        self.groups: set[ObjectID] = set()
        self.unbacked = 0

    def node(self, oid: ObjectID, path: str, depth: int) -> Any:
        kind = self.kind(oid, path)
        if isinstance(oid, h5g.GroupID):
            return self.group(oid, kind, path, depth + 1)
        if not isinstance(oid, h5d.DatasetID):
            raise UnreadableNodeError(f"{path}: a named datatype, not data")
        if kind is not None and kind not in _LEAF_KINDS:
            raise UnreadableNodeError(f"{path}: unknown {KIND_ATTR} {kind!r} on a dataset")
        if self.lazy is not None and kind in (None, "ndarray") and _lazy_array(oid):
            self.check_dataset(oid, path, counted=False)
            pipeline(oid, path, self.limits.any_filter)  # refuses filters it cannot bound
            return self.lazy(oid, path)
        shape = self.check_dataset(oid, path)
        decoded = _bounded(oid, path, self.limits)
        try:
            return _read_leaf(oid, kind, shape, decoded)
        except UnreadableNodeError:
            raise
        except (OSError, RuntimeError, TypeError, ValueError, KeyError, AttributeError) as error:
            raise UnreadableNodeError(
                f"{path}: cannot be read as a {kind or 'dataset'}: {type(error).__name__}: {error}"
            ) from None

    @staticmethod
    def kind(oid: ObjectID, path: str) -> str | None:
        try:
            kind = str_attr(oid, KIND_ATTR, scalar_only=True)
        except (OSError, RuntimeError, TypeError, ValueError, KeyError) as error:
            raise UnreadableNodeError(
                f"{path}: unreadable {KIND_ATTR} attribute: {error}"
            ) from None
        if kind is not None and not isinstance(kind, str):
            raise UnreadableNodeError(f"{path}: the {KIND_ATTR} attribute is not a string")
        return kind

    def group(self, oid: h5g.GroupID, kind: str | None, path: str, depth: int) -> Any:
        if oid in self.groups:
            raise UnreadableNodeError(
                f"{path}: a group reached a second time (a group containing itself, or linked "
                "twice): the library reads trees, not shared structure"
            )
        if depth > MAX_DEPTH:
            raise UnreadableNodeError(
                f"{path}: groups nested deeper than {MAX_DEPTH} (corelay.io.tree.MAX_DEPTH)"
            )
        self.groups.add(oid)
        prefix = path.rstrip("/") + "/"
        if kind in ("tuple", "list"):
            items = [
                self.node(
                    self.member(oid, str(index), prefix, strict=True), f"{prefix}{index}", depth
                )
                for index in range(oid.get_num_objs())
            ]
            return tuple(items) if kind == "tuple" else items
        if kind not in ("dict", None):
            raise UnreadableNodeError(f"{path}: unknown {KIND_ATTR} {kind!r} on a group")
        names = self.names(oid, path)
        if kind == "dict":
            return OrderedDict(
                (name, self.node(self.member(oid, name, prefix), prefix + name, depth))
                for name in names
            )
        # Written by another tool: read as corelay 1.0.0 reads groups, names made of digits as
        # int keys; two names for one key would lose a value.
        tree: OrderedDict[str | int, Any] = OrderedDict()
        for name in names:
            if name.startswith(TEMP_PREFIX):
                continue
            key: str | int = int(name) if name.isascii() and name.isdigit() else name
            if key in tree:
                raise UnreadableNodeError(
                    f"{prefix}{name}: another member name of {path!r} reads as the same key "
                    f"{key!r}: one value would be lost"
                )
            tree[key] = self.node(self.member(oid, name, prefix), prefix + name, depth)
        return tree

    @staticmethod
    def names(oid: h5g.GroupID, path: str) -> list[str]:
        names: list[str] = []
        for raw in oid:
            try:
                names.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise UnreadableNodeError(
                    f"{path}: member name {raw!r} is not UTF-8 text"
                ) from None
        return names

    def member(self, oid: h5g.GroupID, name: str, prefix: str, strict: bool = False) -> ObjectID:
        key = name.encode()
        if strict and not oid.links.exists(key):
            raise KeyError(f"no item {name!r} in {prefix.rstrip('/') or '/'!r}")
        return open_member(oid, key, prefix + name, self.limits.external)

    def check_dataset(
        self, dataset: h5d.DatasetID, where: str | None, counted: bool = True
    ) -> tuple[int, ...] | None:
        """Refuses a dataset in other files, or one that declares more data than allowed.

        Without ``counted``, the dataset's data is not counted against the limit (it is not read).

        Returns:
            The dataset's shape.
        """
        path = where if where is not None else as_text(h5i.get_name(dataset))
        dtype, shape = dataset.dtype, dataset.shape
        count = 1 if shape is None else math.prod(shape)
        declared = count * (_VLEN_ITEM_BYTES if dtype.kind == "O" else dtype.itemsize)
        stored = dataset.get_storage_size()
        plist = dataset.get_create_plist()
        if plist.get_layout() == h5d.CHUNKED and plist.get_nfilters():
            # A filtered chunk is decoded whole: a chunk far larger than its dataset declares
            # what decoding it allocates.
            chunk_bytes = math.prod(plist.get_chunk()) * max(dtype.itemsize, 1)
            declared = max(declared, chunk_bytes)
        if not self.limits.external:
            if plist.get_layout() == h5d.VIRTUAL:
                raise UnreadableNodeError(
                    f"{path}: a virtual dataset, made of other datasets: not read "
                    "(set follow_external to read it)"
                )
            if plist.get_external_count():
                raise UnreadableNodeError(
                    f"{path}: a dataset stored in other files: not read "
                    "(set follow_external to read it)"
                )
        if stored > _SMALL_BYTES:
            # What a damaged or crafted header claims to be in the file must fit in it.
            file_size = h5i.get_file_id(dataset).get_filesize()
            if stored > file_size:
                raise UnreadableNodeError(
                    f"{path}: claims {stored} bytes in a file of {file_size} bytes"
                )
        if not counted:
            return shape
        self.unbacked += max(0, declared - stored)
        if self.unbacked > self.limits.max_bytes:
            raise UnreadableNodeError(
                f"{path}: declares {declared} bytes of data, {declared - stored} more than the "
                f"file holds for it; this read may allocate at most {self.limits.max_bytes} "
                "bytes beyond what the file holds (raise max_read_bytes to read it)"
            )
        return shape


def _lazy_array(dataset: h5d.DatasetID) -> bool:
    # A numeric array of one or more dimensions: the leaves read lazily.
    shape = dataset.shape
    return bool(shape) and _numeric_dtype(dataset) is not None


def _read_leaf(
    dataset: h5d.DatasetID,
    kind: str | None,
    shape: tuple[int, ...] | None,
    decoded: Pipeline | None,
) -> Any:
    # ``decoded``: the pipeline to decode the chunks with here (see _bounded).
    if kind is None:
        return _read_foreign_dataset(dataset, shape, decoded)
    if kind == "none":
        return None
    if kind in ("ndarray", "generic"):
        array = _read_array(dataset, shape, decoded)
        return array[()] if kind == "generic" else array
    numeric = _read_numeric(dataset, shape, decoded)
    raw: Any = h5py.Dataset(dataset)[()] if numeric is None else numeric
    if kind == "str":
        return raw.decode("utf-8")
    if kind == "bytes":
        return raw.tobytes()
    return raw.item()


def _read_foreign_dataset(
    oid: h5d.DatasetID, shape: tuple[int, ...] | None, decoded: Pipeline | None
) -> Any:
    numeric = _read_numeric(oid, shape, decoded)
    if numeric is not None:
        return numeric if numeric.ndim else numeric[()]
    dataset = h5py.Dataset(oid)
    if dataset.shape is None:
        return None
    if string_info(dataset) is not None:
        value = dataset.asstr()[()]
        return value if isinstance(value, str) else np.asarray(value.tolist(), dtype=str)
    return dataset[()]
