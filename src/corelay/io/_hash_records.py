"""The records ext_hash feeds its hasher: tags, leaves, and names of classes and functions.

The leaves are bytes, memory views, arrays and sparse matrices.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable
from typing import Any, Final, TypeAlias, cast

import numpy as np
import xxhash

# Maximum number of bytes copied at once when hashing a non-C-contiguous array.  Module
# level (and looked up at call time) so tests can monkeypatch it small.
CHUNK_BYTES: int = 16 * 1024 * 1024

# NumPy dtype kinds whose items are plain, fully defined bytes.
ARRAY_KINDS: Final = frozenset("biufcmMSU")

U64: Final = struct.Struct("<Q")
F64: Final = struct.Struct("<d")
C128: Final = struct.Struct("<dd")

# One-byte record tags.
T_NONE: Final = b"N"
T_TRUE: Final = b"T"
T_FALSE: Final = b"F"
T_INT_POS: Final = b"i"
T_INT_NEG: Final = b"j"
T_FLOAT: Final = b"f"
T_COMPLEX: Final = b"c"
T_STR: Final = b"s"
T_BYTES: Final = b"y"
T_BYTEARRAY: Final = b"Y"
T_MEMORYVIEW: Final = b"m"
T_PATH: Final = b"P"
T_TUPLE: Final = b"("
T_LIST: Final = b"["
T_DICT: Final = b"{"
T_SET: Final = b"S"
T_FROZENSET: Final = b"Z"
T_ARRAY: Final = b"A"
T_NP_SCALAR: Final = b"G"
T_MATRIX: Final = b"M"
T_MASKED: Final = b"a"
T_ARRAY_SUBCLASS: Final = b"k"
T_SPARSE: Final = b"x"
T_ENUM: Final = b"E"
T_NAMEDTUPLE: Final = b"n"
T_DATACLASS: Final = b"D"
T_RANGE: Final = b"r"
T_SLICE: Final = b"l"
T_DATETIME: Final = b"t"
T_DATE: Final = b"d"
T_TIME: Final = b"h"
T_TIMEDELTA: Final = b"e"
T_DECIMAL: Final = b"q"
T_FRACTION: Final = b"Q"
T_DTYPE: Final = b"p"
T_CLASS: Final = b"C"
T_FUNCTION: Final = b"u"
T_LOCAL_FUNCTION: Final = b"L"
T_BUILTIN: Final = b"b"
T_CODE: Final = b"o"
T_ELLIPSIS: Final = b"."
T_NOT_IMPLEMENTED: Final = b"!"
T_SELF: Final = b"w"
T_EMPTY_CELL: Final = b"z"
T_REDUCE: Final = b"R"
T_GLOBAL: Final = b"g"

_Array: TypeAlias = "np.ndarray[Any, np.dtype[Any]]"


class UnsupportedError(Exception):
    """Internal: an unsupported node; containers add their path component on unwind."""

    def __init__(self, message: str, *, cycle: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.cycle = cycle
        self.trail: list[str] = []


def feed_digests(h: xxhash.xxh3_128, tag: bytes, digests: list[bytes]) -> None:
    """Feed an unordered container record: its tag, size and its sorted item digests."""
    digests.sort()
    h.update(tag)
    h.update(U64.pack(len(digests)))
    h.update(b"".join(digests))


def feed_bytes(h: xxhash.xxh3_128, tag: bytes, payload: bytes | bytearray) -> None:
    """Feed a tagged, length-prefixed byte string record."""
    h.update(tag)
    h.update(U64.pack(len(payload)))
    h.update(payload)


def feed_memoryview(h: xxhash.xxh3_128, view: memoryview) -> None:
    """Feed a memoryview: its format, shape and raw bytes in C order."""
    feed_bytes(h, T_MEMORYVIEW, view.format.encode("ascii"))
    shape = view.shape or ()
    h.update(U64.pack(len(shape)))
    for dim in shape:
        h.update(U64.pack(dim))
    h.update(U64.pack(view.nbytes))
    if view.c_contiguous:
        h.update(view)
    else:
        h.update(view.tobytes())


def feed_array(h: xxhash.xxh3_128, tag: bytes, arr: _Array) -> None:
    """Feed an array record: tag, dtype string, shape, then every value byte in C order."""
    dtype = arr.dtype
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None:
        what = {
            "O": "object arrays hold references, not values",
            "V": "structured and void dtypes are not supported",
            "T": "variable-width StringDType arrays are not supported; use a 'U' dtype",
        }.get(dtype.kind, "only bool, integer, float, complex, datetime and S/U strings")
        raise UnsupportedError(f"unsupported NumPy dtype {dtype!r} ({what})")
    if (dtype.char == "g" and dtype.itemsize != 8) or (dtype.char == "G" and dtype.itemsize != 16):
        raise UnsupportedError(
            f"unsupported NumPy dtype {dtype!r}: long double has a platform-specific, "
            "padded layout; cast to float64/complex128 first"
        )
    feed_bytes(h, tag, dtype.str.encode("ascii"))
    h.update(U64.pack(arr.ndim))
    for dim in arr.shape:
        h.update(U64.pack(dim))
    h.update(U64.pack(arr.nbytes))
    feed_array_data(h, arr)


def feed_array_data(h: xxhash.xxh3_128, arr: _Array) -> None:
    """Feed the bytes of ``arr`` in C order, copying at most about ``CHUNK_BYTES`` at once."""
    if arr.nbytes == 0:
        return
    if arr.flags.c_contiguous:
        h.update(byte_view(arr))
        return
    chunk_bytes = CHUNK_BYTES
    row_bytes = arr.itemsize * math.prod(arr.shape[1:])
    if row_bytes > chunk_bytes and arr.ndim > 1:
        for row in arr:
            feed_array_data(h, row)
        return
    rows_per_chunk = max(1, chunk_bytes // row_bytes)
    for start in range(0, arr.shape[0], rows_per_chunk):
        h.update(byte_view(np.ascontiguousarray(arr[start : start + rows_per_chunk])))


def byte_view(arr: _Array) -> memoryview:
    """Return a flat ``uint8`` memoryview of the C-contiguous ``arr``, without copying.

    ``reshape(-1)`` of a C-contiguous array is always a view, and viewing it as ``uint8``
    gives a buffer whose format any consumer accepts (NumPy refuses to export e.g.
    datetime64 buffers with their own format).
    """
    return arr.reshape(-1).view(np.uint8).data


def torch_to_numpy(obj: object) -> _Array | None:
    """Return ``obj`` as a NumPy array if it is a tensor of an already imported torch."""
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return None
    tensor_type: Any = getattr(torch, "Tensor", None)
    if not isinstance(tensor_type, type) or not isinstance(obj, tensor_type):
        return None
    tensor: Any = obj
    try:
        array: object = tensor.detach().cpu().numpy()
    except Exception as exc:  # e.g. bfloat16, which NumPy cannot represent
        error = UnsupportedError(
            f"torch.Tensor cannot be converted to NumPy ({type(exc).__name__}: {exc})"
        )
        raise error from exc
    if not isinstance(array, np.ndarray):
        raise UnsupportedError("torch.Tensor.numpy() did not return a numpy.ndarray")
    return cast(_Array, array)


def type_name(t: type) -> str:
    """Return a readable name of ``t``: ``function``, ``numpy.ma.MaskedArray``, ..."""
    if t.__module__ == "builtins":
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


def short_repr(obj: object, limit: int = 40) -> str:
    """Return ``repr(obj)`` cut to ``limit`` characters, for error paths."""
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type_name(type(obj))}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def namedtuple_fields(t: type) -> tuple[str, ...] | None:
    """The field names of a namedtuple class, or ``None`` for any other class."""
    fields: object = getattr(t, "_fields", None)
    if not issubclass(t, tuple) or type(fields) is not tuple:
        return None
    return cast("tuple[str, ...]", fields)


def resolve(module: str, qualname: str) -> object:
    """The object named ``qualname`` in the already imported ``module``, or ``None``."""
    found: object = sys.modules.get(module)
    for part in qualname.split("."):
        if found is None:
            return None
        found = getattr(found, part, None)
    return found


def is_global(obj: object) -> bool:
    """Tells whether ``obj`` is found again by its module and qualified name."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", getattr(obj, "__name__", None))
    if module is None and isinstance(obj, np.ufunc):
        module = "numpy"
    return (
        isinstance(module, str) and isinstance(qualname, str) and resolve(module, qualname) is obj
    )


def feed_qualified_name(h: xxhash.xxh3_128, obj: object) -> None:
    module = cast(str, getattr(obj, "__module__", None) or "numpy")
    qualname = cast(str, getattr(obj, "__qualname__", getattr(obj, "__name__", "")))
    feed_bytes(h, T_STR, module.encode("utf-8", "surrogatepass"))
    feed_bytes(h, T_STR, qualname.encode("utf-8", "surrogatepass"))


def feed_class(h: xxhash.xxh3_128, cls: type) -> None:
    """Feed a class by its module and qualified name, which must find it again."""
    if not is_global(cls):
        raise UnsupportedError(
            f"unsupported class {type_name(cls)}: it is not found by its qualified name "
            "(defined in a function, or rebound), so its name does not identify it"
        )
    h.update(T_CLASS)
    feed_qualified_name(h, cls)


def is_sparse(t: type) -> bool:
    """Tells whether ``t`` is a scipy.sparse class, importing scipy only if it might be one."""
    if not t.__module__.startswith("scipy.sparse"):
        return False
    import scipy.sparse  # scipy is optional: imported only when the input is sparse

    sparray: type | None = getattr(scipy.sparse, "sparray", None)
    bases = (scipy.sparse.spmatrix,) if sparray is None else (scipy.sparse.spmatrix, sparray)
    return issubclass(t, bases)


def feed_sparse(h: xxhash.xxh3_128, matrix: Any, feed: Callable[[object], None]) -> None:
    """Feed a scipy.sparse matrix or array in a canonical form of its format.

    The class (format, and matrix or array) is part of the key; the entries are canonical:
    indices sorted, duplicates summed, index arrays as int64. Explicit zeros are entries.
    """
    fmt: str = matrix.format
    h.update(T_SPARSE)
    feed_class(h, cast("type[object]", type(matrix)))
    dtype: np.dtype[Any] = matrix.dtype
    feed_bytes(h, T_BYTES, dtype.str.encode("ascii"))
    shape: tuple[int, ...] = tuple(matrix.shape)
    h.update(U64.pack(len(shape)))
    for dim in shape:
        h.update(U64.pack(dim))
    if fmt == "coo":
        coords: tuple[_Array, ...] = tuple(
            getattr(matrix, "coords", None) or (matrix.row, matrix.col)
        )
        coords, data = canonical_coo(coords, matrix.data)
        for index in coords:
            feed_array(h, T_ARRAY, index.astype(np.int64, copy=False))
        feed_array(h, T_ARRAY, data)
        return
    if fmt not in ("csr", "csc", "bsr"):  # dia, dok, lil: their entries, as CSR
        matrix = matrix.tocsr()
    if fmt == "bsr":
        feed(tuple(int(side) for side in matrix.blocksize))
    indptr, indices = cast(_Array, matrix.indptr), cast(_Array, matrix.indices)
    if not compressed_is_canonical(indptr, indices):
        matrix = matrix.copy()
        # scipy caches these flags; the copy must not trust stale ones
        matrix.has_sorted_indices = False
        matrix.has_canonical_format = False
        matrix.sum_duplicates()
        indptr, indices = matrix.indptr, matrix.indices
    feed_array(h, T_ARRAY, indptr.astype(np.int64, copy=False))
    feed_array(h, T_ARRAY, indices.astype(np.int64, copy=False))
    feed_array(h, T_ARRAY, cast(_Array, matrix.data))


def compressed_is_canonical(indptr: _Array, indices: _Array) -> bool:
    """Tells whether the indices increase strictly within each compressed row (or column)."""
    if indices.size < 2:
        return True
    increasing = np.diff(indices) > 0
    starts = indptr[1:-1]
    starts = starts[(starts > 0) & (starts < indices.size)]
    increasing[starts - 1] = True  # a new row may start anywhere
    return bool(increasing.all())


def canonical_coo(coords: tuple[_Array, ...], data: _Array) -> tuple[tuple[_Array, ...], _Array]:
    """COO entries sorted in C order, duplicates summed (explicit zeros kept)."""
    if data.size == 0:
        return coords, data
    order = np.lexsort(coords[::-1])
    coords = tuple(index[order] for index in coords)
    data = data[order]
    unique = np.ones(data.size, dtype=bool)
    if data.size > 1:
        unique[1:] = np.logical_or.reduce([index[1:] != index[:-1] for index in coords])
    if unique.all():
        return coords, data
    starts = np.flatnonzero(unique)
    return tuple(index[unique] for index in coords), np.add.reduceat(data, starts, dtype=data.dtype)
