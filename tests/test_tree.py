"""Validation of stored trees: what is accepted, what is refused, and how the refusal reads."""

import re
import tracemalloc
from collections import OrderedDict

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
from tests.cases import CASES, TreeCase


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


@pytest.mark.parametrize("any_text", [False, True], ids=["hdf5-text", "any-text"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_validation_decides_each_case(case: TreeCase, any_text: bool) -> None:
    # The strict text rules refuse what the case refuses; any_text accepts what pickle accepts.
    refusal = case.outcome("pickle") if any_text else case.refusal
    if refusal is None:
        validate(case.tree, any_text=any_text)
        return
    with pytest.raises(refusal.error) as error:
        validate(case.tree, any_text=any_text)
    assert type(error.value) is refusal.error
    assert re.match(refusal.pattern, str(error.value)), str(error.value)


def test_dict_subclasses_are_dicts() -> None:
    assert validate(OrderedDict([("a", 1)])).kind == "dict"


def test_validation_does_not_touch_elements() -> None:
    big = np.zeros(2**24)  # 128 MiB
    tracemalloc.start()
    validate({"a": big, "b": (big[::2], big.reshape(2, -1).T)})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000, f"validation allocated {peak} bytes"


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
