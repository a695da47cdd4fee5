"""The values a description of an HDF5 file shows: attributes, small datasets, metadata."""

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any, cast

import h5py
import numpy as np
from h5py import h5a, h5d
from pydantic import JsonValue

from corelay.io import _hdf5
from corelay.io._description import (
    META_ELEMENTS,
    META_MEMBERS,
    VALUE_BYTES,
    ContainerDescription,
    LeafDescription,
    json_value,
)
from corelay.io._hdf5 import KIND_ATTR, get_str_attr
from corelay.io._keys import TEMP_PREFIX
from corelay.io.tree import (
    validate,
)

# What h5py raises for damaged metadata, besides OSError.
UNREADABLE = (OSError, RuntimeError, ValueError, TypeError, KeyError, OverflowError)
_META_DEPTH = 16
# The library's own attributes, shown as what they record (the kind, the entry's hashes).
_OWN_ATTR_PREFIX = "corelay."
_SCALAR_KINDS = ("bool", "int", "float", "complex", "str", "bytes", "generic")


def json_dataset(obj: h5py.Group | h5py.Dataset | None) -> JsonValue:
    # corelay 1.0.0 stores input and output hashes and the metadata as JSON strings.
    if not isinstance(obj, h5py.Dataset) or obj.shape != () or _hdf5.string_info(obj) is None:
        return None
    text = str(obj.asstr()[()])
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        return text
    return value


def meta_value(
    obj: h5py.Group | h5py.Dataset, depth: int = 0, seen: set[object] | None = None
) -> JsonValue:
    """A small stored tree as JSON, reading only small datasets (see HashedEntryDescription).

    Each group is shown once (``seen``): groups linked twice at every level would otherwise
    be shown a number of times exponential in the depth.
    """
    if depth > _META_DEPTH:
        return "..."
    if isinstance(obj, h5py.Group):
        seen = set() if seen is None else seen
        if obj.id in seen:
            return "<a group shown before>"
        seen.add(obj.id)
        kind = get_str_attr(obj, KIND_ATTR)
        names = [name for name in member_names(obj) if not name.startswith(TEMP_PREFIX)]
        shown = names[:META_MEMBERS]
        values: list[JsonValue] = []
        for name in shown:
            try:  # never out of the file, nor through a broken link
                child = _hdf5.open_child(obj, name)
            except UNREADABLE as error:
                values.append(f"<{error}>")
                continue
            values.append(meta_value(child, depth + 1, seen))
        more = f"{len(names) - len(shown)} more" if len(names) > len(shown) else None
        if kind in ("tuple", "list"):
            return values if more is None else [*values, f"... {more}"]
        members: dict[str, JsonValue] = dict(zip(shown, values, strict=True))
        if more is not None:
            members["..."] = more
        return members
    return _dataset_json(obj, None)


def cut_meta(value: object, depth: int = 0) -> JsonValue:
    """Metadata stored as JSON, cut short as :func:`meta_value` cuts a stored tree."""
    if depth > _META_DEPTH:
        return "..."
    if isinstance(value, list):
        items = cast("list[object]", value)
        values = [cut_meta(item, depth + 1) for item in items[:META_MEMBERS]]
        more = len(items) - META_MEMBERS
        return values if more <= 0 else [*values, f"... {more} more"]
    if isinstance(value, dict):
        pairs = list(cast("dict[str, object]", value).items())
        members: dict[str, JsonValue] = {
            key: cut_meta(item, depth + 1) for key, item in pairs[:META_MEMBERS]
        }
        if len(pairs) > META_MEMBERS:
            members["..."] = f"{len(pairs) - META_MEMBERS} more"
        return members
    return cast(JsonValue, value)  # str, int, float, bool or None: JSON already


def _dataset_json(dataset: h5py.Dataset, limit: int | None) -> JsonValue:
    """The value of ``dataset`` as JSON if it is small, else its dtype and shape.

    ``limit``: the most bytes a str or bytes value may have to be shown (None: any).
    """
    shape = dataset.shape
    if shape is not None and math.prod(shape) > META_ELEMENTS:
        return {"dtype": dataset.dtype.str, "shape": list(shape)}
    if hdf5_dtype_problem(dataset.dtype) is not None:
        return {"dtype": str(dataset.dtype)}
    return json_value(_hdf5.read_node(dataset), limit)


def _attributes(obj: h5py.Group | h5py.Dataset) -> dict[str, JsonValue]:
    """The attributes of ``obj`` that are not the library's own, reading only small ones."""
    found: dict[str, JsonValue] = {}
    for name in obj.attrs:
        if name.startswith(_OWN_ATTR_PREFIX):
            continue
        try:
            attr = h5a.open(obj.id, name.encode())
            # None for an empty attribute (h5py.Empty), which the stub does not say.
            shape = cast("tuple[int, ...] | None", attr.shape)
            if shape is None:
                found[name] = None
            elif math.prod(shape) > META_ELEMENTS:
                found[name] = {"dtype": attr.dtype.str, "shape": list(shape)}
            elif hdf5_dtype_problem(attr.dtype) is not None:
                found[name] = {"dtype": str(attr.dtype)}
            else:
                found[name] = json_value(obj.attrs[name], VALUE_BYTES)
        except UNREADABLE as error:
            found[name] = {"unreadable": str(error)}
    return found


def with_attrs_and_value(
    described: "LeafDescription | ContainerDescription", obj: h5py.Group | h5py.Dataset
) -> "LeafDescription | ContainerDescription":
    update: dict[str, object] = {}
    attrs = _attributes(obj)
    if attrs:
        update["attrs"] = attrs
    if (
        isinstance(described, LeafDescription)
        and isinstance(obj, h5py.Dataset)
        and described.problem is None
        and described.kind in _SCALAR_KINDS
        and obj.shape is not None
        and (described.kind == "bytes" or obj.shape == ())
        and (described.nbytes is None or described.nbytes <= VALUE_BYTES)
    ):
        # An unreadable value leaves the description as it is: its problems are found without it.
        with contextlib.suppress(*UNREADABLE):
            update["value"] = json_value(_hdf5.read_node(obj), VALUE_BYTES)
    return described.model_copy(update=update) if update else described


def storage_problem(dataset: h5py.Dataset, stored: int) -> str | None:
    """Why reading ``dataset`` is refused by default: its data are elsewhere, or too big."""
    plist = dataset.id.get_create_plist()
    if plist.get_layout() == h5d.VIRTUAL:
        return "a virtual dataset, made of other datasets: read only with follow_external"
    if plist.get_external_count():
        return "a dataset stored in other files: read only with follow_external"
    shape = dataset.shape
    if shape is not None and dataset.dtype.kind != "O":
        beyond = math.prod(shape) * dataset.dtype.itemsize - stored
        if beyond > _hdf5.DEFAULT_MAX_READ_BYTES:
            return (
                f"declares {beyond} bytes more than the file holds for it: read only with "
                f"max_read_bytes raised above {_hdf5.DEFAULT_MAX_READ_BYTES}"
            )
    return None


def nbytes_of(dtype: np.dtype[Any], shape: tuple[int, ...]) -> int | None:
    if dtype.kind == "O":
        return None  # variable-length data
    return math.prod(shape) * dtype.itemsize


def hdf5_dtype_problem(dtype: np.dtype[Any]) -> str | None:
    """Why the library cannot hold data of ``dtype`` read from an HDF5 dataset, or ``None``."""
    metadata: Mapping[str, Any] = dtype.metadata or {}
    if "ref" in metadata:
        return "object references: the library holds values, not references"
    if h5py.check_string_dtype(dtype) is not None:
        return None
    if "vlen" in metadata:
        return f"variable-length sequences of {metadata['vlen']}: the library cannot hold them"
    if "h5py_opaque" in metadata:
        return f"opaque dtype {dtype}: the library cannot hold it"
    if dtype.fields is not None:
        return f"compound dtype {dtype}: the library cannot hold structured data"
    if dtype.subdtype is not None:
        return f"array dtype {dtype}: the library cannot hold it"
    if dtype.kind == "V":
        return f"opaque dtype {dtype}: the library cannot hold it"
    if dtype.kind == "O":
        return f"object dtype {dtype}: the library cannot hold it"
    try:
        validate(np.empty((0,), dtype=dtype))
    except TypeError:
        return f"dtype {dtype}: the library cannot hold it"
    return None


def member_names(group: h5py.Group) -> list[str]:
    """The member names of ``group``; h5py gives names that are not UTF-8 as bytes."""
    names: list[object] = list(group)
    return [name if isinstance(name, str) else repr(name) for name in names]
