"""The HDF5 codec: stored trees to and from h5py groups and datasets.

Layout: a dict, tuple or list is a group (dict keys or item indices as member names); every leaf
is a dataset. The node kind is an attribute, so that a tree reads back exactly; files without it
(written by other tools) read as plain groups and datasets.
"""

from collections import OrderedDict
from typing import Any

import h5py
import numpy as np
from h5py import h5a, h5d, h5o, h5p, h5s, h5t

from corelay.io._keys import TEMP_PREFIX
from corelay.io.tree import Node, StringInfo

__all__ = [
    "DTYPE_ATTR",
    "KIND_ATTR",
    "get_str_attr",
    "open_child",
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
_DATASET_CREATE = h5p.create(h5p.DATASET_CREATE)
_DATASET_CREATE.set_obj_track_times(False)  # h5py's default: the same data gives the same bytes


def set_str_attr(obj: h5py.Group | h5py.Dataset, name: str, value: str) -> None:
    """Sets ``obj.attrs[name] = value``: a variable-length UTF-8 string, as h5py stores a str."""
    oid = obj.id
    key = name.encode()
    if h5a.exists(oid, key):
        h5a.delete(oid, key)
    attr = h5a.create(oid, key, _STR_TYPE, _SCALAR_SPACE)
    attr.write(np.array(value, dtype=_STR_DTYPE))


def get_str_attr(obj: h5py.Group | h5py.Dataset, name: str) -> Any:
    """Returns ``obj.attrs.get(name)``, reading the string attributes written here directly."""
    try:
        attr = h5a.open(obj.id, name.encode())
    except KeyError:
        return None
    # h5py does not check the shape when reading into an array: only read a scalar.
    if attr.get_space().get_simple_extent_type() == h5s.SCALAR:
        value = np.empty((), dtype=_STR_DTYPE)
        try:
            attr.read(value, mtype=_STR_MEMORY_TYPE)
        except (OSError, TypeError, ValueError):
            pass  # not a variable-length string; HDF5 found no conversion
        else:
            item: object = value[()]
            return item.decode("utf-8") if isinstance(item, bytes) else item
    return obj.attrs.get(name)  # written by another tool: let h5py decode it


def open_child(group: h5py.Group, name: str) -> h5py.Group | h5py.Dataset:
    """Returns ``group[name]`` for a direct member ``name``.

    Raises:
        KeyError: ``group`` has no member ``name``.
    """
    key = name.encode()
    if not group.id.links.exists(key):
        raise KeyError(f"no member {name!r} in {group.name!r}")
    oid = h5o.open(group.id, key)
    if isinstance(oid, h5d.DatasetID):
        return h5py.Dataset(oid)
    return group[name]  # a group or a named datatype: let h5py wrap it


def _create_dataset(parent: h5py.Group, name: str, value: Any) -> h5py.Dataset:
    # As ``parent.create_dataset(name, data=value)``, for a numeric or bytes array or scalar.
    array = np.asarray(value, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    dataset = h5d.create(
        parent.id,
        name.encode(),
        h5t.py_create(array.dtype, logical=True),
        h5s.create_simple(array.shape),
        dcpl=_DATASET_CREATE,
    )
    if array.size:
        dataset.write(h5s.ALL, h5s.ALL, array)
    return h5py.Dataset(dataset)


_MEMORY_TYPES: dict[np.dtype[Any], h5t.TypeID] = {}


def _read_numeric(dataset: h5d.DatasetID) -> np.ndarray[Any, Any] | None:
    # As ``dataset[()]`` for a non-empty numeric dataset, as an array even when 0-d; else None.
    dtype, shape = dataset.dtype, dataset.shape
    if dtype.kind not in "biufc" or dtype.fields is not None or 0 in shape:
        return None
    # Building the memory type costs more than reading a small dataset: one per dtype.
    memory_type = _MEMORY_TYPES.get(dtype)
    if memory_type is None:
        memory_type = _MEMORY_TYPES[dtype] = h5t.py_create(dtype)
    array = np.empty(shape, dtype=dtype)
    dataset.read(h5s.ALL, h5s.ALL, array, memory_type)
    return array


def read_array(dataset: h5d.DatasetID) -> np.ndarray[Any, Any]:
    """Reads the dataset of an ``ndarray`` or NumPy scalar leaf, as an array (0-d for a scalar)."""
    array = _read_numeric(dataset)
    if array is not None:
        return array
    wrapped = h5py.Dataset(dataset)
    # h5py reads a 0-d dataset as a NumPy scalar, in native byte order; for arrays of the
    # dataset's dtype this is no copy.
    array = np.asarray(wrapped[()], dtype=dataset.dtype)
    if array.dtype.kind == "S":  # unicode is stored as UTF-8 bytes, with its NumPy dtype
        unicode_dtype = get_str_attr(wrapped, DTYPE_ATTR)
        if unicode_dtype is not None:
            array = np.char.decode(array, "utf-8").astype(unicode_dtype, copy=False)
    return array


def string_info(dataset: h5py.Dataset) -> StringInfo | None:
    """The string encoding of ``dataset``, or ``None`` if it does not hold strings."""
    info = h5py.check_string_dtype(dataset.dtype)
    return None if info is None else StringInfo(info.encoding, info.length)


def write_node(parent: h5py.Group, name: str, value: Any, node: Node) -> None:
    """Writes the validated ``value``, described by ``node``, as ``parent[name]``."""
    kind = node.kind
    created: h5py.Group | h5py.Dataset
    if kind == "dict":
        created = parent.create_group(name, track_order=True)
        for key, item in value.items():
            write_node(created, key, item, node.children[key])  # type: ignore[union-attr]
    elif kind in ("tuple", "list"):
        created = parent.create_group(name)
        for index, (item, item_node) in enumerate(zip(value, node.items, strict=True)):  # type: ignore[union-attr]
            write_node(created, str(index), item, item_node)
    elif kind in ("ndarray", "generic"):
        if value.dtype.kind == "U":
            created = _write_unicode(parent, name, value)
        else:
            created = _create_dataset(parent, name, value)
    elif kind == "str":
        created = parent.create_dataset(name, data=value, dtype=h5py.string_dtype())
    elif kind == "bytes":
        created = _create_dataset(parent, name, np.frombuffer(value, dtype=np.uint8))
    elif kind == "none":
        created = parent.create_dataset(name, data=h5py.Empty("u1"))
    else:
        created = _create_dataset(parent, name, _PYTHON_SCALAR_TYPES[kind](value))
    set_str_attr(created, KIND_ATTR, kind)


def _write_unicode(parent: h5py.Group, name: str, value: Any) -> h5py.Dataset:
    # HDF5 has no UCS-4 strings: store fixed-length UTF-8 and remember the NumPy dtype.
    encoded = np.asarray(np.char.encode(value, "utf-8"))
    # A view, not a copy: the same bytes, tagged as UTF-8 for h5py.
    utf8 = encoded.view(h5py.string_dtype("utf-8", encoded.dtype.itemsize))
    dataset = parent.create_dataset(name, data=utf8)
    dataset.attrs[DTYPE_ATTR] = value.dtype.str
    return dataset


def read_node(obj: h5py.Group | h5py.Dataset) -> Any:
    """Reads the tree stored at ``obj``.

    Raises:
        KeyError: A recorded tuple or list misses an item.
    """
    kind = get_str_attr(obj, KIND_ATTR)
    if isinstance(obj, h5py.Group):
        if kind == "dict":
            return OrderedDict((key, read_node(open_child(obj, key))) for key in obj)
        if kind in ("tuple", "list"):
            items = [read_node(open_child(obj, str(index))) for index in range(len(obj))]
            return tuple(items) if kind == "tuple" else items
        return _read_foreign_group(obj)
    if kind is None:
        return _read_foreign_dataset(obj)
    if kind == "none":
        return None
    if kind in ("ndarray", "generic"):
        array = read_array(obj.id)
        return array[()] if kind == "generic" else array
    raw = _read_numeric(obj.id)
    if raw is None:
        raw = obj[()]
    if kind == "str":
        return raw.decode("utf-8")
    if kind == "bytes":
        return raw.tobytes()
    return raw.item()


def _read_foreign_group(group: h5py.Group) -> OrderedDict[str | int, Any]:
    # As corelay 1.0.0 reads them: keys made only of digits become ints.
    return OrderedDict(
        (int(key) if key.isdigit() else key, read_node(group[key]))
        for key in group
        if not key.startswith(TEMP_PREFIX)
    )


def _read_foreign_dataset(dataset: h5py.Dataset) -> Any:
    if dataset.shape is None:
        return None
    if string_info(dataset) is not None:
        value = dataset.asstr()[()]
        return value if isinstance(value, str) else np.asarray(value.tolist(), dtype=str)
    return dataset[()]
