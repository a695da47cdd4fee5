"""The table of stored trees that every backend must round-trip exactly, and the comparison."""

from typing import Any

import numpy as np

from corelay.io.testing import assert_same_tree

__all__ = ["TREE_CASES", "assert_same_tree"]

# (case id, tree). Every backend writes each tree, reopens the file and must read it back equal
# in type, dtype, shape, value (bit for bit) and dict order.
TREE_CASES: list[tuple[str, Any]] = [
    ("float64-2d", np.arange(6.0).reshape(2, 3)),
    ("float32", np.linspace(0, 1, 7, dtype=np.float32)),
    ("float16", np.array([0.5, -1.25, np.inf], dtype=np.float16)),
    ("nan-and-signed-zero", np.array([np.nan, -0.0, 0.0, -np.inf])),
    ("int8", np.array([-128, 0, 127], dtype=np.int8)),
    ("int64-extremes", np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max])),
    ("uint16", np.arange(5, dtype=np.uint16)),
    ("uint64-max", np.array([np.iinfo(np.uint64).max], dtype=np.uint64)),
    ("bool-array", np.array([[True, False], [False, True]])),
    ("complex64", np.array([1 + 2j, -3.5j], dtype=np.complex64)),
    ("complex128", np.array([np.nan + 1j, 2.0 - 0j])),
    ("big-endian", np.arange(4, dtype=">i4")),
    ("bytes-array", np.array([b"ab", b"", b"xyz"])),
    ("unicode-array", np.array(["", "ä", "日本語", "emoji 🎉"])),
    ("unicode-2d", np.array([["a", "bb"], ["ccc", "Ω"]])),
    ("zero-d-array", np.array(3.5)),
    ("zero-d-unicode", np.array("grüß")),
    ("empty-array", np.zeros((0,), dtype=np.int32)),
    ("empty-2d", np.zeros((3, 0))),
    ("non-contiguous", np.arange(20.0).reshape(4, 5)[::2, 1::2]),
    ("fortran-order", np.asfortranarray(np.arange(12).reshape(3, 4))),
    ("np-float64", np.float64(2.5)),
    ("np-float32", np.float32(-1.5)),
    ("np-int8", np.int8(-3)),
    ("np-uint32", np.uint32(7)),
    ("np-bool", np.bool_(True)),
    ("np-complex64", np.complex64(1 - 1j)),
    ("np-bytes", np.bytes_(b"abc")),
    ("np-str", np.str_("ünï")),
    ("bool", True),
    ("int", -12345678901234),
    ("int-max", 2**63 - 1),
    ("float", 0.1),
    ("float-nan", float("nan")),
    ("complex", complex(1.5, -2.0)),
    ("str", "hello, wörld"),
    ("empty-str", ""),
    ("bytes", b"\x00\xffbinary\x00"),
    ("empty-bytes", b""),
    ("none", None),
    ("empty-dict", {}),
    ("empty-tuple", ()),
    ("empty-list", []),
    ("dict-order", {"z": 1, "a": 2, "m": 3, "10": 4, "2": 5}),
    ("tuple-of-arrays", (np.zeros(2), np.ones((2, 2)), np.arange(3))),
    ("list-mixed", [1, "two", 3.0, None, b"five", np.int16(6)]),
    ("long-tuple", tuple(np.full(2, i) for i in range(1200))),
    ("nested-containers", {"a": [(), {}, [[]]], "b": ({"c": (1, [2, {"d": None}])},)}),
    ("deep", {"l0": {"l1": {"l2": {"l3": {"l4": {"l5": {"l6": {"l7": (np.arange(2),)}}}}}}}}),
    ("unicode-keys", {"ключ": 1, "鍵": "値", "with space": 2.0, "dots.in.name": 3}),
    (
        "pipeline-result",
        {
            "attribution": np.random.default_rng(0).standard_normal((4, 3, 8, 8)),
            "labels": np.array(["cat", "dog", "cat", "ship"]),
            "embedding": (np.eye(4), np.arange(4.0)),
            "params": {"n_clusters": 3, "method": "spectral", "seed": None, "eps": 1e-12},
        },
    ),
]
