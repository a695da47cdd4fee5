"""The one table of tree cases: what every backend stores exactly, and what it refuses.

Each :class:`TreeCase` names a tree and its expected outcome on every backend of
:data:`tests.backends.CASE_BACKENDS`: read back exactly, or refused with an error whose message
matches, before anything is written. Backends differ only in the text they can hold (see
:data:`ANY_TEXT`); a case lists the backends that accept what the others refuse.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from corelay.io.testing import assert_same_tree
from corelay.io.tree import MAX_DEPTH

__all__ = [
    "ACCEPTED",
    "ANY_TEXT",
    "CASES",
    "REFUSED",
    "TREE_CASES",
    "Refusal",
    "TreeCase",
    "assert_same_tree",
]

#: The backends that store any ``str``: NUL characters and lone surrogates included. The others
#: hold text as UTF-8 strings of HDF5 and refuse it with a ``ValueError`` naming the path.
ANY_TEXT = frozenset({"pickle"})


class Refusal(NamedTuple):
    """The error a refused tree raises: its type and a pattern its message must match."""

    error: type[Exception]
    pattern: str
    """A regular expression matched from the start of the message."""


@dataclass(frozen=True)
class TreeCase:
    """A tree and what each backend does with it."""

    id: str
    tree: Any
    refusal: Refusal | None = None
    """How the tree is refused; ``None`` if every backend stores it."""
    accepted_by: frozenset[str] = field(default_factory=frozenset[str])
    """The backends that store the tree although it has a refusal."""

    def outcome(self, backend: str) -> Refusal | None:
        """The refusal ``backend`` raises for this tree, or ``None`` if it stores it."""
        return None if backend in self.accepted_by else self.refusal


def ok(case_id: str, tree: Any) -> TreeCase:
    return TreeCase(case_id, tree)


def type_error(case_id: str, tree: Any, pattern: str) -> TreeCase:
    return TreeCase(case_id, tree, Refusal(TypeError, pattern))


def value_error(case_id: str, tree: Any, pattern: str) -> TreeCase:
    return TreeCase(case_id, tree, Refusal(ValueError, pattern))


def text(case_id: str, tree: Any, pattern: str) -> TreeCase:
    """Text that only :data:`ANY_TEXT` backends hold."""
    return TreeCase(case_id, tree, Refusal(ValueError, pattern), ANY_TEXT)


class Point(NamedTuple):
    x: int
    y: int


def nested(depth: int, leaf: Any, pair: bool) -> Any:
    """A tree with ``depth`` levels of dict, list and tuple in turn around ``leaf``."""
    tree: Any = leaf
    for level in range(depth):
        if level % 3 == 0:
            tree = {"d": tree}
        elif level % 3 == 1:
            tree = [tree, 1] if pair else [tree]
        else:
            tree = (tree,)
    return tree


def _dict_in_itself() -> Any:
    tree: dict[str, Any] = {"a": np.zeros(2)}
    tree["b"] = (1, [tree])
    return tree


def _dict_in_its_list() -> Any:
    tree: dict[str, Any] = {"a": 1}
    tree["b"] = [tree]
    return tree


def _list_in_itself() -> Any:
    items: list[Any] = []
    items.append(items)
    return items


_SHARED = {"x": np.zeros(2)}
_TOO_DEEP = rf"containers nested deeper than {MAX_DEPTH} \(corelay\.io\.tree\.MAX_DEPTH\)$"
_ACCEPTED_TYPES = "; accepted: numpy arrays and scalars of bool"

CASES: list[TreeCase] = [
    ok("float64-2d", np.arange(6.0).reshape(2, 3)),
    ok("float32", np.linspace(0, 1, 7, dtype=np.float32)),
    ok("float16", np.array([0.5, -1.25, np.inf], dtype=np.float16)),
    ok("nan-and-signed-zero", np.array([np.nan, -0.0, 0.0, -np.inf])),
    ok("int8", np.array([-128, 0, 127], dtype=np.int8)),
    ok("int64-extremes", np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max])),
    ok("uint16", np.arange(5, dtype=np.uint16)),
    ok("uint64-max", np.array([np.iinfo(np.uint64).max], dtype=np.uint64)),
    ok("bool-array", np.array([[True, False], [False, True]])),
    ok("complex64", np.array([1 + 2j, -3.5j], dtype=np.complex64)),
    ok("complex128", np.array([np.nan + 1j, 2.0 - 0j])),
    ok("big-endian", np.arange(4, dtype=">i4")),
    ok("bytes-array", np.array([b"ab", b"", b"xyz"])),
    ok("unicode-array", np.array(["", "ä", "日本語", "emoji 🎉"])),
    ok("unicode-2d", np.array([["a", "bb"], ["ccc", "Ω"]])),
    ok("zero-d-array", np.array(3.5)),
    ok("zero-d-unicode", np.array("grüß")),
    ok("empty-array", np.zeros((0,), dtype=np.int32)),
    ok("empty-2d", np.zeros((3, 0))),
    ok("non-contiguous", np.arange(20.0).reshape(4, 5)[::2, 1::2]),
    ok("fortran-order", np.asfortranarray(np.arange(12).reshape(3, 4))),
    ok("np-float64", np.float64(2.5)),
    ok("np-float32", np.float32(-1.5)),
    ok("np-int8", np.int8(-3)),
    ok("np-uint32", np.uint32(7)),
    ok("np-bool", np.bool_(True)),
    ok("np-complex64", np.complex64(1 - 1j)),
    ok("np-bytes", np.bytes_(b"abc")),
    ok("np-str", np.str_("ünï")),
    ok("bool", True),
    ok("int", -12345678901234),
    ok("int-max", 2**63 - 1),
    ok("float", 0.1),
    ok("float-nan", float("nan")),
    ok("complex", complex(1.5, -2.0)),
    ok("str", "hello, wörld"),
    ok("empty-str", ""),
    ok("bytes", b"\x00\xffbinary\x00"),
    ok("empty-bytes", b""),
    ok("none", None),
    ok("empty-dict", {}),
    ok("empty-tuple", ()),
    ok("empty-list", []),
    ok("dict-order", {"z": 1, "a": 2, "m": 3, "10": 4, "2": 5}),
    ok("tuple-of-arrays", (np.zeros(2), np.ones((2, 2)), np.arange(3))),
    ok("list-mixed", [1, "two", 3.0, None, b"five", np.int16(6)]),
    ok("long-tuple", tuple(np.full(2, i) for i in range(1200))),
    ok("nested-containers", {"a": [(), {}, [[]]], "b": ({"c": (1, [2, {"d": None}])},)}),
    ok("deep", {"l0": {"l1": {"l2": {"l3": {"l4": {"l5": {"l6": {"l7": (np.arange(2),)}}}}}}}}),
    ok("unicode-keys", {"ключ": 1, "鍵": "値", "with space": 2.0, "dots.in.name": 3}),
    ok(
        "pipeline-result",
        {
            "attribution": np.random.default_rng(0).standard_normal((4, 3, 8, 8)),
            "labels": np.array(["cat", "dog", "cat", "ship"]),
            "embedding": (np.eye(4), np.arange(4.0)),
            "params": {"n_clusters": 3, "method": "spectral", "seed": None, "eps": 1e-12},
        },
    ),
    ok(
        "nested-tuples", (np.zeros(1), ((np.ones(2),), ()), tuple(np.full(1, i) for i in range(12)))
    ),
    ok("nul-in-unicode-arrays", (np.array(["a\x00b"]), np.str_("a\x00b"), "emoji 🎉")),
    ok("dict-subclass", OrderedDict([("b", 1), ("a", 2)])),
    ok("shared-subtrees", {"a": _SHARED, "b": [_SHARED, _SHARED]}),
    ok("deepest", nested(MAX_DEPTH, np.arange(3), pair=True)),
    ok("deepest-str-leaf", nested(MAX_DEPTH, "leaf", pair=False)),
    # Types no backend stores: a TypeError naming the first offending node.
    type_error(
        "function",
        (3, {"fn": lambda: None}),
        r"data_out\[1\]\['fn'\]: unsupported type function" + _ACCEPTED_TYPES,
    ),
    type_error(
        "builtin",
        {"params": {"fn": print}},
        r"data_out\['params'\]\['fn'\]: unsupported type builtin_function_or_method"
        + _ACCEPTED_TYPES,
    ),
    type_error(
        "object",
        [1, (2, object())],
        r"data_out\[1\]\[1\]: unsupported type object" + _ACCEPTED_TYPES,
    ),
    type_error(
        "object-beside-array",
        (np.arange(2), (np.ones(1), object())),
        r"data_out\[1\]\[1\]: unsupported type object" + _ACCEPTED_TYPES,
    ),
    type_error("set", {"a"}, r"data_out: unsupported type set" + _ACCEPTED_TYPES),
    type_error(
        "set-beside-array",
        (np.arange(2), {1}),
        r"data_out\[1\]: unsupported type set" + _ACCEPTED_TYPES,
    ),
    type_error("namedtuple", Point(1, 2), r"data_out: unsupported type Point" + _ACCEPTED_TYPES),
    type_error(
        "bytearray", bytearray(b"x"), r"data_out: unsupported type bytearray" + _ACCEPTED_TYPES
    ),
    type_error(
        "masked-array",
        np.ma.masked_array([1, 2], mask=[False, True]),
        r"data_out: unsupported type MaskedArray \(its mask would be lost\)$",
    ),
    type_error(
        "object-dtype",
        np.array([1, "a"], dtype=object),
        r"data_out: unsupported object dtype" + _ACCEPTED_TYPES,
    ),
    type_error(
        "nested-object-dtype",
        ((np.array([object()]),),),
        r"data_out\[0\]\[0\]: unsupported object dtype" + _ACCEPTED_TYPES,
    ),
    type_error(
        "structured-dtype",
        np.zeros(2, dtype=[("a", "i4")]),
        r"data_out: unsupported structured dtype \[\('a', '<i4'\)\]" + _ACCEPTED_TYPES,
    ),
    type_error(
        "structured-pair",
        np.zeros(2, dtype="f4,i4"),
        r"data_out: unsupported structured dtype \[\('f0', '<f4'\), \('f1', '<i4'\)\]"
        + _ACCEPTED_TYPES,
    ),
    type_error(
        "datetime64",
        np.zeros(2, dtype="datetime64[s]"),
        r"data_out: unsupported dtype datetime64\[s\]" + _ACCEPTED_TYPES,
    ),
    type_error(
        "longdouble",
        np.zeros(2, dtype=np.longdouble),
        r"data_out: unsupported dtype float128" + _ACCEPTED_TYPES,
    ),
    type_error("int-key", {1: "a"}, r"data_out: dict key 1 is int; keys must be str$"),
    type_error(
        "nested-int-key", {"a": {1: 2}}, r"data_out\['a'\]: dict key 1 is int; keys must be str$"
    ),
    # Values no backend stores: a ValueError naming the node.
    value_error("key-slash", {"a/b": 1}, r"data_out: invalid dict key: name 'a/b' contains '/'"),
    value_error(
        "nested-key-slash",
        {"a": {"b/c": 1}},
        r"data_out\['a'\]: invalid dict key: name 'b/c' contains '/'",
    ),
    value_error("key-empty", {"": 1}, r"data_out: invalid dict key: empty name"),
    value_error("key-dot-dot", {"..": 1}, r"data_out: invalid dict key: name '\.\.' is reserved"),
    value_error(
        "key-nul",
        {"kept\x00zz": 1},
        r"data_out: invalid dict key: name 'kept\\x00zz' contains a NUL character",
    ),
    value_error(
        "keys-equal-before-nul",
        {"a\x00x": 1, "a\x00y": 2},
        r"data_out: invalid dict key: name 'a\\x00x' contains a NUL",
    ),
    value_error(
        "key-surrogate",
        {"a": {"\udcff": 1}},
        r"data_out\['a'\]: invalid dict key: name '\\udcff' contains a lone surrogate",
    ),
    value_error(
        "key-surrogate-beside",
        {"ok": 1, "\udc80": 2},
        r"data_out: invalid dict key: .* lone surrogate",
    ),
    value_error(
        "int-too-big",
        (2**63,),
        r"data_out\[0\]: int 9223372036854775808 is outside the int64 range",
    ),
    value_error(
        "int-too-small",
        [-(2**63) - 1],
        r"data_out\[0\]: int -9223372036854775809 is outside the int64 range",
    ),
    value_error(
        "one-too-deep",
        nested(MAX_DEPTH + 1, np.arange(3), pair=True),
        r"data_out\[0\]\['d'\].*: " + _TOO_DEEP,
    ),
    value_error(
        "one-too-deep-str-leaf",
        nested(MAX_DEPTH + 1, "leaf", pair=False),
        r"data_out\[0\]\['d'\].*: " + _TOO_DEEP,
    ),
    value_error("depth-900", nested(900, np.arange(3), pair=True), r"data_out.*: " + _TOO_DEEP),
    value_error("depth-5000", nested(5000, np.arange(3), pair=True), r"data_out.*: " + _TOO_DEEP),
    value_error("depth-50000", nested(50_000, "leaf", pair=False), r"data_out.*: " + _TOO_DEEP),
    value_error(
        "dict-in-itself",
        _dict_in_itself(),
        r"data_out\['b'\]\[1\]\[0\]: a dict that contains itself",
    ),
    value_error(
        "dict-in-its-list",
        _dict_in_its_list(),
        r"data_out\['b'\]\[0\]: a dict that contains itself",
    ),
    value_error("list-in-itself", _list_in_itself(), r"data_out\[0\]: a list that contains itself"),
    # Text that HDF5 cannot hold as UTF-8 strings: pickle stores it exactly.
    text(
        "str-nul",
        {"a": ["x\x00y"]},
        r"data_out\['a'\]\[0\]: str 'x\\x00y' contains a NUL character",
    ),
    text(
        "str-nul-in-list",
        {"sub": ["ok", "x\x00y"]},
        r"data_out\['sub'\]\[1\]: str 'x\\x00y' contains a NUL",
    ),
    text(
        "str-surrogate", ("ok", "\ud800"), r"data_out\[1\]: str '\\ud800' contains a lone surrogate"
    ),
    text(
        "str-surrogate-in-dict",
        {"s": "\ud800"},
        r"data_out\['s'\]: str '\\ud800' contains a lone surrogate",
    ),
    text(
        "unicode-array-surrogate",
        {"u": np.array([["a", "b"], ["c", "d\udc80"]])},
        r"data_out\['u'\]: unicode array holds U\+DC80 at index \(1, 1\)",
    ),
    text(
        "unicode-array-surrogate-in-tuple",
        (1, np.array(["a", "\ud800"])),
        r"data_out\[1\]: unicode array holds U\+D800",
    ),
    text("np-str-surrogate", [np.str_("\ud83d")], r"data_out\[0\]: unicode array holds U\+D83D"),
    text(
        "any-text",
        ("a\x00b", "\ud800", np.array(["\udfff"]), np.str_("\ud800")),
        r"data_out\[0\]: str 'a\\x00b' contains a NUL",
    ),
    text(
        "any-text-in-dict",
        ("a\x00b", "\ud800", {"k": np.array(["\udfff", "x"])}, np.str_("\ud83d")),
        r"data_out\[0\]: str 'a\\x00b' contains a NUL",
    ),
]

ACCEPTED = [case for case in CASES if case.refusal is None]
"""The cases every backend stores."""
REFUSED = [case for case in CASES if case.refusal is not None]
"""The cases some backend refuses."""
TREE_CASES: list[tuple[str, Any]] = [(case.id, case.tree) for case in ACCEPTED]
"""``(id, tree)`` of every case every backend stores."""
