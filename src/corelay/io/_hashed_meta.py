"""Metadata that JSON holds exactly, as HashedHDF5 stores it: one scalar string dataset.

Other metadata is stored in the HDF5 codec's layout; these helpers tell the two apart.
"""

import json
import math
from collections import OrderedDict
from typing import cast

import h5py
import numpy as np
from h5py import h5a, h5g, h5o

from corelay.io import _hdf5
from corelay.io._hdf5 import KIND_ATTR
from corelay.io._keys import name_problem
from corelay.io.tree import Node

__all__ = ["JSON_DTYPE", "META_GROUP", "meta_json_text", "store_meta", "stored_meta_json", "where"]

#: The group in ``base`` that holds each distinct metadata tree once, named by its hash.
META_GROUP = ".corelay-meta"

_KIND_KEY = KIND_ATTR.encode()
_META_KEY = META_GROUP.encode()


def stored_meta_json(obj: h5py.Group | h5py.Dataset) -> str | None:
    """The JSON text of a metadata tree in :data:`META_GROUP`, or ``None`` if not stored so.

    Metadata that JSON holds exactly is stored as one scalar string dataset without a
    ``corelay.kind`` attribute (a str written by the HDF5 codec always has one); other
    metadata in the HDF5 codec's layout.
    """
    if not isinstance(obj, h5py.Dataset) or obj.shape != () or h5a.exists(obj.id, _KIND_KEY):
        return None
    if h5py.check_string_dtype(obj.dtype) is None:
        return None
    text: object = obj.asstr()[()]
    return text if isinstance(text, str) else None


JSON_DTYPE = h5py.string_dtype()
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Deeper metadata goes through the HDF5 codec.
_JSON_DEPTH = 32


def meta_json_text(meta: object) -> str | None:
    """The JSON text of ``meta`` if JSON holds it exactly, else ``None``."""
    return json.dumps(meta, allow_nan=False) if _json_exact(meta, 0) else None


def _json_exact(value: object, depth: int) -> bool:
    """Tells whether JSON reads ``value`` back as the HDF5 codec would: same types and values.

    Tuples (JSON makes them lists), bytes, complex numbers, NumPy values and non-finite floats
    do not qualify; neither do dict keys that the stored tree refuses.
    """
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return True
    if kind is int:
        return _INT64_MIN <= cast(int, value) <= _INT64_MAX
    if kind is float:
        return math.isfinite(cast(float, value))  # repr, which json uses, round-trips exactly
    if depth >= _JSON_DEPTH:
        return False
    if kind is list:
        return all(_json_exact(item, depth + 1) for item in cast("list[object]", value))
    if kind is dict or kind is OrderedDict:
        return all(
            type(key) is str and name_problem(key) is None and _json_exact(item, depth + 1)
            for key, item in cast("dict[object, object]", value).items()
        )
    return False


def store_meta(
    base: h5py.Group,
    new_group: bool,
    meta_hash: str,
    meta: object,
    meta_node: Node | None,
    meta_json: str | None,
) -> None:
    """Stores ``meta`` under its hash in :data:`META_GROUP` of ``base``, replacing what is there.

    Args:
        base: The HashedHDF5's group.
        new_group: Whether :data:`META_GROUP` must be created first.
        meta_hash: ``ext_hash(meta)``, the name of the stored tree.
        meta: The metadata.
        meta_node: Its validated node, when ``meta_json`` is ``None``.
        meta_json: Its JSON text, if JSON holds it exactly.
    """
    if new_group:
        meta_group = _hdf5.create_group(base, META_GROUP)
    else:
        found = h5o.open(base.id, _META_KEY)
        if not isinstance(found, h5g.GroupID):
            raise ValueError(f"{META_GROUP!r} in {where(base)} is not a group")
        meta_group = h5py.Group(found)
    with _hdf5.replacing(meta_group.id, meta_hash.encode()) as target:
        if meta_json is not None:
            # One dataset instead of a group of datasets: the same metadata, at a fraction of
            # the cost, for the many pipelines whose metadata JSON holds exactly.
            _hdf5.create_dataset(meta_group.id, target, np.array(meta_json, dtype=JSON_DTYPE))
        else:
            _hdf5.write_node(meta_group, target.decode(), meta, cast(Node, meta_node))


def where(base: h5py.Group) -> str:
    """How messages name the group ``base`` of a HashedHDF5 and its file."""
    return f"group {base.name!r} of {base.file.filename!r}"
