"""Validation of stored trees: what is accepted, what is refused, and how the refusal reads."""

import tracemalloc
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
import pytest

from corelay.io.tree import (
    MAX_DEPTH,
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


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"kept\x00zz": 1}, r"data_out: invalid dict key: name 'kept\\x00zz' contains a NUL"),
        ({"a": {"\udcff": 1}}, r"data_out\['a'\]: invalid dict key: .* lone surrogate"),
        ({"a": ["x\x00y"]}, r"data_out\['a'\]\[0\]: str 'x\\x00y' contains a NUL character"),
        (("ok", "\ud800"), r"data_out\[1\]: str '\\ud800' contains a lone surrogate"),
        (
            {"u": np.array([["a", "b"], ["c", "d\udc80"]])},
            r"data_out\['u'\]: unicode array holds U\+DC80 at index \(1, 1\)",
        ),
        ([np.str_("\ud83d")], r"data_out\[0\]: unicode array holds U\+D83D"),
    ],
)
def test_text_hdf5_cannot_store_is_refused_with_the_path(tree: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(tree)


def test_any_text_accepts_what_pickle_stores() -> None:
    tree = ("a\x00b", "\ud800", np.array(["\udfff"]), np.str_("\ud800"))
    assert validate(tree, any_text=True).kind == "tuple"
    with pytest.raises(ValueError, match="NUL"):  # names stay names, for every backend
        validate({"a\x00": 1}, any_text=True)


def test_nul_in_unicode_arrays_is_storable() -> None:
    # Fixed-length strings keep inner NULs (and NumPy drops trailing ones anyway).
    validate((np.array(["a\x00b"]), np.str_("a\x00b"), "emoji 🎉"))


def test_unicode_check_covers_strided_and_big_endian_arrays() -> None:
    base = np.array(["ok"] * 10 + ["\ud800"] + ["ok"] * 9)
    with pytest.raises(ValueError, match=r"index \(5,\)"):
        validate(base[::2])
    with pytest.raises(ValueError, match=r"index \(10,\)"):
        validate(base.astype(">U2"))
    validate(base[::3].astype(">U2"))  # indices 0, 3, ..., 18 skip the surrogate
    beyond = np.array(["ab"]).view("<u4")
    beyond[1] = 0x110000
    with pytest.raises(ValueError, match="U\\+110000"):
        validate(beyond.view("<U2"))


def test_unicode_check_reads_blocks_not_copies() -> None:
    big = np.full(2**20, "0123456789abcdef")  # 64 MiB
    tracemalloc.start()
    validate(big)
    validate(big[::2])  # strided: copied one block at a time
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 2**20, f"validation allocated {peak} bytes"


def _nested(depth: int) -> Any:
    tree: Any = "leaf"
    for level in range(depth):
        tree = {"d": tree} if level % 3 == 0 else ([tree] if level % 3 == 1 else (tree,))
    return tree


def test_max_depth_is_accepted_one_more_is_value_error() -> None:
    validate(_nested(MAX_DEPTH))
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH}"):
        validate(_nested(MAX_DEPTH + 1))


def test_very_deep_tree_is_value_error_not_recursion_error() -> None:
    with pytest.raises(ValueError, match="MAX_DEPTH"):
        validate(_nested(50_000))


def test_self_referencing_trees_are_value_errors() -> None:
    loop: dict[str, Any] = {"a": 1}
    loop["b"] = [loop]
    with pytest.raises(ValueError, match=r"data_out\['b'\]\[0\]: a dict that contains itself"):
        validate(loop)
    items: list[Any] = []
    items.append(items)
    with pytest.raises(ValueError, match=r"data_out\[0\]: a list that contains itself"):
        validate(items)


def test_shared_subtrees_are_not_cycles() -> None:
    shared = {"x": np.zeros(2)}
    validate({"a": shared, "b": [shared, shared]})
