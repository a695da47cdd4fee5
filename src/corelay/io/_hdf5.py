"""The HDF5 codec: stored trees to and from h5py groups and datasets.

Layout: a dict, tuple or list is a group (dict keys or item indices as member names); every leaf
is a dataset. The node kind is an attribute, so that a tree reads back exactly; files without it
(written by other tools) read as plain groups and datasets. A numeric array of one or more
dimensions needs no attribute, as a plain dataset reads back as exactly that array; leaving it
out saves a third of the cost of writing a small array.
"""

import math
import signal
import threading
from collections import OrderedDict
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5i, h5l, h5o, h5p, h5s, h5t
from h5py._objects import ObjectID

from corelay.io._keys import TEMP_PREFIX
from corelay.io.tree import MAX_DEPTH, Node, StringInfo

__all__ = [
    "DEFAULT_MAX_READ_BYTES",
    "DTYPE_ATTR",
    "KIND_ATTR",
    "DanglingLinkError",
    "ReadLimits",
    "UnreadableNodeError",
    "create_dataset",
    "create_group",
    "find",
    "get_str_attr",
    "has_member",
    "interrupts_deferred",
    "open_child",
    "open_path",
    "read_array",
    "read_node",
    "set_str_attr",
    "string_info",
    "write_node",
]

#: Attribute holding the node kind (``'dict'``, ``'ndarray'``, ``'int'``, ...).
KIND_ATTR = "corelay.kind"
#: Attribute holding the NumPy dtype of unicode leaves, which HDF5 stores as UTF-8 bytes.
DTYPE_ATTR = "corelay.dtype"

_PYTHON_SCALAR_TYPES: dict[str, type[np.generic]] = {
    "bool": np.bool_,
    "int": np.int64,
    "float": np.float64,
    "complex": np.complex128,
}


# h5py's high-level layer costs tens of microseconds per call, more than HDF5 itself for small
# nodes. The helpers below make the HDF5 calls of ``attrs[...]``, ``create_dataset`` and
# ``group[name]`` directly, so the files are the same.
_STR_DTYPE = h5py.string_dtype()
_STR_TYPE = h5t.py_create(_STR_DTYPE, logical=True)
_STR_MEMORY_TYPE = h5t.py_create(_STR_DTYPE)
_SCALAR_SPACE = h5s.create(h5s.SCALAR)


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


def create_group(parent: h5py.Group, name: str, track_order: bool = False) -> h5py.Group:
    """Creates the group ``parent[name]``, as ``parent.create_group(name, track_order)`` does.

    With ``track_order``, HDF5 keeps the order in which links are created (and stores a group of
    few links compactly, in its object header).
    """
    try:
        key, lcpl = name.encode("ascii"), _LINK_CREATE_ASCII
    except UnicodeEncodeError:
        key, lcpl = name.encode("utf-8"), _LINK_CREATE_UTF8
    return h5py.Group(h5g.create(parent.id, key, lcpl=lcpl, gcpl=_GROUP_CREATE[track_order]))


def set_str_attr(obj: h5py.Group | h5py.Dataset, name: str, value: str) -> None:
    """Sets ``obj.attrs[name] = value``: a variable-length UTF-8 string, as h5py stores a str."""
    _set_str_attr(obj.id, name, value)


def _set_str_attr(oid: ObjectID, name: str, value: str) -> None:
    key = name.encode()
    if h5a.exists(oid, key):
        h5a.delete(oid, key)
    attr = h5a.create(oid, key, _STR_TYPE, _SCALAR_SPACE)
    attr.write(np.array(value, dtype=_STR_DTYPE), mtype=_STR_MEMORY_TYPE)


def get_str_attr(obj: h5py.Group | h5py.Dataset, name: str) -> Any:
    """Returns ``obj.attrs.get(name)``, reading the string attributes written here directly."""
    return _str_attr(obj.id, name)


def _str_attr(oid: ObjectID, name: str, scalar_only: bool = False) -> Any:
    # With ``scalar_only``, an attribute that is not a scalar is not read (a crafted one can
    # declare any size): it is returned as a (non-str) marker.
    try:
        attr = h5a.open(oid, name.encode())
    except KeyError:
        return None
    # h5py does not check the shape when reading into an array: only read a scalar.
    if attr.get_space().get_simple_extent_type() != h5s.SCALAR:
        if scalar_only:
            return _NOT_SCALAR
    elif scalar_only and attr.get_type().get_size() > _MAX_ATTR_BYTES:
        return _NOT_SCALAR  # a scalar of an array type, say
    else:
        value = np.empty((), dtype=_STR_DTYPE)
        try:
            attr.read(value, mtype=_STR_MEMORY_TYPE)
        except (OSError, TypeError, ValueError):
            pass  # not a variable-length string; HDF5 found no conversion
        else:
            item: object = value[()]
            return item.decode("utf-8") if isinstance(item, bytes) else item
    return _wrap(oid).attrs.get(name)  # written by another tool: let h5py decode it


_NOT_SCALAR = object()
_MAX_ATTR_BYTES = 1 << 16


def has_member(group: h5py.Group, name: str) -> bool:
    """Tells whether ``group`` has a direct member ``name`` (as ``name in group``, faster)."""
    return group.id.links.exists(name.encode())


def open_child(
    group: h5py.Group, name: str, external: bool = False, path: str | None = None
) -> h5py.Group | h5py.Dataset:
    """Returns ``group[name]`` for a direct member ``name``, following no link out of the file.

    Args:
        group: The group.
        name: The member's name.
        external: Follow an external link (to another file) too.
        path: How to name the member in errors; defaults to its name.

    Raises:
        KeyError: ``group`` has no member ``name``.
        UnreadableNodeError: The member is an external link (unless ``external``), a soft link
            to nothing or in a loop, or a named datatype.
    """
    key = name.encode()
    if not group.id.links.exists(key):
        raise KeyError(f"no member {name!r} in {group.name!r}")
    return _wrap(_open_member(group.id, key, name if path is None else path, external))


def open_path(
    group: h5py.Group, names: list[str], external: bool = False
) -> h5py.Group | h5py.Dataset | None:
    """Returns ``group['/'.join(names)]``, or ``None`` if there is nothing at that path.

    A soft link to nothing is nothing; other links are opened as :func:`open_child` opens them.
    """
    found = find(group, names, external)
    return None if found is None else _wrap(found)


def find(group: h5py.Group, names: list[str], external: bool = False) -> ObjectID | None:
    """As :func:`open_path`, returning the low-level object: cheaper to read."""
    found: ObjectID = group.id
    for depth, name in enumerate(names):
        key = name.encode()
        if not isinstance(found, h5g.GroupID) or not found.links.exists(key):
            return None
        try:
            found = _open_member(found, key, "/" + "/".join(names[: depth + 1]), external)
        except DanglingLinkError:
            return None
    return found


def _wrap(oid: ObjectID) -> h5py.Group | h5py.Dataset:
    if isinstance(oid, h5d.DatasetID):
        return h5py.Dataset(oid)
    if isinstance(oid, h5g.GroupID):
        return h5py.Group(oid)
    raise UnreadableNodeError(f"{_text(h5i.get_name(oid))}: a named datatype, not data")


def create_dataset(group: h5g.GroupID, name: bytes, value: Any) -> h5d.DatasetID:
    """As ``group.create_dataset(name, data=value)``, for anything but unicode.

    A str must come as a 0-d array of ``h5py.string_dtype()``. A small numeric array is stored
    compact, inside the dataset's header: one read less for each read of it.
    """
    array = np.asarray(value, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    dtype = array.dtype
    numeric = dtype.kind in "biufc" and dtype.fields is None
    file_type = _FILE_TYPES.get(dtype) if numeric else None
    if file_type is None:
        file_type = h5t.py_create(dtype, logical=True)
        if numeric:
            _FILE_TYPES[dtype] = file_type
    compact = numeric and 0 < array.nbytes <= _COMPACT_BYTES
    space = h5s.create_simple(array.shape)
    dataset = h5d.create(group, name, file_type, space, dcpl=_COMPACT if compact else _CONTIGUOUS)
    if array.size:
        dataset.write(h5s.ALL, h5s.ALL, array, _memory_type(dtype) if numeric else None)
    return dataset


# Up to this size an array is stored in its dataset's object header (HDF5's compact layout):
# one allocation and one read instead of two. Larger ones are stored contiguously.
_COMPACT_BYTES = 4096
_CONTIGUOUS = h5p.create(h5p.DATASET_CREATE)
_CONTIGUOUS.set_obj_track_times(False)  # h5py's default: the same data gives the same bytes
_COMPACT = h5p.create(h5p.DATASET_CREATE)
_COMPACT.set_obj_track_times(False)
_COMPACT.set_layout(h5d.COMPACT)

# Building an HDF5 type costs more than writing or reading a small dataset: one per NumPy dtype
# (numeric dtypes only: string dtypes differ in h5py's tags, which dtype equality ignores).
_FILE_TYPES: dict[np.dtype[Any], h5t.TypeID] = {}
_MEMORY_TYPES: dict[np.dtype[Any], h5t.TypeID] = {}
# And reading: h5py's conversion of a dataset's type to a dtype costs more than reading a small
# array, so the dtypes of the numeric types read so far are looked up by type.
_READ_TYPES: list[tuple[h5t.TypeID, np.dtype[Any]]] = []
_MAX_READ_TYPES = 32


def _memory_type(dtype: np.dtype[Any]) -> h5t.TypeID:
    memory_type = _MEMORY_TYPES.get(dtype)
    if memory_type is None:
        memory_type = _MEMORY_TYPES[dtype] = h5t.py_create(dtype)
    return memory_type


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
    dataset: h5d.DatasetID, known_shape: tuple[int, ...] | None = None
) -> np.ndarray[Any, Any] | None:
    # As ``dataset[()]`` for a non-empty numeric dataset, as an array even when 0-d; else None.
    dtype = _numeric_dtype(dataset)
    shape = dataset.shape if known_shape is None else known_shape
    if dtype is None or shape is None or 0 in shape:
        return None  # h5py.Empty has no shape
    array = np.empty(shape, dtype=dtype)
    dataset.read(h5s.ALL, h5s.ALL, array, _memory_type(dtype))
    return array


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
    shape = _Reader(limits if limits is not None else ReadLimits()).check_dataset(dataset, path)
    return _read_array(dataset, shape)


def _read_array(
    dataset: h5d.DatasetID, shape: tuple[int, ...] | None = None
) -> np.ndarray[Any, Any]:
    array = _read_numeric(dataset, shape)
    if array is not None:
        return array
    wrapped = h5py.Dataset(dataset)
    # h5py reads a 0-d dataset as a NumPy scalar, in native byte order; for arrays of the
    # dataset's dtype this is no copy.
    array = np.asarray(wrapped[()], dtype=dataset.dtype)
    if array.dtype.kind == "S":  # unicode is stored as UTF-8 bytes, with its NumPy dtype
        unicode_dtype = _str_attr(dataset, DTYPE_ATTR, scalar_only=True)
        if unicode_dtype is not None:
            if not isinstance(unicode_dtype, str):
                raise ValueError(f"the {DTYPE_ATTR} attribute is not a string")
            array = np.char.decode(array, "utf-8").astype(unicode_dtype, copy=False)
    return array


def string_info(dataset: h5py.Dataset) -> StringInfo | None:
    """The string encoding of ``dataset``, or ``None`` if it does not hold strings."""
    info = h5py.check_string_dtype(dataset.dtype)
    return None if info is None else StringInfo(info.encoding, info.length)


def write_node(parent: h5py.Group, name: str, value: Any, node: Node) -> None:
    """Writes the validated ``value``, described by ``node``, as ``parent[name]``."""
    kind = node.kind
    created: ObjectID
    if kind == "dict":
        group = create_group(parent, name, track_order=True)
        for key, item in value.items():
            write_node(group, key, item, node.children[key])  # type: ignore[union-attr]
        created = group.id
    elif kind in ("tuple", "list"):
        group = create_group(parent, name)
        for index, (item, item_node) in enumerate(zip(value, node.items, strict=True)):  # type: ignore[union-attr]
            write_node(group, str(index), item, item_node)
        created = group.id
    elif kind in ("ndarray", "generic"):
        if value.dtype.kind == "U":
            created = _write_unicode(parent, name, value).id
        else:
            created = create_dataset(parent.id, name.encode(), value)
            if kind == "ndarray" and value.ndim and value.dtype.kind != "S":
                return  # every reader reads this dataset as this array: no kind needed
    elif kind == "str":
        created = create_dataset(parent.id, name.encode(), np.array(value, dtype=_STR_DTYPE))
    elif kind == "bytes":
        created = create_dataset(parent.id, name.encode(), np.frombuffer(value, dtype=np.uint8))
    elif kind == "none":
        created = parent.create_dataset(name, data=h5py.Empty("u1")).id
    else:
        created = create_dataset(parent.id, name.encode(), _PYTHON_SCALAR_TYPES[kind](value))
    _set_str_attr(created, KIND_ATTR, kind)


def _write_unicode(parent: h5py.Group, name: str, value: Any) -> h5py.Dataset:
    # HDF5 has no UCS-4 strings: store fixed-length UTF-8 and remember the NumPy dtype.
    encoded = np.asarray(np.char.encode(value, "utf-8"))
    # A view, not a copy: the same bytes, tagged as UTF-8 for h5py.
    utf8 = encoded.view(h5py.string_dtype("utf-8", encoded.dtype.itemsize))
    dataset = parent.create_dataset(name, data=utf8)
    dataset.attrs[DTYPE_ATTR] = value.dtype.str
    return dataset


# ---------------------------------------------------------------------------------- reading

#: The default of :attr:`ReadLimits.max_bytes`: 1 GiB.
DEFAULT_MAX_READ_BYTES = 1 << 30
# A variable-length string takes this much in its dataset, which points into the file's heap.
_VLEN_ITEM_BYTES = 16
# Datasets up to this size are not compared with the file's size: one call less per small read.
_SMALL_BYTES = 1 << 20
_LEAF_KINDS = frozenset(("ndarray", "generic", "none", "str", "bytes", *_PYTHON_SCALAR_TYPES))


class UnreadableNodeError(ValueError):
    """A node of an HDF5 file that the library does not read; the message names its path.

    An external link, a virtual dataset or one stored in other files (unless followed on
    purpose), a soft link to nothing or in a loop, a group reached twice (a group containing
    itself, or shared structure), a named datatype, a member name that is not UTF-8, an unknown
    ``corelay.kind``, data of a type the library does not hold, containers nested deeper than
    :data:`~corelay.io.tree.MAX_DEPTH`, or more declared data than the read may allocate.
    """


class DanglingLinkError(UnreadableNodeError):
    """A soft link to an object that does not exist."""


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

    external: bool = False
    """Follow external links and read virtual datasets and datasets stored in other files.

    Off by default: a file read should not return another file's data, or fill values for a
    missing source file, without the reader asking for it.
    """


def read_node(
    obj: h5py.Group | h5py.Dataset | ObjectID,
    limits: ReadLimits | None = None,
    path: str | None = None,
) -> Any:
    """Reads the tree stored at ``obj``.

    Args:
        obj: The group or dataset, or its low-level object.
        limits: What the read may allocate and follow; defaults to :class:`ReadLimits`'s
            defaults.
        path: How to name ``obj`` in errors; defaults to its name in the file.

    Raises:
        KeyError: A recorded tuple or list misses an item.
        UnreadableNodeError: A node the library does not read (see there).
    """
    oid = obj if isinstance(obj, ObjectID) else obj.id
    where = path if path is not None else _text(h5i.get_name(oid))
    return _Reader(limits if limits is not None else ReadLimits()).node(oid, where, 0)


def _open_member(group: h5g.GroupID, name: bytes, path: str, external: bool) -> ObjectID:
    link_type = group.links.get_info(name).type
    if link_type == h5l.TYPE_EXTERNAL and not external:
        file_name, target = group.links.get_val(name)[:2]
        raise UnreadableNodeError(
            f"{path}: external link to {_text(target)!r} in {_text(file_name)!r}: not followed "
            "(set follow_external to follow it)"
        )
    if link_type not in (h5l.TYPE_HARD, h5l.TYPE_SOFT, h5l.TYPE_EXTERNAL):
        raise UnreadableNodeError(f"{path}: user-defined link of type {link_type}: not followed")
    try:
        oid: ObjectID = h5o.open(group, name)
    except (KeyError, RuntimeError, OSError, ValueError) as error:
        if link_type == h5l.TYPE_SOFT:
            soft_target = _text(group.links.get_val(name))
            if isinstance(error, KeyError):
                raise DanglingLinkError(
                    f"{path}: soft link to {soft_target!r}, which does not exist"
                ) from None
            raise UnreadableNodeError(
                f"{path}: soft link to {soft_target!r} cannot be followed: {error}"
            ) from None
        raise UnreadableNodeError(f"{path}: cannot be opened: {error}") from None
    if not isinstance(oid, h5d.DatasetID | h5g.GroupID):
        raise UnreadableNodeError(f"{path}: a named datatype, not data")
    return oid


def _text(value: object) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


class _Reader:
    """One read: the groups reached so far and the bytes declared so far."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
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
        shape = self.check_dataset(oid, path)
        try:
            return _read_leaf(oid, kind, shape)
        except UnreadableNodeError:
            raise
        except (OSError, RuntimeError, TypeError, ValueError, KeyError, AttributeError) as error:
            raise UnreadableNodeError(
                f"{path}: cannot be read as a {kind or 'dataset'}: {type(error).__name__}: {error}"
            ) from None

    @staticmethod
    def kind(oid: ObjectID, path: str) -> str | None:
        try:
            kind = _str_attr(oid, KIND_ATTR, scalar_only=True)
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
        return _open_member(oid, key, prefix + name, self.limits.external)

    def check_dataset(self, dataset: h5d.DatasetID, where: str | None) -> tuple[int, ...] | None:
        """Refuses a dataset in other files, or one that declares more data than allowed.

        Returns:
            The dataset's shape.
        """
        path = where if where is not None else _text(h5i.get_name(dataset))
        dtype, shape = dataset.dtype, dataset.shape
        count = 1 if shape is None else math.prod(shape)
        declared = count * (_VLEN_ITEM_BYTES if dtype.kind == "O" else dtype.itemsize)
        stored = dataset.get_storage_size()
        if not self.limits.external:
            plist = dataset.get_create_plist()
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
        self.unbacked += max(0, declared - stored)
        if self.unbacked > self.limits.max_bytes:
            raise UnreadableNodeError(
                f"{path}: declares {declared} bytes of data, {declared - stored} more than the "
                f"file holds for it; this read may allocate at most {self.limits.max_bytes} "
                "bytes beyond what the file holds (raise max_read_bytes to read it)"
            )
        return shape


def _read_leaf(dataset: h5d.DatasetID, kind: str | None, shape: tuple[int, ...] | None) -> Any:
    if kind is None:
        return _read_foreign_dataset(dataset, shape)
    if kind == "none":
        return None
    if kind in ("ndarray", "generic"):
        array = _read_array(dataset, shape)
        return array[()] if kind == "generic" else array
    numeric = _read_numeric(dataset, shape)
    raw: Any = h5py.Dataset(dataset)[()] if numeric is None else numeric
    if kind == "str":
        return raw.decode("utf-8")
    if kind == "bytes":
        return raw.tobytes()
    return raw.item()


def _read_foreign_dataset(oid: h5d.DatasetID, shape: tuple[int, ...] | None) -> Any:
    numeric = _read_numeric(oid, shape)
    if numeric is not None:
        return numeric if numeric.ndim else numeric[()]
    dataset = h5py.Dataset(oid)
    if dataset.shape is None:
        return None
    if string_info(dataset) is not None:
        value = dataset.asstr()[()]
        return value if isinstance(value, str) else np.asarray(value.tolist(), dtype=str)
    return dataset[()]


@contextmanager
def interrupts_deferred() -> Generator[None]:
    """Holds back Ctrl-C (``SIGINT``) until the block ends, then raises it.

    A :class:`KeyboardInterrupt` raised inside one of HDF5's callbacks (the journaled file's
    writes) leaves HDF5's cache inconsistent for good. Outside the main thread, or when
    ``SIGINT`` is not handled by Python's default handler, nothing is deferred.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return
    received: list[int] = []

    def hold(number: int, frame: FrameType | None) -> None:
        received.append(number)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
