"""Exact, deterministic content hashing of nested Python/NumPy data, for cache keys.

The single public function, :func:`ext_hash`, walks a tree of supported values and feeds
one streaming ``xxh3_128`` hasher with a prefix-free sequence of *records*: each record
starts with a one-byte type tag, and every variable-length payload is preceded by its
length (8-byte little-endian).  Because the encoding is prefix-free, two different trees
never produce the same byte stream (up to xxh3_128 collisions of the per-item sub-digests
used for dicts and sets), so ``((1, 2), 3)`` and ``(1, (2, 3))`` are different keys, and
so are ``1``, ``1.0``, ``True``, ``numpy.int64(1)``, ``'1'`` and ``b'1'``.

The digest depends only on the values, never on the process: no ``hash()``, ``id()``,
``pickle`` or ``PYTHONHASHSEED``-dependent iteration order enters it (``id()`` is used only
to detect self-referencing containers).  Unordered
containers (``dict``, ``set``, ``frozenset``) are hashed by sorting per-item sub-digests.

Supported values and how they are keyed:

* ``None``, ``bool``, ``int`` (any size: sign and magnitude bytes), ``float`` (exact
  IEEE-754 bits, so ``0.0 != -0.0`` and NaN payloads matter), ``complex``, ``str``
  (UTF-8), ``bytes``, ``bytearray`` and ``memoryview`` (raw bytes in C order, plus the
  view's format and shape; a non-contiguous memoryview is copied once, use a NumPy array
  for bounded memory).  These are matched by *exact* type: subclasses such as
  ``IntEnum`` members or ``NamedTuple`` instances are rejected rather than silently
  hashed like their base type.
* ``tuple`` and ``list`` (distinct keys for the same items), ``dict``,
  ``collections.OrderedDict`` and ``collections.defaultdict`` (all three hash alike and
  insertion order is ignored; keys may be any supported value), ``set`` and
  ``frozenset`` (distinct from each other).
* ``pathlib.PurePath`` and subclasses, keyed by ``as_posix()`` under their own tag.
* ``numpy.ndarray`` (and ``numpy.memmap``): keyed by ``dtype.str``, shape and every byte
  of the values in C order.  The memory layout does not matter: a strided view, a
  negative-stride view or a Fortran-ordered array hashes like its C-contiguous copy.  The
  byte order is part of the dtype, so a ``'>f8'`` array and a ``'<f8'`` array holding the
  same numbers are *different* keys (so a native-order array hashes differently on a
  big-endian machine).  C-contiguous arrays are hashed in place without a copy; other
  layouts are copied in chunks of at most ``_CHUNK_BYTES`` (16 MiB) at a time.
  Object, structured/void, variable-width string (``StringDType``) and padded
  ``longdouble`` dtypes raise :class:`TypeError`.
* NumPy scalars (``numpy.generic``), keyed by ``dtype.str`` and their bytes under a tag
  distinct from 0-d arrays, and distinct from the Python ``float``/``str``/... that some
  of them subclass.
* ``torch.Tensor``, only if ``torch`` has already been imported by the caller (this
  module never imports it): hashed as ``t.detach().cpu().numpy()``, i.e. exactly like the
  equal NumPy array.

Anything else raises :class:`TypeError` naming the type and the path of the offending
node, e.g. ``ext_hash: data[2]['fn']: unsupported type function; accepted: ...``.
Self-referencing containers raise :class:`ValueError`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import math
import pathlib
import struct
import sys
import types
from collections.abc import Callable
from typing import Any, Final, TypeAlias, cast

import numpy as np
import xxhash

__all__ = ["ext_hash", "function_hash"]

# Maximum number of bytes copied at once when hashing a non-C-contiguous array.  Module
# level (and looked up at call time) so tests can monkeypatch it small.
_CHUNK_BYTES: int = 16 * 1024 * 1024

# Bump when the encoding changes, so that old cache keys cannot be confused with new ones.
_FORMAT_PREFIX: Final = b"corelay.ext_hash.v1\x00"

_ACCEPTED: Final = (
    "None, bool, int, float, complex, str, bytes, bytearray, memoryview, tuple, list, "
    "dict, OrderedDict, defaultdict, set, frozenset, pathlib.PurePath, numpy.ndarray, "
    "numpy.memmap, numpy scalars, torch.Tensor (if torch is already imported), "
    "and any object with a value that pickle could reduce"
)

# NumPy dtype kinds whose items are plain, fully defined bytes.
_ARRAY_KINDS: Final = frozenset("biufcmMSU")

_U64: Final = struct.Struct("<Q")
_F64: Final = struct.Struct("<d")
_C128: Final = struct.Struct("<dd")

# One-byte record tags.
_T_NONE: Final = b"N"
_T_TRUE: Final = b"T"
_T_FALSE: Final = b"F"
_T_INT_POS: Final = b"i"
_T_INT_NEG: Final = b"j"
_T_FLOAT: Final = b"f"
_T_COMPLEX: Final = b"c"
_T_STR: Final = b"s"
_T_BYTES: Final = b"y"
_T_BYTEARRAY: Final = b"Y"
_T_MEMORYVIEW: Final = b"m"
_T_PATH: Final = b"P"
_T_TUPLE: Final = b"("
_T_LIST: Final = b"["
_T_DICT: Final = b"{"
_T_SET: Final = b"S"
_T_FROZENSET: Final = b"Z"
_T_ARRAY: Final = b"A"
_T_NP_SCALAR: Final = b"G"
_T_MATRIX: Final = b"M"
_T_MASKED: Final = b"a"
_T_ARRAY_SUBCLASS: Final = b"k"
_T_SPARSE: Final = b"x"
_T_ENUM: Final = b"E"
_T_NAMEDTUPLE: Final = b"n"
_T_DATACLASS: Final = b"D"
_T_RANGE: Final = b"r"
_T_SLICE: Final = b"l"
_T_DATETIME: Final = b"t"
_T_DATE: Final = b"d"
_T_TIME: Final = b"h"
_T_TIMEDELTA: Final = b"e"
_T_DECIMAL: Final = b"q"
_T_FRACTION: Final = b"Q"
_T_DTYPE: Final = b"p"
_T_CLASS: Final = b"C"
_T_FUNCTION: Final = b"u"
_T_LOCAL_FUNCTION: Final = b"L"
_T_BUILTIN: Final = b"b"
_T_CODE: Final = b"o"
_T_ELLIPSIS: Final = b"."
_T_NOT_IMPLEMENTED: Final = b"!"
_T_SELF: Final = b"w"
_T_EMPTY_CELL: Final = b"z"
_T_REDUCE: Final = b"R"
_T_GLOBAL: Final = b"g"

_DICT_TYPES: Final = (dict, collections.OrderedDict, collections.defaultdict)
# Callables of C code, keyed by their module and name when that finds them again.
_BY_NAME: Final[tuple[type, ...]] = (types.BuiltinFunctionType, np.ufunc)

_Array: TypeAlias = "np.ndarray[Any, np.dtype[Any]]"
_Seq: TypeAlias = "tuple[object, ...] | list[object]"
_Set: TypeAlias = "set[object] | frozenset[object]"


class _UnsupportedError(Exception):
    """Internal: an unsupported node; containers add their path component on unwind."""

    def __init__(self, message: str, *, cycle: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.cycle = cycle
        self.trail: list[str] = []


def ext_hash(data: object) -> str:
    """Return an exact, deterministic content hash of ``data``, for use as a cache key.

    The key is the ``xxh3_128`` hex digest of a tagged, length-prefixed encoding of the
    tree; see the module docstring for the supported types and how each is keyed.  Any
    bit difference in a value, a NumPy dtype (including its byte order) or a shape gives a
    different key; array memory layout and dict/set ordering do not.

    Args:
        data: The value to hash: a supported scalar, array or (nested) container.

    Returns:
        A 32-character lowercase hexadecimal string.

    Raises:
        TypeError: If ``data`` contains a value of an unsupported type, including object,
            structured and variable-width string NumPy arrays.  The message names the
            type and the path of the offending node (e.g. ``data[2]['fn']``).
        ValueError: If a container contains itself.
    """
    hasher = xxhash.xxh3_128()
    hasher.update(_FORMAT_PREFIX)
    return _run(hasher, lambda: _feed(hasher, data, set()))


def function_hash(function: types.FunctionType) -> str:
    """Return a hash of what ``function`` computes: its code and the values it closes over.

    The code record covers the bytecode, constants (nested functions' code too), the names
    used, the argument counts and flags, but not the file name or line numbers. Defaults and
    the current values of the closure's cells are hashed as :func:`ext_hash` hashes values;
    the values of the global names the function uses are not part of it. Bytecode differs
    between Python versions, and so does this hash.

    Args:
        function: A Python function (``def`` or ``lambda``).

    Returns:
        A 32-character lowercase hexadecimal string.

    Raises:
        TypeError: A default or closed-over value cannot be hashed; the message names it,
            for example ``ext_hash: data.<closure model>: ...``.
        ValueError: A closed-over value contains itself.
    """
    hasher = xxhash.xxh3_128()
    hasher.update(_FORMAT_PREFIX)
    hasher.update(_T_LOCAL_FUNCTION)
    return _run(hasher, lambda: _feed_function_body(hasher, function, set()))


def _run(hasher: xxhash.xxh3_128, feed: Callable[[], None]) -> str:
    """Run ``feed`` and return the digest, turning internal errors into the public ones."""
    try:
        feed()
    except RecursionError:
        raise ValueError("ext_hash: data: nested too deeply to hash") from None
    except _UnsupportedError as exc:
        path = "data" + "".join(reversed(exc.trail))
        message = f"ext_hash: {path}: {exc.message}"
        if exc.cycle:
            raise ValueError(message) from None
        raise TypeError(message) from exc.__cause__
    return hasher.hexdigest()


def _feed(h: xxhash.xxh3_128, obj: object, active: set[int]) -> None:
    """Feed the record of ``obj`` (recursively) into ``h``.

    Built-in types are matched by exact type (``type(obj) is ...``), which keeps ``bool``
    apart from ``int`` and NumPy scalars such as ``numpy.float64`` apart from ``float``.
    """
    t = type(obj)
    if obj is None:
        h.update(_T_NONE)
    elif t is bool:
        h.update(_T_TRUE if obj else _T_FALSE)
    elif t is int:
        value = cast(int, obj)
        magnitude = abs(value)
        raw = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
        h.update(_T_INT_NEG if value < 0 else _T_INT_POS)
        h.update(_U64.pack(len(raw)))
        h.update(raw)
    elif t is float:
        h.update(_T_FLOAT)
        h.update(_F64.pack(cast(float, obj)))
    elif t is complex:
        number = cast(complex, obj)
        h.update(_T_COMPLEX)
        h.update(_C128.pack(number.real, number.imag))
    elif t is str:
        _feed_bytes(h, _T_STR, cast(str, obj).encode("utf-8", "surrogatepass"))
    elif t is bytes:
        _feed_bytes(h, _T_BYTES, cast(bytes, obj))
    elif t is bytearray:
        _feed_bytes(h, _T_BYTEARRAY, cast(bytearray, obj))
    elif t is memoryview:
        _feed_memoryview(h, cast(memoryview, obj))
    elif t is np.ndarray or t is np.memmap:
        _feed_array(h, _T_ARRAY, cast(_Array, obj))
    elif isinstance(obj, np.generic):
        _feed_array(h, _T_NP_SCALAR, np.asarray(cast(object, obj)))  # 0-d, same dtype
    elif isinstance(obj, pathlib.PurePath):
        _feed_bytes(h, _T_PATH, obj.as_posix().encode("utf-8", "surrogatepass"))
    elif t is tuple or t is list or t in _DICT_TYPES or t is set or t is frozenset:
        key = id(obj)  # Only for cycle detection; never part of the digest.
        if key in active:
            raise _UnsupportedError("container contains itself", cycle=True)
        active.add(key)
        try:
            if t is tuple or t is list:
                _feed_sequence(h, _T_TUPLE if t is tuple else _T_LIST, cast(_Seq, obj), active)
            elif t in _DICT_TYPES:
                _feed_dict(h, cast("dict[object, object]", obj), active)
            else:
                _feed_set(h, _T_SET if t is set else _T_FROZENSET, cast(_Set, obj), active)
        finally:
            active.discard(key)
    else:
        key = id(obj)  # Only for cycle detection; never part of the digest.
        if key in active:
            raise _UnsupportedError("object contains itself", cycle=True)
        active.add(key)
        try:
            _feed_other(h, obj, t, active)
        finally:
            active.discard(key)


def _feed_other(h: xxhash.xxh3_128, obj: object, t: type, active: set[int]) -> None:
    """Feed the record of a value that is not one of the built-in types matched by ``_feed``.

    The order of the checks matters: subclasses of built-in types (an ``IntEnum`` member, a
    namedtuple) are matched by what they are before the generic pickle reduction.
    """
    if obj is Ellipsis:
        h.update(_T_ELLIPSIS)
    elif obj is NotImplemented:
        h.update(_T_NOT_IMPLEMENTED)
    elif isinstance(obj, np.ndarray):
        _feed_array_subclass(h, cast(_Array, obj), active)
    elif isinstance(obj, enum.Enum):
        h.update(_T_ENUM)
        _feed_class(h, t)
        _feed_child(h, obj.name, active, ".name")
        _feed_child(h, obj.value, active, ".value")
    elif (names := _namedtuple_fields(t)) is not None:
        items = cast("tuple[object, ...]", obj)
        h.update(_T_NAMEDTUPLE)
        _feed_class(h, t)
        h.update(_U64.pack(len(items)))
        for name, item in zip(names, items, strict=False):
            _feed_child(h, name, active, f".{name}")
            _feed_child(h, item, active, f".{name}")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.fields(obj)
        h.update(_T_DATACLASS)
        _feed_class(h, t)
        h.update(_U64.pack(len(fields)))
        for field in fields:
            _feed_child(h, field.name, active, f".{field.name}")
            _feed_child(h, getattr(obj, field.name), active, f".{field.name}")
    elif t is range:
        span = cast(range, obj)
        h.update(_T_RANGE)
        _feed(h, (span.start, span.stop, span.step), active)
    elif t is slice:
        cut = cast("slice[Any, Any, Any]", obj)
        h.update(_T_SLICE)
        _feed_child(h, (cut.start, cut.stop, cut.step), active, "<slice>")
    elif t is datetime.datetime:
        moment = cast(datetime.datetime, obj)
        h.update(_T_DATETIME)
        fields_dt = (moment.year, moment.month, moment.day, moment.hour, moment.minute)
        _feed(h, (*fields_dt, moment.second, moment.microsecond, moment.fold), active)
        _feed_child(h, moment.tzinfo, active, ".tzinfo")
    elif t is datetime.date:
        day = cast(datetime.date, obj)
        h.update(_T_DATE)
        _feed(h, (day.year, day.month, day.day), active)
    elif t is datetime.time:
        clock = cast(datetime.time, obj)
        h.update(_T_TIME)
        _feed(h, (clock.hour, clock.minute, clock.second, clock.microsecond, clock.fold), active)
        _feed_child(h, clock.tzinfo, active, ".tzinfo")
    elif t is datetime.timedelta:
        delta = cast(datetime.timedelta, obj)
        h.update(_T_TIMEDELTA)
        _feed(h, (delta.days, delta.seconds, delta.microseconds), active)
    elif t is decimal.Decimal:
        # The exact representation: Decimal('1.0') and Decimal('1.00') compute differently.
        sign, digits, exponent = cast(decimal.Decimal, obj).as_tuple()
        h.update(_T_DECIMAL)
        _feed(h, (sign, digits, exponent), active)
    elif t is fractions.Fraction:
        ratio = cast(fractions.Fraction, obj)
        h.update(_T_FRACTION)
        _feed(h, (ratio.numerator, ratio.denominator), active)
    elif issubclass(t, np.dtype):
        dtype = cast("np.dtype[Any]", obj)
        _feed_bytes(h, _T_DTYPE, dtype.str.encode("ascii"))
        if dtype.fields is not None or dtype.subdtype is not None:
            _feed(h, dtype.descr, active)  # field names, their dtypes and shapes
    elif isinstance(obj, type):
        _feed_class(h, obj)
    elif t is types.FunctionType:
        _feed_function(h, cast(types.FunctionType, obj), active)
    elif t is types.CodeType:
        _feed_code(h, cast(types.CodeType, obj), active)
    elif t in _BY_NAME and _is_global(obj):
        h.update(_T_BUILTIN)
        _feed_qualified_name(h, obj)
    elif _is_sparse(type(obj)):
        _feed_sparse(h, obj)
    else:
        array = _torch_to_numpy(obj)
        if array is not None:
            _feed_array(h, _T_ARRAY, array)
        else:
            _feed_reduced(h, obj, type(obj), active)


def _namedtuple_fields(t: type) -> tuple[str, ...] | None:
    """The field names of a namedtuple class, or ``None`` for any other class."""
    fields: object = getattr(t, "_fields", None)
    if not issubclass(t, tuple) or type(fields) is not tuple:
        return None
    return cast("tuple[str, ...]", fields)


def _feed_child(h: xxhash.xxh3_128, value: object, active: set[int], step: str) -> None:
    """Feed ``value``, adding ``step`` to the path of an error raised below it."""
    try:
        _feed(h, value, active)
    except _UnsupportedError as exc:
        exc.trail.append(step)
        raise


def _feed_array_subclass(h: xxhash.xxh3_128, arr: _Array, active: set[int]) -> None:
    """Feed ``np.matrix``, a masked array or another ndarray subclass: values and extras."""
    plain = arr.view(np.ndarray)  # the same memory, without the subclass
    if isinstance(arr, np.matrix):
        h.update(_T_MATRIX)
        _feed_array(h, _T_ARRAY, plain)
    elif isinstance(arr, np.ma.MaskedArray):
        masked: np.ma.MaskedArray[Any, Any] = arr
        h.update(_T_MASKED)
        _feed_array(h, _T_ARRAY, plain)  # every value, the masked ones too
        _feed_array(h, _T_ARRAY, np.ma.getmaskarray(masked))
        _feed_child(h, masked.fill_value, active, ".fill_value")  # what filled() gives
    else:
        h.update(_T_ARRAY_SUBCLASS)
        _feed_class(h, type(arr))
        _feed_array(h, _T_ARRAY, plain)
        _feed_child(h, getattr(arr, "__dict__", {}), active, ".__dict__")


def _resolve(module: str, qualname: str) -> object:
    """The object named ``qualname`` in the already imported ``module``, or ``None``."""
    found: object = sys.modules.get(module)
    for part in qualname.split("."):
        if found is None:
            return None
        found = getattr(found, part, None)
    return found


def _is_global(obj: object) -> bool:
    """Tells whether ``obj`` is found again by its module and qualified name."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", getattr(obj, "__name__", None))
    if module is None and isinstance(obj, np.ufunc):
        module = "numpy"
    return (
        isinstance(module, str) and isinstance(qualname, str) and _resolve(module, qualname) is obj
    )


def _feed_qualified_name(h: xxhash.xxh3_128, obj: object) -> None:
    module = cast(str, getattr(obj, "__module__", None) or "numpy")
    qualname = cast(str, getattr(obj, "__qualname__", getattr(obj, "__name__", "")))
    _feed_bytes(h, _T_STR, module.encode("utf-8", "surrogatepass"))
    _feed_bytes(h, _T_STR, qualname.encode("utf-8", "surrogatepass"))


def _feed_class(h: xxhash.xxh3_128, cls: type) -> None:
    """Feed a class by its module and qualified name, which must find it again."""
    if not _is_global(cls):
        raise _UnsupportedError(
            f"unsupported class {_type_name(cls)}: it is not found by its qualified name "
            "(defined in a function, or rebound), so its name does not identify it"
        )
    h.update(_T_CLASS)
    _feed_qualified_name(h, cls)


def _feed_function(h: xxhash.xxh3_128, function: types.FunctionType, active: set[int]) -> None:
    """Feed a function: by name if its name finds it, else by its code and closed-over values."""
    if _is_global(function):
        h.update(_T_FUNCTION)
        _feed_qualified_name(h, function)
        return
    h.update(_T_LOCAL_FUNCTION)
    _feed_qualified_name(h, function)
    _feed_function_body(h, function, active)


def _feed_function_body(h: xxhash.xxh3_128, function: types.FunctionType, active: set[int]) -> None:
    """Feed what makes a function compute what it does: code, defaults, closed-over values.

    The values of the globals the function uses are not part of it.
    """
    _feed_child(h, function.__code__, active, ".__code__")
    _feed_child(h, function.__defaults__, active, ".__defaults__")
    _feed_child(h, function.__kwdefaults__, active, ".__kwdefaults__")
    cells = function.__closure__ or ()
    h.update(_U64.pack(len(cells)))
    for name, cell in zip(function.__code__.co_freevars, cells, strict=False):
        try:
            value: object = cell.cell_contents
        except ValueError:  # a name assigned later in the enclosing function
            h.update(_T_EMPTY_CELL)
            continue
        if value is function:  # a local function that calls itself
            h.update(_T_SELF)
        else:
            _feed_child(h, value, active, f".<closure {name}>")


def _feed_code(h: xxhash.xxh3_128, code: types.CodeType, active: set[int]) -> None:
    """Feed a code object: bytecode, constants (nested code too) and names; not line numbers."""
    h.update(_T_CODE)
    for number in (
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
    ):
        h.update(_U64.pack(number))
    _feed_bytes(h, _T_BYTES, code.co_code)
    _feed(h, code.co_consts, active)
    _feed(h, (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars), active)
    _feed(h, code.co_name, active)


def _feed_reduced(h: xxhash.xxh3_128, obj: object, t: type, active: set[int]) -> None:
    """Feed an object through its pickle reduction (``__reduce_ex__(4)``), walked as values."""
    try:
        reduced: object = obj.__reduce_ex__(4)
    except Exception as exc:  # generators, open files, locks: pickle refuses them too
        raise _UnsupportedError(
            f"unsupported type {_type_name(t)}: it has no value to hash "
            f"({type(exc).__name__}: {exc}); accepted: {_ACCEPTED}"
        ) from None
    if isinstance(reduced, str):  # a global: found by name, as pickle would
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str) or _resolve(module, reduced) is not obj:
            raise _UnsupportedError(f"unsupported type {_type_name(t)}: {reduced!r} not found")
        h.update(_T_GLOBAL)
        _feed(h, (module, reduced), active)
        return
    if type(reduced) is not tuple or not 2 <= len(cast("tuple[object, ...]", reduced)) <= 6:
        raise _UnsupportedError(f"unsupported type {_type_name(t)}: invalid __reduce_ex__ result")
    parts = list(cast("tuple[object, ...]", reduced)) + [None] * 4
    function, arguments, state, list_items, dict_items, setter = parts[:6]
    h.update(_T_REDUCE)
    _feed_child(h, function, active, ".<reduce>")
    _feed_child(h, arguments, active, ".<args>")
    _feed_child(h, state, active, ".<state>")
    items = None if list_items is None else list(cast("Any", list_items))
    _feed_child(h, items, active, ".<items>")
    entries = None if dict_items is None else dict(cast("Any", dict_items))
    _feed_child(h, entries, active, ".<items>")
    _feed_child(h, setter, active, ".<setter>")


def _is_sparse(t: type) -> bool:
    """Tells whether ``t`` is a scipy.sparse class, importing scipy only if it might be one."""
    if not t.__module__.startswith("scipy.sparse"):
        return False
    import scipy.sparse  # scipy is optional: imported only when the input is sparse

    sparray: type | None = getattr(scipy.sparse, "sparray", None)
    bases = (scipy.sparse.spmatrix,) if sparray is None else (scipy.sparse.spmatrix, sparray)
    return issubclass(t, bases)


def _feed_sparse(h: xxhash.xxh3_128, matrix: Any) -> None:
    """Feed a scipy.sparse matrix or array in a canonical form of its format.

    The class (format, and matrix or array) is part of the key; the entries are canonical:
    indices sorted, duplicates summed, index arrays as int64. Explicit zeros are entries.
    """
    fmt: str = matrix.format
    h.update(_T_SPARSE)
    _feed_class(h, cast("type[object]", type(matrix)))
    dtype: np.dtype[Any] = matrix.dtype
    _feed_bytes(h, _T_BYTES, dtype.str.encode("ascii"))
    shape: tuple[int, ...] = tuple(matrix.shape)
    h.update(_U64.pack(len(shape)))
    for dim in shape:
        h.update(_U64.pack(dim))
    if fmt == "coo":
        coords: tuple[_Array, ...] = tuple(
            getattr(matrix, "coords", None) or (matrix.row, matrix.col)
        )
        coords, data = _canonical_coo(coords, matrix.data)
        for index in coords:
            _feed_array(h, _T_ARRAY, index.astype(np.int64, copy=False))
        _feed_array(h, _T_ARRAY, data)
        return
    if fmt not in ("csr", "csc", "bsr"):  # dia, dok, lil: their entries, as CSR
        matrix = matrix.tocsr()
    if fmt == "bsr":
        _feed(h, tuple(int(side) for side in matrix.blocksize), set())
    indptr, indices = cast(_Array, matrix.indptr), cast(_Array, matrix.indices)
    if not _compressed_is_canonical(indptr, indices):
        matrix = matrix.copy()
        # scipy caches these flags; the copy must not trust stale ones
        matrix.has_sorted_indices = False
        matrix.has_canonical_format = False
        matrix.sum_duplicates()
        indptr, indices = matrix.indptr, matrix.indices
    _feed_array(h, _T_ARRAY, indptr.astype(np.int64, copy=False))
    _feed_array(h, _T_ARRAY, indices.astype(np.int64, copy=False))
    _feed_array(h, _T_ARRAY, cast(_Array, matrix.data))


def _compressed_is_canonical(indptr: _Array, indices: _Array) -> bool:
    """Tells whether the indices increase strictly within each compressed row (or column)."""
    if indices.size < 2:
        return True
    increasing = np.diff(indices) > 0
    starts = indptr[1:-1]
    starts = starts[(starts > 0) & (starts < indices.size)]
    increasing[starts - 1] = True  # a new row may start anywhere
    return bool(increasing.all())


def _canonical_coo(coords: tuple[_Array, ...], data: _Array) -> tuple[tuple[_Array, ...], _Array]:
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


def _feed_sequence(h: xxhash.xxh3_128, tag: bytes, seq: _Seq, active: set[int]) -> None:
    """Feed a tuple or list record: tag, length, then each item's record in order."""
    h.update(tag)
    h.update(_U64.pack(len(seq)))
    for index, item in enumerate(seq):
        try:
            _feed(h, item, active)
        except _UnsupportedError as exc:
            exc.trail.append(f"[{index}]")
            raise


def _feed_dict(h: xxhash.xxh3_128, mapping: dict[object, object], active: set[int]) -> None:
    """Feed a dict record; each entry is hashed separately so insertion order is ignored."""
    digests: list[bytes] = []
    for key, value in mapping.items():
        entry = xxhash.xxh3_128()  # key record then value record: one digest per entry
        try:
            _feed(entry, key, active)
        except _UnsupportedError as exc:
            exc.trail.append(f"<key {_short_repr(key)}>")
            raise
        try:
            _feed(entry, value, active)
        except _UnsupportedError as exc:
            exc.trail.append(f"[{_short_repr(key)}]")
            raise
        digests.append(entry.digest())
    _feed_digests(h, _T_DICT, digests)


def _feed_set(h: xxhash.xxh3_128, tag: bytes, members: _Set, active: set[int]) -> None:
    """Feed a set or frozenset record from the sorted digests of its members."""
    digests: list[bytes] = []
    for item in members:
        member = xxhash.xxh3_128()
        try:
            _feed(member, item, active)
        except _UnsupportedError as exc:
            exc.trail.append(f"{{{_short_repr(item)}}}")
            raise
        digests.append(member.digest())
    _feed_digests(h, tag, digests)


def _feed_digests(h: xxhash.xxh3_128, tag: bytes, digests: list[bytes]) -> None:
    """Feed an unordered container record: its tag, size and its sorted item digests."""
    digests.sort()
    h.update(tag)
    h.update(_U64.pack(len(digests)))
    h.update(b"".join(digests))


def _feed_bytes(h: xxhash.xxh3_128, tag: bytes, payload: bytes | bytearray) -> None:
    """Feed a tagged, length-prefixed byte string record."""
    h.update(tag)
    h.update(_U64.pack(len(payload)))
    h.update(payload)


def _feed_memoryview(h: xxhash.xxh3_128, view: memoryview) -> None:
    """Feed a memoryview: its format, shape and raw bytes in C order."""
    _feed_bytes(h, _T_MEMORYVIEW, view.format.encode("ascii"))
    shape = view.shape or ()
    h.update(_U64.pack(len(shape)))
    for dim in shape:
        h.update(_U64.pack(dim))
    h.update(_U64.pack(view.nbytes))
    if view.c_contiguous:
        h.update(view)
    else:
        h.update(view.tobytes())


def _feed_array(h: xxhash.xxh3_128, tag: bytes, arr: _Array) -> None:
    """Feed an array record: tag, dtype string, shape, then every value byte in C order."""
    dtype = arr.dtype
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
        what = {
            "O": "object arrays hold references, not values",
            "V": "structured and void dtypes are not supported",
            "T": "variable-width StringDType arrays are not supported; use a 'U' dtype",
        }.get(dtype.kind, "only bool, integer, float, complex, datetime and S/U strings")
        raise _UnsupportedError(f"unsupported NumPy dtype {dtype!r} ({what})")
    if (dtype.char == "g" and dtype.itemsize != 8) or (dtype.char == "G" and dtype.itemsize != 16):
        raise _UnsupportedError(
            f"unsupported NumPy dtype {dtype!r}: long double has a platform-specific, "
            "padded layout; cast to float64/complex128 first"
        )
    _feed_bytes(h, tag, dtype.str.encode("ascii"))
    h.update(_U64.pack(arr.ndim))
    for dim in arr.shape:
        h.update(_U64.pack(dim))
    h.update(_U64.pack(arr.nbytes))
    _feed_array_data(h, arr)


def _feed_array_data(h: xxhash.xxh3_128, arr: _Array) -> None:
    """Feed the bytes of ``arr`` in C order, copying at most about ``_CHUNK_BYTES`` at once."""
    if arr.nbytes == 0:
        return
    if arr.flags.c_contiguous:
        h.update(_byte_view(arr))
        return
    chunk_bytes = _CHUNK_BYTES
    row_bytes = arr.itemsize * math.prod(arr.shape[1:])
    if row_bytes > chunk_bytes and arr.ndim > 1:
        for row in arr:
            _feed_array_data(h, row)
        return
    rows_per_chunk = max(1, chunk_bytes // row_bytes)
    for start in range(0, arr.shape[0], rows_per_chunk):
        h.update(_byte_view(np.ascontiguousarray(arr[start : start + rows_per_chunk])))


def _byte_view(arr: _Array) -> memoryview:
    """Return a flat ``uint8`` memoryview of the C-contiguous ``arr``, without copying.

    ``reshape(-1)`` of a C-contiguous array is always a view, and viewing it as ``uint8``
    gives a buffer whose format any consumer accepts (NumPy refuses to export e.g.
    datetime64 buffers with their own format).
    """
    return arr.reshape(-1).view(np.uint8).data


def _torch_to_numpy(obj: object) -> _Array | None:
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
        error = _UnsupportedError(
            f"torch.Tensor cannot be converted to NumPy ({type(exc).__name__}: {exc})"
        )
        raise error from exc
    if not isinstance(array, np.ndarray):
        raise _UnsupportedError("torch.Tensor.numpy() did not return a numpy.ndarray")
    return cast(_Array, array)


def _type_name(t: type) -> str:
    """Return a readable name of ``t``: ``function``, ``numpy.ma.MaskedArray``, ..."""
    if t.__module__ == "builtins":
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


def _short_repr(obj: object, limit: int = 40) -> str:
    """Return ``repr(obj)`` cut to ``limit`` characters, for error paths."""
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{_type_name(type(obj))}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
