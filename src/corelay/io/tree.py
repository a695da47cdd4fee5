"""The stored tree: what the storages accept and return, described by Pydantic models.

:func:`validate` walks a Python value node by node (never element by element, never copying an
array) and returns its description, or raises naming the path of the first node that cannot be
stored. The backends write only described trees.
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, TypeAlias, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from corelay.io._keys import name_problem, text_problem

__all__ = [
    "DEFAULT_MAX_READ_BYTES",
    "MAX_DEPTH",
    "ArrayNode",
    "DictNode",
    "Node",
    "NumpyScalarNode",
    "RecursiveHashTuple",
    "RecursiveNumPyArrayTuple",
    "ScalarKind",
    "ScalarNode",
    "SequenceKind",
    "SequenceNode",
    "StringInfo",
    "TreeInput",
    "dtype_problem",
    "string_info_of",
    "validate",
]

RecursiveNumPyArrayTuple: TypeAlias = tuple["np.ndarray[Any, Any] | RecursiveNumPyArrayTuple", ...]
"""A tuple of arrays or of such tuples, at any depth: what corelay 1.0.0's ``HashedHDF5`` stores."""

RecursiveHashTuple: TypeAlias = tuple["str | RecursiveHashTuple", ...]
"""A tuple of hash strings or of such tuples, mirroring a :data:`RecursiveNumPyArrayTuple`."""

if TYPE_CHECKING:
    TreeInput: TypeAlias = (
        np.ndarray[Any, Any]
        | np.generic[Any]
        | bool
        | int
        | float
        | complex
        | str
        | bytes
        | Mapping[str, "TreeInput"]
        | Sequence["TreeInput"]
        | None
    )
    """What the storages' ``write`` accepts, for static type checkers.

    ``Mapping`` and ``Sequence`` stand for ``dict``, ``tuple`` and ``list`` because those are
    invariant in their item types; at run time :func:`validate` checks the tree exactly.
    """
else:
    # Run-time checks of trees are :func:`validate`'s job: it walks every node and names the path
    # of a bad one, where beartype would sample one item per container.
    TreeInput = object


class StringInfo(NamedTuple):
    """How strings are encoded, as :func:`h5py.check_string_dtype` reports it."""

    encoding: str
    """The encoding of the strings, ``'utf-8'`` or ``'ascii'``."""

    length: int | None
    """The fixed length in bytes, or ``None`` for variable-length strings."""


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArrayNode(_Node):
    """A NumPy array leaf: its dtype and shape, and the string encoding of string arrays."""

    kind: Literal["ndarray"] = "ndarray"
    dtype: str = Field(description="The NumPy dtype string, for example '<f8' or '<U5'.")
    shape: tuple[int, ...] = Field(description="The array's shape; () for a 0-d array.")
    string_info: StringInfo | None = Field(
        default=None,
        description="How strings are stored: 'ascii' for bytes ('S'), 'utf-8' for unicode ('U'); "
        "the length is known once written.",
    )


class NumpyScalarNode(_Node):
    """A NumPy scalar leaf (an instance of ``numpy.generic``)."""

    kind: Literal["generic"] = "generic"
    dtype: str = Field(description="The NumPy dtype string of the scalar.")
    string_info: StringInfo | None = Field(default=None, description="As for arrays.")


ScalarKind: TypeAlias = Literal["bool", "int", "float", "complex", "str", "bytes", "none"]
"""The Python scalar leaves."""


class ScalarNode(_Node):
    """A Python scalar leaf.

    ``bool``, ``int`` (int64 range), ``float``, ``complex``, ``str``, ``bytes`` or ``None``.
    """

    kind: ScalarKind


SequenceKind: TypeAlias = Literal["tuple", "list"]
"""The sequence containers."""


class DictNode(_Node):
    """A ``dict`` with ``str`` keys; the order of ``children`` is the dict's order."""

    kind: Literal["dict"] = "dict"
    children: dict[str, "Node"] = Field(description="The entries, in the dict's order.")


class SequenceNode(_Node):
    """A ``tuple`` or ``list``; ``items`` in order."""

    kind: SequenceKind
    items: list["Node"] = Field(description="The items, in order.")


Node: TypeAlias = Annotated[
    ArrayNode | NumpyScalarNode | ScalarNode | DictNode | SequenceNode,
    Field(discriminator="kind"),
]
"""A node of the stored tree, discriminated by its ``kind``."""

DictNode.model_rebuild()
SequenceNode.model_rebuild()

_INT64 = np.iinfo(np.int64)
_FLOAT_SIZES = (2, 4, 8)
_COMPLEX_SIZES = (8, 16)
_ACCEPTED = (
    "numpy arrays and scalars of bool, int, uint, float16/32/64, complex64/128, bytes (S) or "
    "unicode (U); bool, int, float, complex, str, bytes, None; dict with str keys, tuple, list"
)
_PYTHON_SCALARS: dict[type, ScalarKind] = {
    bool: "bool",
    int: "int",
    float: "float",
    complex: "complex",
    str: "str",
    bytes: "bytes",
    type(None): "none",
}
# Leaves of one kind share one immutable node.
_SCALAR_NODES = {kind: ScalarNode(kind=kind) for kind in _PYTHON_SCALARS.values()}


def dtype_problem(dtype: np.dtype[Any]) -> str | None:
    """Tells why arrays of ``dtype`` are not stored, or ``None`` if they are."""
    kind, size = dtype.kind, dtype.itemsize
    if kind in "biuSU" and dtype.fields is None and dtype.subdtype is None:
        return None
    if (kind == "f" and size in _FLOAT_SIZES) or (kind == "c" and size in _COMPLEX_SIZES):
        return None
    if kind == "O":
        return "object dtype"
    if dtype.fields is not None:
        return f"structured dtype {dtype}"
    return f"dtype {dtype}"


def _check_dtype(dtype: np.dtype[Any], path: str) -> str:
    problem = dtype_problem(dtype)
    if problem is not None:
        raise TypeError(f"{path}: unsupported {problem}; accepted: {_ACCEPTED}")
    return dtype.str


def string_info_of(dtype: np.dtype[Any]) -> StringInfo | None:
    """How strings of ``dtype`` are stored: ASCII for bytes (``S``), UTF-8 for unicode (``U``).

    Returns:
        ``None`` for dtypes that are not strings.
    """
    if dtype.kind == "S":
        return StringInfo("ascii", dtype.itemsize)
    if dtype.kind == "U":
        return StringInfo("utf-8", None)
    return None


#: The deepest nesting of containers that a stored tree may have: a dict, tuple or list at the
#: root is at depth 1. Deeper trees are refused by :func:`validate`, so that every backend
#: writes and reads what it accepts without exhausting Python's stack.
MAX_DEPTH = 100

#: The most bytes of data one read may declare beyond what its file or store holds for them,
#: unless the storage's ``max_read_bytes`` is raised: a small file can declare terabytes of
#: unwritten or highly compressed chunks, which a read would allocate.
DEFAULT_MAX_READ_BYTES = 1 << 30

# Unicode arrays are checked in blocks of this many code points: bounded scratch memory.
_BLOCK_CODES = 1 << 16
_FIRST_SURROGATE = 0xD800
_LAST_SURROGATE = 0xDFFF
_LAST_CODE_POINT = 0x10FFFF


def validate(tree: object, path: str = "data_out", *, any_text: bool = False) -> Node:
    """Describes ``tree`` node by node, or raises for the first node that cannot be stored.

    Walks nodes, not elements, with one exception: the code points of unicode (``U``) arrays
    are scanned (about 1 ms per 10 MB, in blocks, without copying the array), because HDF5 stores
    them as UTF-8, which has no lone surrogates.

    Args:
        tree: The value to describe.
        path: How to name the root in error messages.
        any_text: Accept every ``str``, as pickle stores them; by default strings (``str``,
            NumPy ``str_`` and ``U`` arrays) must be what every backend can store: valid Unicode
            (no lone surrogates), and ``str`` without NUL characters.

    Raises:
        TypeError: A node has an unsupported type or dtype, or a dict has a non-``str`` key.
        ValueError: A dict key is empty, contains ``/`` or a NUL character, is ``.`` or ``..``
            or has a lone surrogate; an ``int`` is outside the int64 range; a string cannot be
            stored (see ``any_text``); containers are nested deeper than :data:`MAX_DEPTH`, or a
            container contains itself.

    Returns:
        The description of ``tree``.
    """
    return _Validator(any_text).node(tree, path, 0)


class _Validator:
    def __init__(self, any_text: bool) -> None:
        self.any_text = any_text
        # The containers on the path from the root: a tree that contains itself is refused by
        # name rather than by running into MAX_DEPTH.
        self.ancestors: set[int] = set()

    def node(self, tree: object, path: str, depth: int) -> Node:
        # Exact type checks: a subclass (an IntEnum, a namedtuple) would not read back as itself.
        scalar_kind = _PYTHON_SCALARS.get(type(tree))
        if scalar_kind is not None:
            if scalar_kind == "int" and not _INT64.min <= cast(int, tree) <= _INT64.max:
                raise ValueError(f"{path}: int {tree} is outside the int64 range")
            if scalar_kind == "str" and not self.any_text:
                _check_text(cast(str, tree), path)
            return _SCALAR_NODES[scalar_kind]
        if isinstance(tree, np.ndarray):
            if isinstance(tree, np.ma.MaskedArray):
                raise TypeError(f"{path}: unsupported type MaskedArray (its mask would be lost)")
            array: np.ndarray[Any, Any] = cast(Any, tree)
            dtype = _check_dtype(array.dtype, path)
            if array.dtype.kind == "U" and not self.any_text:
                _check_code_points(array, path)
            return ArrayNode(
                dtype=dtype, shape=array.shape, string_info=string_info_of(array.dtype)
            )
        if isinstance(tree, np.generic):
            scalar: np.generic[Any] = cast(Any, tree)
            dtype = _check_dtype(scalar.dtype, path)
            if scalar.dtype.kind == "U" and not self.any_text:
                _check_code_points(np.asarray(scalar), path)  # stored as a 0-d U array
            return NumpyScalarNode(dtype=dtype, string_info=string_info_of(scalar.dtype))
        if isinstance(tree, dict) or type(tree) is tuple or type(tree) is list:
            return self.container(
                cast("dict[object, object] | tuple[object, ...]", tree), path, depth
            )
        raise TypeError(
            f"{path}: unsupported type {type(tree).__qualname__}; accepted: {_ACCEPTED}"
        )

    def container(
        self,
        tree: "dict[object, object] | tuple[object, ...] | list[object]",
        path: str,
        depth: int,
    ) -> Node:
        depth += 1
        if id(tree) in self.ancestors:
            raise ValueError(f"{path}: a {type(tree).__name__} that contains itself")
        if depth > MAX_DEPTH:
            raise ValueError(
                f"{path}: containers nested deeper than {MAX_DEPTH} (corelay.io.tree.MAX_DEPTH)"
            )
        self.ancestors.add(id(tree))
        try:
            if isinstance(tree, dict):
                children: dict[str, Node] = {}
                for key, value in tree.items():
                    if not isinstance(key, str):
                        raise TypeError(
                            f"{path}: dict key {key!r} is {type(key).__name__}; keys must be str"
                        )
                    problem = name_problem(key)
                    if problem is not None:
                        raise ValueError(f"{path}: invalid dict key: {problem}")
                    children[key] = self.node(value, f"{path}[{key!r}]", depth)
                return DictNode(children=children)
            items = [self.node(item, f"{path}[{index}]", depth) for index, item in enumerate(tree)]
            kind: SequenceKind = "tuple" if isinstance(tree, tuple) else "list"
            return SequenceNode(kind=kind, items=items)
        finally:
            self.ancestors.discard(id(tree))


def _check_text(text: str, path: str) -> None:
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(
            f"{path}: str {_preview(text)} {problem}; HDF5 cannot store it as a string"
        )


def _preview(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


def _check_code_points(array: np.ndarray[Any, Any], path: str) -> None:
    """Refuses a unicode array holding a lone surrogate or a value beyond U+10FFFF."""
    chars = array.dtype.itemsize // 4
    if chars == 0 or array.size == 0:
        return
    codes_type = np.dtype(np.uint32).newbyteorder(array.dtype.byteorder)
    # A view of a C-contiguous array; blocks of others are copied one at a time.
    flat = array.reshape(-1) if array.flags.c_contiguous else None
    step = max(1, _BLOCK_CODES // chars)
    for start in range(0, array.size, step):
        block = (flat if flat is not None else array.flat)[start : start + step]
        codes = np.ascontiguousarray(block).view(codes_type)
        if codes.max() < _FIRST_SURROGATE:
            continue  # the usual case: one pass, no scratch array
        bad = ((codes >= _FIRST_SURROGATE) & (codes <= _LAST_SURROGATE)) | (
            codes > _LAST_CODE_POINT
        )
        if bad.any():
            where = start + int(np.argmax(bad)) // chars
            index = _index_of(where, array.shape)
            code = int(codes[np.argmax(bad)])
            raise ValueError(
                f"{path}: unicode array holds U+{code:04X} at index {index}, which has no UTF-8 "
                "encoding (a lone surrogate or beyond U+10FFFF); HDF5 cannot store it"
            )


def _index_of(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index: list[int] = []
    for size in reversed(shape):
        flat_index, position = divmod(flat_index, size)
        index.append(position)
    return tuple(reversed(index))
