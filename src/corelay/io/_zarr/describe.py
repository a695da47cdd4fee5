"""The Zarr format described from its metadata documents: no array data is read."""

from pathlib import Path
from typing import Any, cast

import numpy as np
from zarr.abc.store import Store
from zarr.storage import LocalStore

from corelay.io._description import (
    VALUE_BYTES,
    ContainerDescription,
    Description,
    LeafDescription,
    OtherDescription,
    Progress,
    json_value,
)
from corelay.io._keys import TEMP_PREFIX, split_key
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
    run,
)
from corelay.io._zarr.read import scalar_of
from corelay.io.errors import NoDataSource
from corelay.io.tree import string_info_of

__all__ = ["describe_zarr", "is_zarr_store"]

# Groups of the format's own that hold members by name: a store's root and the groups on a
# key's path ('keys'), and a HashedZarr store's root ('hashed').
_NAMED_GROUPS = ("keys", "hashed")


def is_zarr_store(path: Path) -> bool:
    """Tells whether ``path`` is a directory holding a Zarr v3 root group document."""
    return path.is_dir() and (path / METADATA).is_file()


def describe_zarr(path: Path, key: str | None, progress: Progress) -> list[Description]:
    """Describes the keys of the local Zarr store at ``path`` (or only ``key``).

    Raises:
        NoDataSource: The store has no node at ``key``.
    """
    store = LocalStore(path, read_only=True)
    walker = _Walker(store, progress)
    if key is not None:
        names = split_key(key)
        document = run(get_doc(store, join(*names)))
        if document is None:
            raise NoDataSource(f"no key {key!r} in {str(path)!r}")
        return [walker.describe(key, join(*names), document)]
    return walker.members("")


class _Walker:
    """Describes nodes, counting them for the progress callback."""

    def __init__(self, store: Store, progress: Progress) -> None:
        self.store = store
        self.progress = progress
        self.done = 0

    def members(self, path: str) -> list[Description]:
        listed = run(_list_dir(self.store, path))
        names = sorted(name for name in listed if name != METADATA)
        described: list[Description] = []
        for name in names:
            if name.startswith(TEMP_PREFIX):
                continue  # a value being written, or left by a killed writer
            document = run(get_doc(self.store, join(path, name)))
            if document is not None:
                described.append(self.describe(name, join(path, name), document))
        return described

    def describe(self, name: str, path: str, document: dict[str, Any]) -> Description:
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
            return _array(name, document, attributes, others)
        if kind == "key":
            return self._child(name, join(path, str(attributes.get(VALUE_ATTR))))
        if kind == "dict":
            keys = [str(key) for key in attributes.get(KEYS_ATTR, [])]
            children = [self._child(key, join(path, key)) for key in keys]
            return ContainerDescription(
                name=name, kind="dict", recorded=True, children=children, attrs=others
            )
        if kind in ("tuple", "list"):
            length = int(attributes.get(LENGTH_ATTR, 0))
            children = [self._child(str(index), join(path, str(index))) for index in range(length)]
            return ContainerDescription(
                name=name, kind=kind, recorded=True, children=children, attrs=others
            )
        if kind in PYTHON_SCALARS:
            value = None if kind == "none" else scalar_of(kind, attributes.get(VALUE_ATTR))
            return LeafDescription(
                name=name,
                kind=kind,
                recorded=True,
                value=json_value(value, VALUE_BYTES),
            )
        if kind is not None and kind not in _NAMED_GROUPS:
            return OtherDescription(
                name=name, what="Zarr group", problem=f"unknown kind attribute {kind!r}"
            )
        # A group of keys, or another program's group: read as a dict of its members.
        return ContainerDescription(
            name=name,
            kind="dict",
            recorded=kind is not None,
            children=self.members(path),
            attrs=others,
        )

    def _child(self, name: str, path: str) -> Description:
        document = run(get_doc(self.store, path))
        if document is None:
            return OtherDescription(
                name=name, what="missing node", problem=f"no Zarr metadata at {path!r}"
            )
        return self.describe(name, path, document)


async def _list_dir(store: Store, path: str) -> list[str]:
    return [name async for name in store.list_dir(join(path, ""))]


def _array(
    name: str, document: dict[str, Any], attributes: dict[str, Any], others: dict[str, Any]
) -> LeafDescription:
    shape = tuple(int(size) for size in cast(list[Any], document.get("shape", [])))
    kind = attributes.get(KIND_ATTR)
    recorded = kind in ("ndarray", "generic")
    dtype_text = attributes.get(DTYPE_ATTR)
    dtype: np.dtype[Any] | None
    if recorded and isinstance(dtype_text, str):
        dtype = np.dtype(dtype_text)
        if dtype.kind == "S":
            shape = shape[:-1]  # bytes are stored as rows of uint8
    else:
        dtype = _zarr_dtype(document)
    count = int(np.prod(shape)) if shape else 1
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
