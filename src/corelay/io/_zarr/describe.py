"""The Zarr format described from its metadata documents: no array data is read."""

import math
from pathlib import Path
from typing import Any, cast

import numpy as np
from zarr.abc.store import Store

from corelay.io._description import (
    VALUE_BYTES,
    ContainerDescription,
    Description,
    LeafDescription,
    OtherDescription,
    Progress,
    json_value,
)
from corelay.io._keys import TEMP_PREFIX, name_problem, split_key
from corelay.io._zarr.layout import (
    DTYPE_ATTR,
    KEYS_ATTR,
    KIND_ATTR,
    LENGTH_ATTR,
    METADATA,
    PYTHON_SCALARS,
    VALUE_ATTR,
    LocalDirectoryStore,
    attributes_of,
    get_doc,
    join,
    run,
)
from corelay.io._zarr.read import (
    ReadLimits,
    array_metadata_of,
    check_declared,
    dict_keys,
    first_missing_item,
    scalar_of,
    sequence_length,
    value_name,
)
from corelay.io.errors import NoDataSource, UnreadableNodeError
from corelay.io.tree import MAX_DEPTH, string_info_of

__all__ = ["describe_zarr", "is_zarr_store"]

# Groups of the format's own that hold members by name: a store's root and the groups on a
# key's path ('keys'), and a HashedZarr store's root ('hashed').
_NAMED_GROUPS = ("keys", "hashed")
_CONTAINERS = ("dict", "tuple", "list")


def is_zarr_store(path: Path) -> bool:
    """Tells whether ``path`` is a directory holding a Zarr v3 root group document."""
    return path.is_dir() and (path / METADATA).is_file()


def describe_zarr(
    path: Path | Store, key: str | None, progress: Progress, where: str | None = None
) -> list[Description]:
    """Describes the keys of the Zarr store at ``path`` (or only ``key``).

    ``path`` is a local directory or an open store (an object store's, read-only); ``where``
    names it in messages (by default ``path``).

    Raises:
        NoDataSource: The store has no node at ``key``.
    """
    store = path if isinstance(path, Store) else LocalDirectoryStore(path, read_only=True)
    name = str(path) if where is None else where
    walker = _Walker(store, progress)
    if key is not None:
        names = split_key(key)
        document = run(get_doc(store, join(*names)))
        if document is None:
            raise NoDataSource(f"no key {key!r} in {name!r}")
        return [walker.describe(key, join(*names), document, 0)]
    return walker.members("", 0)


def _unreadable(name: str, error: UnreadableNodeError) -> OtherDescription:
    return OtherDescription(name=name, what="unreadable Zarr node", problem=str(error))


class _Walker:
    """Describes nodes, counting them for the progress callback.

    It follows the rules a read follows (see :mod:`corelay.io._zarr.read`), so that describing
    a store written elsewhere takes time in proportion to the store.
    """

    def __init__(self, store: Store, progress: Progress) -> None:
        self.store = store
        self.progress = progress
        self.done = 0

    def members(self, path: str, depth: int) -> list[Description]:
        listed = run(_list_dir(self.store, path))
        names = sorted(name for name in listed if name != METADATA)
        described: list[Description] = []
        for name in names:
            if name.startswith(TEMP_PREFIX):
                continue  # a value being written, or left by a killed writer
            problem = name_problem(name)
            if problem is not None:
                described.append(OtherDescription(name=name, what="Zarr member", problem=problem))
                continue
            try:
                document = run(get_doc(self.store, join(path, name)))
            except UnreadableNodeError as error:
                described.append(_unreadable(name, error))
                continue
            if document is not None:
                described.append(self.describe(name, join(path, name), document, depth))
        return described

    def describe(self, name: str, path: str, document: dict[str, Any], depth: int) -> Description:
        try:
            return self._describe(name, path, document, depth)
        except UnreadableNodeError as error:
            return _unreadable(name, error)

    def _describe(self, name: str, path: str, document: dict[str, Any], depth: int) -> Description:
        self.done += 1
        self.progress(self.done, None)
        attributes = attributes_of(document)
        kind = attributes.get(KIND_ATTR)
        others = {
            key: json_value(value, VALUE_BYTES)
            for key, value in attributes.items()
            if not key.startswith("corelay.")
        }
        if document.get("node_type") == "array":
            metadata = array_metadata_of(path, document)
            run(check_declared(self.store, path, metadata, ReadLimits()))
            return _array(name, path, document, attributes, others)
        if kind == "key":
            target = join(path, value_name(attributes, path))
            return self._child(name, target, depth, value_of_key=True)
        if kind in PYTHON_SCALARS:
            try:
                value = None if kind == "none" else scalar_of(kind, attributes.get(VALUE_ATTR))
            except ValueError as error:
                raise UnreadableNodeError(f"{path}: {error}") from None
            return LeafDescription(
                name=name,
                kind=kind,
                recorded=True,
                value=json_value(value, VALUE_BYTES),
            )
        if kind is not None and kind not in _NAMED_GROUPS and kind not in _CONTAINERS:
            return OtherDescription(
                name=name, what="Zarr group", problem=f"unknown kind attribute {kind!r}"
            )
        if depth >= MAX_DEPTH:
            raise UnreadableNodeError(
                f"{path}: containers nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)"
            )
        if kind == "dict":
            keys = dict_keys(path, attributes.get(KEYS_ATTR))
            children = [self._child(key, join(path, key), depth + 1) for key in keys]
            return ContainerDescription(
                name=name, kind="dict", recorded=True, children=children, attrs=others
            )
        if kind in ("tuple", "list"):
            length = sequence_length(path, attributes.get(LENGTH_ATTR))
            missing = run(first_missing_item(self.store, path, length))
            if missing is not None:
                raise UnreadableNodeError(
                    f"{path}: a {kind} of {length} items has no item {missing}"
                )
            children = [
                self._child(str(index), join(path, str(index)), depth + 1)
                for index in range(length)
            ]
            return ContainerDescription(
                name=name, kind=kind, recorded=True, children=children, attrs=others
            )
        # A group of keys, or another program's group: read as a dict of its members.
        return ContainerDescription(
            name=name,
            kind="dict",
            recorded=kind is not None,
            children=self.members(path, depth + 1),
            attrs=others,
        )

    def _child(self, name: str, path: str, depth: int, value_of_key: bool = False) -> Description:
        try:
            document = run(get_doc(self.store, path))
        except UnreadableNodeError as error:
            return _unreadable(name, error)
        if document is None:
            return OtherDescription(
                name=name, what="missing node", problem=f"no Zarr metadata at {path!r}"
            )
        if value_of_key and attributes_of(document).get(KIND_ATTR) == "key":
            return OtherDescription(
                name=name,
                what="unreadable Zarr node",
                problem=f"{path}: a key's value is another key",
            )
        return self.describe(name, path, document, depth)


async def _list_dir(store: Store, path: str) -> list[str]:
    return [name async for name in store.list_dir(join(path, ""))]


def _array(
    name: str,
    path: str,
    document: dict[str, Any],
    attributes: dict[str, Any],
    others: dict[str, Any],
) -> LeafDescription:
    shape_list: object = document.get("shape", [])
    if not isinstance(shape_list, list) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0
        for size in cast(list[object], shape_list)
    ):
        raise UnreadableNodeError(f"{path}: the array's shape is {shape_list!r}")
    shape = tuple(cast(list[int], shape_list))
    kind = attributes.get(KIND_ATTR)
    recorded = kind in ("ndarray", "generic")
    dtype_text = attributes.get(DTYPE_ATTR)
    dtype: np.dtype[Any] | None
    if recorded and isinstance(dtype_text, str):
        try:
            dtype = np.dtype(dtype_text)
        except (TypeError, ValueError, SyntaxError) as error:
            raise UnreadableNodeError(
                f"{path}: invalid dtype attribute {dtype_text!r}: {error}"
            ) from None
        if dtype.kind == "S":
            shape = shape[:-1]  # bytes are stored as rows of uint8
    else:
        dtype = _zarr_dtype(document)
    count = math.prod(shape)
    return LeafDescription(
        name=name,
        kind="generic" if kind == "generic" else "ndarray",
        recorded=recorded or (dtype is not None and dtype.kind in "biufc"),
        dtype=dtype.str if dtype is not None else None,
        shape=shape,
        nbytes=count * dtype.itemsize if dtype is not None and dtype.itemsize else None,
        string_info=string_info_of(dtype) if dtype is not None else None,
        problem=None if kind in (None, "ndarray", "generic") else f"unknown kind {kind!r}",
        attrs=others,
    )


def _zarr_dtype(document: dict[str, Any]) -> np.dtype[Any] | None:
    data_type = document.get("data_type")
    try:
        return np.dtype(data_type) if isinstance(data_type, str) else None
    except TypeError:
        return None  # a Zarr type NumPy does not name (a string type, an extension)
