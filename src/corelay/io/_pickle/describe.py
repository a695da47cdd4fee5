"""The pickle format described: each record loaded, one at a time, with the restricted unpickler."""

import pickle
from pathlib import Path
from typing import Any, cast

import numpy as np

from corelay.io import _pickle
from corelay.io._description import (
    VALUE_BYTES,
    ContainerDescription,
    Description,
    LeafDescription,
    NotAStorageFileError,
    OtherDescription,
    Progress,
    json_value,
)
from corelay.io._keys import name_problem
from corelay.io.errors import NoDataSource
from corelay.io.tree import (
    ArrayNode,
    NumpyScalarNode,
    ScalarNode,
    StringInfo,
    string_info_of,
    validate,
)

NON_STR_KEY = "dict entry with a "
# The deepest value of a pickle record that is described, node by node.
_PICKLE_DEPTH = 100


def describe_pickle(path: Path, key: str | None, progress: Progress) -> list["Description"]:
    try:
        records = _pickle.RecordFile(path, "r")
    except OSError:
        raise
    except Exception as error:  # a damaged file can make the scan fail in many ways
        raise NotAStorageFileError(
            f"{str(path)!r} is not a readable file of pickle records: {error}"
        ) from None
    try:
        keys = list(records.index)
        if key is not None:
            if key not in records.index:
                raise NoDataSource(f"no key {key!r} in {str(path)!r}")
            keys = [key]
        entries: list[Description] = []
        for done, record_key in enumerate(keys, 1):
            try:
                # Problems by path; deeper values are reported, not described (as deep).
                value = records.load(record_key, checked=False, max_depth=_PICKLE_DEPTH)
            except pickle.UnpicklingError as error:  # a refused global, or not a record
                entries.append(
                    OtherDescription(
                        name=record_key, what="record that cannot be loaded", problem=str(error)
                    )
                )
            except Exception as error:  # a damaged record can fail to load in many ways
                entries.append(
                    OtherDescription(
                        name=record_key,
                        what="record that cannot be loaded",
                        problem=f"damaged record: {type(error).__name__}: {error}",
                    )
                )
            else:
                entries.append(_describe_value(value, record_key))
            progress(done, len(keys))
        return entries
    finally:
        records.file.close()


def _describe_value(value: object, name: str) -> "Description":
    if isinstance(value, dict):
        children: list[Description] = []
        for child_key, item in cast("dict[object, object]", value).items():
            if not isinstance(child_key, str):
                children.append(
                    OtherDescription(
                        name=repr(child_key),
                        what=f"{NON_STR_KEY}{type(child_key).__name__} key",
                        problem=f"dict key {child_key!r} is {type(child_key).__name__}; "
                        "keys must be str",
                    )
                )
                continue
            child = _describe_value(item, child_key)
            problem = name_problem(child_key)
            if problem is not None and child.node != "hashed":
                child = child.model_copy(update={"problem": f"invalid dict key: {problem}"})
            children.append(child)
        return ContainerDescription(name=name, kind="dict", recorded=True, children=children)
    if type(value) is tuple or type(value) is list:
        items = cast("tuple[object, ...] | list[object]", value)
        return ContainerDescription(
            name=name,
            kind="tuple" if isinstance(items, tuple) else "list",
            recorded=True,
            children=[_describe_value(item, str(index)) for index, item in enumerate(items)],
        )
    try:
        node = validate(value, any_text=True)  # pickle stores every str
    except (TypeError, ValueError) as error:
        reason = str(error).removeprefix("data_out: ").split("; accepted:")[0]
        return OtherDescription(name=name, what=type(value).__qualname__, problem=reason)
    if isinstance(node, ArrayNode | NumpyScalarNode):
        array = cast("np.ndarray[Any, Any] | np.generic[Any]", value)
        small = isinstance(node, NumpyScalarNode) and array.nbytes <= VALUE_BYTES
        return LeafDescription(
            name=name,
            kind=node.kind,
            recorded=True,
            dtype=node.dtype,
            shape=array.shape,
            nbytes=array.nbytes,
            string_info=string_info_of(array.dtype),
            value=json_value(array, VALUE_BYTES) if small else None,
        )
    scalar = cast(ScalarNode, node)
    nbytes = None
    if isinstance(value, str):
        nbytes = len(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes):
        nbytes = len(value)
    return LeafDescription(
        name=name,
        kind=scalar.kind,
        recorded=True,
        nbytes=nbytes,
        string_info=StringInfo("utf-8", None) if scalar.kind == "str" else None,
        value=json_value(value, VALUE_BYTES),
    )
