"""Exact, deterministic content hashing of nested Python/NumPy data, for cache keys.

:func:`ext_hash` walks a tree of values and feeds one streaming ``xxh3_128`` hasher with a
prefix-free sequence of records (a one-byte tag for the kind, length-prefixed payloads), so two
different trees never give the same byte stream, and the digest depends only on the values, never
on the process. Which values are accepted and how each is keyed is described in the
documentation ("How each kind of value is hashed"); anything else raises :class:`TypeError`
naming the type and the path of the node, and a container that contains itself
:class:`ValueError`. :func:`function_hash` keys a function by what it computes.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import pathlib
import types
from collections.abc import Callable
from typing import Any, Final, TypeAlias, cast

import numpy as np
import xxhash

from corelay.io._hash_records import (
    C128,
    F64,
    T_ARRAY,
    T_ARRAY_SUBCLASS,
    T_BUILTIN,
    T_BYTEARRAY,
    T_BYTES,
    T_CODE,
    T_COMPLEX,
    T_DATACLASS,
    T_DATE,
    T_DATETIME,
    T_DECIMAL,
    T_DICT,
    T_DTYPE,
    T_ELLIPSIS,
    T_EMPTY_CELL,
    T_ENUM,
    T_FALSE,
    T_FLOAT,
    T_FRACTION,
    T_FROZENSET,
    T_FUNCTION,
    T_GLOBAL,
    T_INT_NEG,
    T_INT_POS,
    T_LIST,
    T_LOCAL_FUNCTION,
    T_MASKED,
    T_MATRIX,
    T_NAMEDTUPLE,
    T_NONE,
    T_NOT_IMPLEMENTED,
    T_NP_SCALAR,
    T_PATH,
    T_RANGE,
    T_REDUCE,
    T_SELF,
    T_SET,
    T_SLICE,
    T_STR,
    T_TIME,
    T_TIMEDELTA,
    T_TRUE,
    T_TUPLE,
    U64,
    UnsupportedError,
    feed_array,
    feed_bytes,
    feed_class,
    feed_digests,
    feed_memoryview,
    feed_qualified_name,
    feed_sparse,
    is_global,
    is_sparse,
    namedtuple_fields,
    resolve,
    short_repr,
    torch_to_numpy,
    type_name,
)

__all__ = ["ext_hash", "function_hash"]


# Bump when the encoding changes, so that old cache keys cannot be confused with new ones.
_FORMAT_PREFIX: Final = b"corelay.ext_hash.v1\x00"

_ACCEPTED: Final = (
    "None, bool, int, float, complex, str, bytes, bytearray, memoryview, tuple, list, "
    "dict, OrderedDict, defaultdict, set, frozenset, pathlib.PurePath, numpy.ndarray, "
    "numpy.memmap, numpy scalars, torch.Tensor (if torch is already imported), "
    "and any object with a value that pickle could reduce"
)


_DICT_TYPES: Final = (dict, collections.OrderedDict, collections.defaultdict)
# Callables of C code, keyed by their module and name when that finds them again.
_BY_NAME: Final[tuple[type, ...]] = (types.BuiltinFunctionType, np.ufunc)

_Array: TypeAlias = "np.ndarray[Any, np.dtype[Any]]"
_Seq: TypeAlias = "tuple[object, ...] | list[object]"
_Set: TypeAlias = "set[object] | frozenset[object]"


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
    hasher.update(T_LOCAL_FUNCTION)
    return _run(hasher, lambda: _feed_function_body(hasher, function, set()))


def _run(hasher: xxhash.xxh3_128, feed: Callable[[], None]) -> str:
    """Run ``feed`` and return the digest, turning internal errors into the public ones."""
    try:
        feed()
    except RecursionError:
        raise ValueError("ext_hash: data: nested too deeply to hash") from None
    except UnsupportedError as exc:
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
        h.update(T_NONE)
    elif t is bool:
        h.update(T_TRUE if obj else T_FALSE)
    elif t is int:
        value = cast(int, obj)
        magnitude = abs(value)
        raw = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
        h.update(T_INT_NEG if value < 0 else T_INT_POS)
        h.update(U64.pack(len(raw)))
        h.update(raw)
    elif t is float:
        h.update(T_FLOAT)
        h.update(F64.pack(cast(float, obj)))
    elif t is complex:
        number = cast(complex, obj)
        h.update(T_COMPLEX)
        h.update(C128.pack(number.real, number.imag))
    elif t is str:
        feed_bytes(h, T_STR, cast(str, obj).encode("utf-8", "surrogatepass"))
    elif t is bytes:
        feed_bytes(h, T_BYTES, cast(bytes, obj))
    elif t is bytearray:
        feed_bytes(h, T_BYTEARRAY, cast(bytearray, obj))
    elif t is memoryview:
        feed_memoryview(h, cast(memoryview, obj))
    elif t is np.ndarray or t is np.memmap:
        feed_array(h, T_ARRAY, cast(_Array, obj))
    elif isinstance(obj, np.generic):
        feed_array(h, T_NP_SCALAR, np.asarray(cast(object, obj)))  # 0-d, same dtype
    elif isinstance(obj, pathlib.PurePath):
        feed_bytes(h, T_PATH, obj.as_posix().encode("utf-8", "surrogatepass"))
    elif t is tuple or t is list or t in _DICT_TYPES or t is set or t is frozenset:
        key = id(obj)  # Only for cycle detection; never part of the digest.
        if key in active:
            raise UnsupportedError("container contains itself", cycle=True)
        active.add(key)
        try:
            if t is tuple or t is list:
                _feed_sequence(h, T_TUPLE if t is tuple else T_LIST, cast(_Seq, obj), active)
            elif t in _DICT_TYPES:
                _feed_dict(h, cast("dict[object, object]", obj), active)
            else:
                _feed_set(h, T_SET if t is set else T_FROZENSET, cast(_Set, obj), active)
        finally:
            active.discard(key)
    else:
        key = id(obj)  # Only for cycle detection; never part of the digest.
        if key in active:
            raise UnsupportedError("object contains itself", cycle=True)
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
        h.update(T_ELLIPSIS)
    elif obj is NotImplemented:
        h.update(T_NOT_IMPLEMENTED)
    elif isinstance(obj, np.ndarray):
        _feed_array_subclass(h, cast(_Array, obj), active)
    elif isinstance(obj, enum.Enum):
        h.update(T_ENUM)
        feed_class(h, t)
        _feed_child(h, obj.name, active, ".name")
        _feed_child(h, obj.value, active, ".value")
    elif (names := namedtuple_fields(t)) is not None:
        items = cast("tuple[object, ...]", obj)
        h.update(T_NAMEDTUPLE)
        feed_class(h, t)
        h.update(U64.pack(len(items)))
        for name, item in zip(names, items, strict=False):
            _feed_child(h, name, active, f".{name}")
            _feed_child(h, item, active, f".{name}")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.fields(obj)
        h.update(T_DATACLASS)
        feed_class(h, t)
        h.update(U64.pack(len(fields)))
        for field in fields:
            _feed_child(h, field.name, active, f".{field.name}")
            _feed_child(h, getattr(obj, field.name), active, f".{field.name}")
    elif t is range:
        span = cast(range, obj)
        h.update(T_RANGE)
        _feed(h, (span.start, span.stop, span.step), active)
    elif t is slice:
        cut = cast("slice[Any, Any, Any]", obj)
        h.update(T_SLICE)
        _feed_child(h, (cut.start, cut.stop, cut.step), active, "<slice>")
    elif t is datetime.datetime:
        moment = cast(datetime.datetime, obj)
        h.update(T_DATETIME)
        fields_dt = (moment.year, moment.month, moment.day, moment.hour, moment.minute)
        _feed(h, (*fields_dt, moment.second, moment.microsecond, moment.fold), active)
        _feed_child(h, moment.tzinfo, active, ".tzinfo")
    elif t is datetime.date:
        day = cast(datetime.date, obj)
        h.update(T_DATE)
        _feed(h, (day.year, day.month, day.day), active)
    elif t is datetime.time:
        clock = cast(datetime.time, obj)
        h.update(T_TIME)
        _feed(h, (clock.hour, clock.minute, clock.second, clock.microsecond, clock.fold), active)
        _feed_child(h, clock.tzinfo, active, ".tzinfo")
    elif t is datetime.timedelta:
        delta = cast(datetime.timedelta, obj)
        h.update(T_TIMEDELTA)
        _feed(h, (delta.days, delta.seconds, delta.microseconds), active)
    elif t is decimal.Decimal:
        # The exact representation: Decimal('1.0') and Decimal('1.00') compute differently.
        sign, digits, exponent = cast(decimal.Decimal, obj).as_tuple()
        h.update(T_DECIMAL)
        _feed(h, (sign, digits, exponent), active)
    elif t is fractions.Fraction:
        ratio = cast(fractions.Fraction, obj)
        h.update(T_FRACTION)
        _feed(h, (ratio.numerator, ratio.denominator), active)
    elif issubclass(t, np.dtype):
        dtype = cast("np.dtype[Any]", obj)
        feed_bytes(h, T_DTYPE, dtype.str.encode("ascii"))
        if dtype.fields is not None or dtype.subdtype is not None:
            _feed(h, dtype.descr, active)  # field names, their dtypes and shapes
    elif isinstance(obj, type):
        feed_class(h, obj)
    elif t is types.FunctionType:
        _feed_function(h, cast(types.FunctionType, obj), active)
    elif t is types.CodeType:
        _feed_code(h, cast(types.CodeType, obj), active)
    elif t in _BY_NAME and is_global(obj):
        h.update(T_BUILTIN)
        feed_qualified_name(h, obj)
    elif is_sparse(type(obj)):
        feed_sparse(h, obj, lambda value: _feed(h, value, set()))
    else:
        array = torch_to_numpy(obj)
        if array is not None:
            feed_array(h, T_ARRAY, array)
        else:
            _feed_reduced(h, obj, type(obj), active)


def _feed_child(h: xxhash.xxh3_128, value: object, active: set[int], step: str) -> None:
    """Feed ``value``, adding ``step`` to the path of an error raised below it."""
    try:
        _feed(h, value, active)
    except UnsupportedError as exc:
        exc.trail.append(step)
        raise


def _feed_array_subclass(h: xxhash.xxh3_128, arr: _Array, active: set[int]) -> None:
    """Feed ``np.matrix``, a masked array or another ndarray subclass: values and extras."""
    plain = arr.view(np.ndarray)  # the same memory, without the subclass
    if isinstance(arr, np.matrix):
        h.update(T_MATRIX)
        feed_array(h, T_ARRAY, plain)
    elif isinstance(arr, np.ma.MaskedArray):
        masked: np.ma.MaskedArray[Any, Any] = arr
        h.update(T_MASKED)
        feed_array(h, T_ARRAY, plain)  # every value, the masked ones too
        feed_array(h, T_ARRAY, np.ma.getmaskarray(masked))
        _feed_child(h, masked.fill_value, active, ".fill_value")  # what filled() gives
    else:
        h.update(T_ARRAY_SUBCLASS)
        feed_class(h, type(arr))
        feed_array(h, T_ARRAY, plain)
        _feed_child(h, getattr(arr, "__dict__", {}), active, ".__dict__")


def _feed_function(h: xxhash.xxh3_128, function: types.FunctionType, active: set[int]) -> None:
    """Feed a function: by name if its name finds it, else by its code and closed-over values."""
    if is_global(function):
        h.update(T_FUNCTION)
        feed_qualified_name(h, function)
        return
    h.update(T_LOCAL_FUNCTION)
    feed_qualified_name(h, function)
    _feed_function_body(h, function, active)


def _feed_function_body(h: xxhash.xxh3_128, function: types.FunctionType, active: set[int]) -> None:
    """Feed what makes a function compute what it does: code, defaults, closed-over values.

    The values of the globals the function uses are not part of it.
    """
    _feed_child(h, function.__code__, active, ".__code__")
    _feed_child(h, function.__defaults__, active, ".__defaults__")
    _feed_child(h, function.__kwdefaults__, active, ".__kwdefaults__")
    cells = function.__closure__ or ()
    h.update(U64.pack(len(cells)))
    for name, cell in zip(function.__code__.co_freevars, cells, strict=False):
        try:
            value: object = cell.cell_contents
        except ValueError:  # a name assigned later in the enclosing function
            h.update(T_EMPTY_CELL)
            continue
        if value is function:  # a local function that calls itself
            h.update(T_SELF)
        else:
            _feed_child(h, value, active, f".<closure {name}>")


def _feed_code(h: xxhash.xxh3_128, code: types.CodeType, active: set[int]) -> None:
    """Feed a code object: bytecode, constants (nested code too) and names; not line numbers."""
    h.update(T_CODE)
    for number in (
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
    ):
        h.update(U64.pack(number))
    feed_bytes(h, T_BYTES, code.co_code)
    _feed(h, code.co_consts, active)
    _feed(h, (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars), active)
    _feed(h, code.co_name, active)


def _feed_reduced(h: xxhash.xxh3_128, obj: object, t: type, active: set[int]) -> None:
    """Feed an object through its pickle reduction (``__reduce_ex__(4)``), walked as values."""
    try:
        reduced: object = obj.__reduce_ex__(4)
    except Exception as exc:  # generators, open files, locks: pickle refuses them too
        raise UnsupportedError(
            f"unsupported type {type_name(t)}: it has no value to hash "
            f"({type(exc).__name__}: {exc}); accepted: {_ACCEPTED}"
        ) from None
    if isinstance(reduced, str):  # a global: found by name, as pickle would
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str) or resolve(module, reduced) is not obj:
            raise UnsupportedError(f"unsupported type {type_name(t)}: {reduced!r} not found")
        h.update(T_GLOBAL)
        _feed(h, (module, reduced), active)
        return
    if type(reduced) is not tuple or not 2 <= len(cast("tuple[object, ...]", reduced)) <= 6:
        raise UnsupportedError(f"unsupported type {type_name(t)}: invalid __reduce_ex__ result")
    parts = list(cast("tuple[object, ...]", reduced)) + [None] * 4
    function, arguments, state, list_items, dict_items, setter = parts[:6]
    h.update(T_REDUCE)
    _feed_child(h, function, active, ".<reduce>")
    _feed_child(h, arguments, active, ".<args>")
    _feed_child(h, state, active, ".<state>")
    items = None if list_items is None else list(cast("Any", list_items))
    _feed_child(h, items, active, ".<items>")
    entries = None if dict_items is None else dict(cast("Any", dict_items))
    _feed_child(h, entries, active, ".<items>")
    _feed_child(h, setter, active, ".<setter>")


def _feed_sequence(h: xxhash.xxh3_128, tag: bytes, seq: _Seq, active: set[int]) -> None:
    """Feed a tuple or list record: tag, length, then each item's record in order."""
    h.update(tag)
    h.update(U64.pack(len(seq)))
    for index, item in enumerate(seq):
        _feed_child(h, item, active, f"[{index}]")


def _digest(value: object, active: set[int], step: str) -> xxhash.xxh3_128:
    """A fresh hash fed ``value``'s record, as :func:`_feed_child` feeds it."""
    digest = xxhash.xxh3_128()
    _feed_child(digest, value, active, step)
    return digest


def _feed_dict(h: xxhash.xxh3_128, mapping: dict[object, object], active: set[int]) -> None:
    """Feed a dict record; each entry is hashed separately so insertion order is ignored."""
    digests: list[bytes] = []
    for key, value in mapping.items():
        # Key record then value record: one digest per entry.
        entry = _digest(key, active, f"<key {short_repr(key)}>")
        _feed_child(entry, value, active, f"[{short_repr(key)}]")
        digests.append(entry.digest())
    feed_digests(h, T_DICT, digests)


def _feed_set(h: xxhash.xxh3_128, tag: bytes, members: _Set, active: set[int]) -> None:
    """Feed a set or frozenset record from the sorted digests of its members."""
    digests = [_digest(item, active, f"{{{short_repr(item)}}}").digest() for item in members]
    feed_digests(h, tag, digests)
