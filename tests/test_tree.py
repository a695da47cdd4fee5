"""Validation of stored trees: what is accepted, what is refused, and how the refusal reads."""

import tracemalloc
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
import pytest

from corelay.io.tree import (
    ArrayNode,
    DictNode,
    NumpyScalarNode,
    ScalarNode,
    SequenceNode,
    StringInfo,
    validate,
)
from tests.cases import TREE_CASES


class Point(NamedTuple):
    x: int
    y: int


@pytest.mark.parametrize("tree", [case for _, case in TREE_CASES], ids=[i for i, _ in TREE_CASES])
def test_table_cases_are_valid(tree: Any) -> None:
    validate(tree)


def test_description() -> None:
    node = validate({"a": np.zeros((2, 3), np.float32), "b": (1, [None]), "c": np.str_("x")})
    assert node == DictNode(
        children={
            "a": ArrayNode(dtype="<f4", shape=(2, 3)),
            "b": SequenceNode(
                kind="tuple",
                items=[
                    ScalarNode(kind="int"),
                    SequenceNode(kind="list", items=[ScalarNode(kind="none")]),
                ],
            ),
            "c": NumpyScalarNode(dtype="<U1", string_info=StringInfo("utf-8", None)),
        }
    )
    assert isinstance(node, DictNode)
    assert list(node.children) == ["a", "b", "c"]


def test_description_round_trips_through_json() -> None:
    node = validate({"labels": np.array([b"ab"]), "deep": [(np.uint8(1), "s")]})
    assert type(node).model_validate_json(node.model_dump_json()) == node


_REFUSED_TYPES: list[tuple[Any, str]] = [
    ({"params": {"fn": print}}, r"data_out\['params'\]\['fn'\]: unsupported type builtin"),
    ([1, (2, object())], r"data_out\[1\]\[1\]: unsupported type object"),
    (np.array([1, "a"], dtype=object), r"data_out: unsupported object dtype"),
    (np.zeros(2, dtype=[("a", "i4")]), r"data_out: unsupported structured dtype"),
    (np.zeros(2, dtype="datetime64[s]"), r"data_out: unsupported dtype datetime64"),
    (np.zeros(2, dtype=np.longdouble), r"data_out: unsupported dtype float128"),
    ({1: "a"}, r"data_out: dict key 1 is int; keys must be str"),
    (Point(1, 2), r"data_out: unsupported type Point"),
    ({"a"}, r"data_out: unsupported type set"),
    (np.ma.masked_array([1, 2], mask=[False, True]), r"data_out: unsupported type MaskedArray"),
    (bytearray(b"x"), r"data_out: unsupported type bytearray"),
]


@pytest.mark.parametrize(("tree", "message"), _REFUSED_TYPES)
def test_refused_types_name_the_path(tree: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message) as error:
        validate(tree)
    assert (
        "accepted:" in str(error.value)
        or "keys must be str" in str(error.value)
        or ("MaskedArray" in str(error.value))
    )


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"": 1}, r"data_out: invalid dict key: empty name"),
        ({"a": {"b/c": 1}}, r"data_out\['a'\]: invalid dict key: name 'b/c' contains '/'"),
        ({"..": 1}, r"invalid dict key: name '..' is reserved"),
        ((2**63,), r"data_out\[0\]: int 9223372036854775808 is outside the int64 range"),
        ([-(2**63) - 1], r"outside the int64 range"),
    ],
)
def test_invalid_values_are_value_errors(tree: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(tree)


def test_dict_subclasses_are_dicts() -> None:
    assert validate(OrderedDict([("a", 1)])).kind == "dict"


def test_validation_does_not_touch_elements() -> None:
    big = np.zeros(2**24)  # 128 MiB
    tracemalloc.start()
    validate({"a": big, "b": (big[::2], big.reshape(2, -1).T)})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000, f"validation allocated {peak} bytes"
