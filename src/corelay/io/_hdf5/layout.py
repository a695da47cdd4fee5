"""The HDF5 layout of a stored tree: its attributes, its errors, and reaching its nodes.

h5py's high-level layer costs tens of microseconds per call, more than HDF5 itself for small
nodes. The functions here and in the sibling modules make the HDF5 calls of ``attrs[...]``,
``create_dataset`` and ``group[name]`` directly, so the files are the same.
"""

from typing import Any, cast

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5i, h5l, h5o, h5s, h5t
from h5py._objects import ObjectID

from corelay.io.errors import UnreadableNodeError

#: Attribute holding the node kind (``'dict'``, ``'ndarray'``, ``'int'``, ...).
KIND_ATTR = "corelay.kind"
#: Attribute holding the NumPy dtype of unicode leaves, which HDF5 stores as UTF-8 bytes.
DTYPE_ATTR = "corelay.dtype"

PYTHON_SCALAR_TYPES: dict[str, type[np.generic]] = {
    "bool": np.bool_,
    "int": np.int64,
    "float": np.float64,
    "complex": np.complex128,
}

#: The dtype kinds of the arrays stored as a plain dataset, without a kind attribute.
PLAIN_KINDS = "biufc"


def is_plain_array(value: object) -> bool:
    """Tells whether ``value`` is stored as a plain dataset, without a kind attribute.

    A numeric array of one or more dimensions: every reader reads such a dataset back as exactly
    that array, and leaving the attribute out saves a third of the cost of writing it.
    """
    if not isinstance(value, np.ndarray):
        return False
    array: np.ndarray[Any, Any] = cast(Any, value)
    return array.ndim > 0 and array.dtype.kind in PLAIN_KINDS


STR_DTYPE = h5py.string_dtype()
STR_TYPE = h5t.py_create(STR_DTYPE, logical=True)
STR_MEMORY_TYPE = h5t.py_create(STR_DTYPE)
SCALAR_SPACE = h5s.create(h5s.SCALAR)

# Building an HDF5 type costs more than writing or reading a small dataset: one per NumPy dtype
# (numeric dtypes only: string dtypes differ in h5py's tags, which dtype equality ignores).
FILE_TYPES: dict[np.dtype[Any], h5t.TypeID] = {}
MEMORY_TYPES: dict[np.dtype[Any], h5t.TypeID] = {}
# And reading: h5py's conversion of a dataset's type to a dtype costs more than reading a small


def memory_type(dtype: np.dtype[Any]) -> h5t.TypeID:
    memory_type = MEMORY_TYPES.get(dtype)
    if memory_type is None:
        memory_type = MEMORY_TYPES[dtype] = h5t.py_create(dtype)
    return memory_type


def get_str_attr(obj: h5py.Group | h5py.Dataset, name: str) -> Any:
    """Returns ``obj.attrs.get(name)``, reading the string attributes written here directly."""
    return str_attr(obj.id, name)


def str_attr(oid: ObjectID, name: str, scalar_only: bool = False) -> Any:
    # With ``scalar_only``, an attribute that is not a scalar is not read (a crafted one can
    # declare any size): it is returned as a (non-str) marker.
    try:
        attr = h5a.open(oid, name.encode())
    except KeyError:
        return None
    # h5py does not check the shape when reading into an array: only read a scalar.
    if attr.get_space().get_simple_extent_type() != h5s.SCALAR:
        if scalar_only:
            return NOT_SCALAR
    elif scalar_only and attr.get_type().get_size() > _MAX_ATTR_BYTES:
        return NOT_SCALAR  # a scalar of an array type, say
    else:
        value = np.empty((), dtype=STR_DTYPE)
        try:
            attr.read(value, mtype=STR_MEMORY_TYPE)
        except (OSError, TypeError, ValueError):
            pass  # not a variable-length string; HDF5 found no conversion
        else:
            item: object = value[()]
            return item.decode("utf-8") if isinstance(item, bytes) else item
    return wrap(oid).attrs.get(name)  # written by another tool: let h5py decode it


NOT_SCALAR = object()
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
    return wrap(open_member(group.id, key, name if path is None else path, external))


def open_path(
    group: h5py.Group, names: list[str], external: bool = False
) -> h5py.Group | h5py.Dataset | None:
    """Returns ``group['/'.join(names)]``, or ``None`` if there is nothing at that path.

    A soft link to nothing is nothing; other links are opened as :func:`open_child` opens them.
    """
    found = find(group, names, external)
    return None if found is None else wrap(found)


def find(group: h5py.Group, names: list[str], external: bool = False) -> ObjectID | None:
    """As :func:`open_path`, returning the low-level object: cheaper to read."""
    found: ObjectID = group.id
    for depth, name in enumerate(names):
        key = name.encode()
        if not isinstance(found, h5g.GroupID) or not found.links.exists(key):
            return None
        try:
            found = open_member(found, key, "/" + "/".join(names[: depth + 1]), external)
        except DanglingLinkError:
            return None
    return found


def wrap(oid: ObjectID) -> h5py.Group | h5py.Dataset:
    if isinstance(oid, h5d.DatasetID):
        return h5py.Dataset(oid)
    if isinstance(oid, h5g.GroupID):
        return h5py.Group(oid)
    raise UnreadableNodeError(f"{as_text(h5i.get_name(oid))}: a named datatype, not data")


class DanglingLinkError(UnreadableNodeError):
    """A soft link to an object that does not exist."""


def open_member(group: h5g.GroupID, name: bytes, path: str, external: bool) -> ObjectID:
    link_type = group.links.get_info(name).type
    if link_type == h5l.TYPE_EXTERNAL and not external:
        file_name, target = group.links.get_val(name)[:2]
        raise UnreadableNodeError(
            f"{path}: external link to {as_text(target)!r} in {as_text(file_name)!r}: not followed "
            "(set follow_external to follow it)"
        )
    if link_type not in (h5l.TYPE_HARD, h5l.TYPE_SOFT, h5l.TYPE_EXTERNAL):
        raise UnreadableNodeError(f"{path}: user-defined link of type {link_type}: not followed")
    try:
        oid: ObjectID = h5o.open(group, name)
    except (KeyError, RuntimeError, OSError, ValueError) as error:
        if link_type == h5l.TYPE_SOFT:
            soft_target = as_text(group.links.get_val(name))
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


def as_text(value: object) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
