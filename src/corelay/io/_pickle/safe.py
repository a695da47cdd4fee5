"""What a record may hold: the globals it may name, the restricted unpickler and pickler."""

import math
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from typing import IO, Any, Final, cast

import numpy as np

#: The pickle protocol records are written with (readable by every Python corelay supports).
PROTOCOL: Final = 5


def _latin1_bytes(text: str, encoding: str) -> bytes:
    # Protocols 0 to 2 write bytes as ``_codecs.encode(text, 'latin1')``; any other codec is
    # refused rather than looked up (a lookup may import a module).
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise RefusedGlobalError(f"refused _codecs.encode with codec {encoding!r}")
    return text.encode("latin1")


# NumPy's own reconstruction trusts its pickles: a damaged or crafted dtype or array state
# crashes the process. So loading builds inert descriptions of dtypes, arrays and scalars
# (what the pickle asks NumPy to make), and :func:`read_form` checks each one before it makes
# the real object from it, with public NumPy calls only.


class DTypeSpec:
    """What ``numpy.dtype(name, align, copy)`` and its state asked for."""

    def __init__(self, name: object, align: object = False, copy: object = False) -> None:
        self.name = name
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class ArraySpec:
    """What ``_reconstruct`` and ``__setstate__`` (or ``_frombuffer``) asked for."""

    def __init__(self, *args: object) -> None:
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class ScalarSpec:
    """What ``numpy._core.multiarray.scalar(dtype, data)`` asked for."""

    def __init__(self, dtype: object, data: object = None) -> None:
        self.dtype = dtype
        self.data = data


class _NdarrayClass:
    """Stands for ``numpy.ndarray``, the class ``_reconstruct`` is given."""

    @staticmethod
    def __setstate__(state: object) -> None:
        # BUILD on a global would otherwise set attributes of this class, for every later load.
        raise CorruptRecordError("a record sets the state of a class")


class Function:
    """An allowed function, in an object that BUILD cannot alter (a function's could be)."""

    __slots__ = ("_function",)

    def __init__(self, function: Any) -> None:
        self._function = function

    def __call__(self, *args: object) -> object:
        return self._function(*args)

    def __setstate__(self, state: object) -> None:
        raise CorruptRecordError("a record sets the state of a function")


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> ArraySpec:
    spec = ArraySpec()
    spec.state = (1, shape, dtype, order == "F", buffer)
    return spec


_SIMPLE_KINDS = "biufcSU"


def _as_tuple(value: object) -> tuple[object, ...]:
    if isinstance(value, tuple):
        return cast("tuple[object, ...]", value)
    return ()


def _make_dtype(spec: object) -> np.dtype[Any]:
    if not isinstance(spec, DTypeSpec) or type(spec.name) is not str:
        raise CorruptRecordError("an array's dtype is not a dtype")
    try:  # NumPy parses some names as Python literals: "08" raises SyntaxError
        base = np.dtype(spec.name) if spec.name.isascii() and spec.name.isalnum() else None
    except (TypeError, ValueError, SyntaxError):
        base = None
    if base is not None and base.kind == "O":
        raise RefusedValueError(
            "refused an object array: its items may be any Python objects, and loading those "
            "safely is not possible (store arrays of a fixed dtype instead)"
        )
    if base is None or base.kind not in _SIMPLE_KINDS or base.fields is not None:
        raise CorruptRecordError(f"unsupported dtype {spec.name!r} in a record")
    if spec.state is None:
        return base
    state = _as_tuple(spec.state)
    if len(state) != 8 or state[2:5] != (None, None, None):
        raise CorruptRecordError(f"unsupported state of dtype {spec.name!r} in a record")
    byteorder, size = state[1], state[5]
    if byteorder not in ("<", ">", "|", "="):
        raise CorruptRecordError(f"byte order {byteorder!r} of a dtype in a record")
    if base.kind in "SU":
        if not isinstance(size, int) or size < 0 or (base.kind == "U" and size % 4):
            raise CorruptRecordError(f"item size {size!r} of a string dtype in a record")
        try:  # NumPy refuses item sizes beyond what an int32 holds
            base = np.dtype(f"{base.kind}{size // 4 if base.kind == 'U' else size}")
        except (TypeError, ValueError, OverflowError):
            raise CorruptRecordError(f"item size {size} of a string dtype in a record") from None
    return base.newbyteorder(byteorder) if byteorder in ("<", ">") else base


def make_array(spec: ArraySpec) -> np.ndarray[Any, Any]:
    state = _as_tuple(spec.state)
    if len(state) != 5:
        raise CorruptRecordError("an array in a record has no state")
    _, shape_state, dtype_spec, fortran, data = state
    dtype = _make_dtype(dtype_spec)
    shape = _as_tuple(shape_state)
    if type(shape_state) is not tuple or not all(type(n) is int and n >= 0 for n in shape):
        raise CorruptRecordError(f"array shape {shape_state!r} in a record")
    dims = cast("tuple[int, ...]", shape)
    mapped = isinstance(data, memoryview)
    if not (mapped or isinstance(data, bytes | bytearray | pickle.PickleBuffer)):
        raise CorruptRecordError("array data in a record are not bytes")
    buffer = memoryview(cast("bytes", data)).cast("B")
    count = math.prod(dims)
    if len(buffer) != count * dtype.itemsize:
        raise CorruptRecordError(
            f"array of shape {dims} and dtype {dtype} with {len(buffer)} bytes"
        )
    array = np.frombuffer(buffer, dtype=dtype, count=count)
    # From bytes (protocols 0 to 4), arrays read back writable; a memoryview is the file's
    # mapping (see .mapped), read-only on purpose.
    if not array.flags.writeable and not mapped:
        array = array.copy()
    try:  # an empty array may declare more or larger dimensions than NumPy has
        return array.reshape(dims, order="F" if fortran is True else "C")
    except (ValueError, OverflowError):
        raise CorruptRecordError(f"array shape {dims} in a record") from None


def make_scalar(spec: ScalarSpec) -> "np.generic[Any]":
    dtype = _make_dtype(spec.dtype)
    if not isinstance(spec.data, bytes) or len(spec.data) != dtype.itemsize:
        raise CorruptRecordError(f"a {dtype} scalar in a record has {spec.data!r} for data")
    if not dtype.itemsize:  # an empty np.bytes_ or np.str_: no buffer to read it from
        empty: np.generic[Any] = dtype.type()
        return empty
    scalar: np.generic[Any] = np.frombuffer(spec.data, dtype=dtype)[0]
    return scalar


#: The globals a record may reference, by (module, name): what NumPy arrays, dtypes and scalars,
#: ``complex`` and ``OrderedDict`` are pickled with (NumPy 1.x named the module ``numpy.core``;
#: protocols 0 to 2 name builtins ``__builtin__`` and write bytes with ``_codecs.encode``, here
#: restricted to latin-1). Nothing else is ever resolved, and the NumPy ones resolve to the
#: inert descriptions above.
ALLOWED_GLOBALS: Final[Mapping[tuple[str, str], object]] = {
    ("numpy", "ndarray"): _NdarrayClass,
    ("numpy", "dtype"): DTypeSpec,
    ("numpy._core.multiarray", "_reconstruct"): ArraySpec,
    ("numpy.core.multiarray", "_reconstruct"): ArraySpec,
    ("numpy._core.multiarray", "scalar"): ScalarSpec,
    ("numpy.core.multiarray", "scalar"): ScalarSpec,
    ("numpy._core.numeric", "_frombuffer"): Function(_frombuffer),
    ("numpy.core.numeric", "_frombuffer"): Function(_frombuffer),
    ("builtins", "complex"): complex,
    ("__builtin__", "complex"): complex,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): Function(_latin1_bytes),
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
}


class RefusedGlobalError(pickle.UnpicklingError):
    """A record references a global that stored trees never need; nothing of it was run."""


class CorruptRecordError(pickle.UnpicklingError):
    """The file holds something other than complete ``{'data': ..., 'key': ...}`` records."""


class RefusedValueError(pickle.UnpicklingError):
    """A record holds a value that cannot be loaded safely, such as a NumPy object array."""


class TreeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and imports nothing.

    Args:
        file: The binary file to read from, positioned at the start of a pickle.
        where: Where the pickle is, for error messages (file and byte offset).
        buffers: The out-of-band buffers of protocol 5, for a record loaded with its arrays
            mapped from the file (see :mod:`.mapped`); a record never refers to any itself.
    """

    def __init__(
        self, file: IO[bytes], where: str, buffers: list[memoryview] | None = None
    ) -> None:
        super().__init__(file, buffers=buffers)
        self._where = where

    def find_class(self, module_name: str, global_name: str, /) -> Any:
        """Returns the allowed global ``module_name.global_name``.

        Raises:
            RefusedGlobalError: The global is not in :data:`ALLOWED_GLOBALS`.
        """
        allowed = ALLOWED_GLOBALS.get((module_name, global_name))
        if allowed is None:
            raise RefusedGlobalError(
                f"refused to load global '{module_name}.{global_name}' ({self._where}): a "
                "stored tree needs only NumPy arrays and scalars, complex, OrderedDict and sets"
            )
        return allowed


class TreePickler(pickle.Pickler):
    """The pickler of records: protocol 5, arrays in band, copied only when they must be."""

    def reducer_override(self, obj: object) -> Any:
        """Reduces an array that protocol 5 cannot write from its own memory; else defers."""
        # Protocol 5 writes a contiguous, writable array from its memory. Any other array is
        # copied first: NumPy's fallback reduction reads back in native byte order (a '>i4'
        # array would come back '<i4'), and a read-only buffer would read back read-only.
        if type(obj) is np.ndarray:
            flags = obj.flags
            if not (flags.writeable and (flags.c_contiguous or flags.f_contiguous)):
                return obj.copy(order="A").__reduce_ex__(PROTOCOL)
        return NotImplemented


# ---------------------------------------------------------------------------------- writing


def unpickle(file: IO[bytes], where: str, buffers: list[memoryview] | None = None) -> object:
    try:
        return TreeUnpickler(file, where, buffers).load()
    except pickle.UnpicklingError:
        raise
    except Exception as error:
        # Damaged bytes make unpickling raise anything: an unknown protocol (ValueError), a cut
        # opcode (EOFError), a huge length (MemoryError), NumPy's reconstruction given nonsense
        # (SystemError, RuntimeError)... all of them mean the same to a reader.
        raise CorruptRecordError(
            f"{where}: not a record ({type(error).__name__}: {error})"
        ) from error
