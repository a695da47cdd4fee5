"""The HDF5 codec: stored trees to and from h5py groups and datasets.

Layout: a dict, tuple or list is a group (dict keys or item indices as member names); every leaf
is a dataset. The node kind is an attribute, so that a tree reads back exactly; files without it
(written by other tools) read as plain groups and datasets.
"""

from collections import OrderedDict
from typing import Any

import h5py
import numpy as np

from corelay.io._keys import TEMP_PREFIX
from corelay.io.tree import Node, StringInfo

__all__ = ["DTYPE_ATTR", "KIND_ATTR", "read_node", "string_info", "write_node"]

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
            created = parent.create_dataset(name, data=value)
    elif kind == "str":
        created = parent.create_dataset(name, data=value, dtype=h5py.string_dtype())
    elif kind == "bytes":
        created = parent.create_dataset(name, data=np.frombuffer(value, dtype=np.uint8))
    elif kind == "none":
        created = parent.create_dataset(name, data=h5py.Empty("u1"))
    else:
        created = parent.create_dataset(name, data=_PYTHON_SCALAR_TYPES[kind](value))
    created.attrs[KIND_ATTR] = kind


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
    kind = obj.attrs.get(KIND_ATTR)
    if isinstance(obj, h5py.Group):
        if kind == "dict":
            return OrderedDict((key, read_node(obj[key])) for key in obj)
        if kind in ("tuple", "list"):
            items = [read_node(obj[str(index)]) for index in range(len(obj))]
            return tuple(items) if kind == "tuple" else items
        return _read_foreign_group(obj)
    if kind is None:
        return _read_foreign_dataset(obj)
    if kind == "none":
        return None
    raw = obj[()]
    if kind in ("ndarray", "generic"):
        # h5py reads a 0-d dataset as a NumPy scalar, in native byte order; for arrays of the
        # dataset's dtype this is no copy.
        array = np.asarray(raw, dtype=obj.dtype)
        unicode_dtype = obj.attrs.get(DTYPE_ATTR)
        if unicode_dtype is not None:
            array = np.char.decode(array, "utf-8").astype(unicode_dtype, copy=False)
        return array[()] if kind == "generic" else array
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
