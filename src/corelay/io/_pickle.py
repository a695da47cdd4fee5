"""The pickle codec: a file of appended records, each one pickle of ``{'data': tree, 'key': key}``.

This is the format of corelay 1.0.0's ``PickleStorage``, so files go both ways: a record is a
plain :func:`pickle.dump` of the dict, and the last record of a key holds its value.

Reading without two copies, and without unpickling what is not asked for: opening a file walks
the pickle opcodes of every record (:func:`scan`) instead of unpickling them. The walk reads the
small arguments (strings, integers, memo indices) and seeks over byte payloads, so it touches
only the metadata of the file however large its arrays are, and it simulates just enough of the
pickle machine (strings, dicts, the memo) to find each record's key. The result is an index
``key -> byte offset of the key's last record``; reading a key seeks there and unpickles that one
record, straight from the file. Unpickling every record on open would be simpler, but would read
every array of the file to learn its keys.

Loading never executes code: :class:`TreeUnpickler` resolves only the globals that stored trees
need (NumPy array, dtype and scalar reconstruction, ``complex``, ``OrderedDict``, and ``set``
for corelay 1.0.0 files), from a fixed table, without importing anything; any other global is
refused with :class:`RefusedGlobalError`, naming it, and an object array with
:class:`RefusedValueError`.

Loading takes work and memory in proportion to the record, however it was crafted. Before the
unpickler reads a record, its opcodes are walked again (metadata only): memo indexes beyond the
opcodes walked, and frames or lengths beyond the end of the file, are refused, so the
unpickler's memo and reads stay within the file's size. The loaded value is then turned into
the returned tree by :func:`read_form`, without recursion (any depth reads back): a container
that contains itself is refused, and a container the record holds more than once is copied,
within a budget of nodes proportional to the record's opcodes; a record beyond it (a chain of
reused containers, which doubles the tree at every link) is refused as shared structure.

Writing uses pickle protocol 5, in band: a contiguous array is written straight from its memory
(no copy) and read back into one buffer that becomes the array (no copy). Each record is
appended and flushed to the operating system; ``os.fsync`` is not called, as HDF5Storage does
not call it either: a returned write survives the process being killed, not a power failure.
A write that fails part way is cut off the file again. A record cut short by a crash (a torn
last record) is ignored with a warning, and cut off the file when it is opened for appending.
"""

import inspect
import io
import math
import os
import pickle
import pickletools
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final, cast

import numpy as np

from corelay.io import _lock
from corelay.io._keys import name_problem
from corelay.io.tree import DictNode, Node, SequenceNode, validate

__all__ = [
    "ALLOWED_GLOBALS",
    "PROTOCOL",
    "CorruptRecordError",
    "RecordFile",
    "RefusedGlobalError",
    "RefusedValueError",
    "TreePickler",
    "TreeUnpickler",
    "scan",
]

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


class _DTypeSpec:
    """What ``numpy.dtype(name, align, copy)`` and its state asked for."""

    def __init__(self, name: object, align: object = False, copy: object = False) -> None:
        self.name = name
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class _ArraySpec:
    """What ``_reconstruct`` and ``__setstate__`` (or ``_frombuffer``) asked for."""

    def __init__(self, *args: object) -> None:
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class _ScalarSpec:
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


class _Function:
    """An allowed function, in an object that BUILD cannot alter (a function's could be)."""

    __slots__ = ("_function",)

    def __init__(self, function: Any) -> None:
        self._function = function

    def __call__(self, *args: object) -> object:
        return self._function(*args)

    def __setstate__(self, state: object) -> None:
        raise CorruptRecordError("a record sets the state of a function")


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> _ArraySpec:
    spec = _ArraySpec()
    spec.state = (1, shape, dtype, order == "F", buffer)
    return spec


_SIMPLE_KINDS = "biufcSU"


def _as_tuple(value: object) -> tuple[object, ...]:
    if isinstance(value, tuple):
        return cast("tuple[object, ...]", value)
    return ()


def _make_dtype(spec: object) -> np.dtype[Any]:
    if not isinstance(spec, _DTypeSpec) or type(spec.name) is not str:
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


def _make_array(spec: _ArraySpec) -> np.ndarray[Any, Any]:
    state = _as_tuple(spec.state)
    if len(state) != 5:
        raise CorruptRecordError("an array in a record has no state")
    _, shape_state, dtype_spec, fortran, data = state
    dtype = _make_dtype(dtype_spec)
    shape = _as_tuple(shape_state)
    if type(shape_state) is not tuple or not all(type(n) is int and n >= 0 for n in shape):
        raise CorruptRecordError(f"array shape {shape_state!r} in a record")
    dims = cast("tuple[int, ...]", shape)
    if not isinstance(data, bytes | bytearray | pickle.PickleBuffer):
        raise CorruptRecordError("array data in a record are not bytes")
    buffer = memoryview(data).cast("B")
    count = math.prod(dims)
    if len(buffer) != count * dtype.itemsize:
        raise CorruptRecordError(
            f"array of shape {dims} and dtype {dtype} with {len(buffer)} bytes"
        )
    array = np.frombuffer(buffer, dtype=dtype, count=count)
    if not array.flags.writeable:  # from bytes (protocols 0 to 4): arrays read back writable
        array = array.copy()
    try:  # an empty array may declare more or larger dimensions than NumPy has
        return array.reshape(dims, order="F" if fortran is True else "C")
    except (ValueError, OverflowError):
        raise CorruptRecordError(f"array shape {dims} in a record") from None


def _make_scalar(spec: _ScalarSpec) -> "np.generic[Any]":
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
    ("numpy", "dtype"): _DTypeSpec,
    ("numpy._core.multiarray", "_reconstruct"): _ArraySpec,
    ("numpy.core.multiarray", "_reconstruct"): _ArraySpec,
    ("numpy._core.multiarray", "scalar"): _ScalarSpec,
    ("numpy.core.multiarray", "scalar"): _ScalarSpec,
    ("numpy._core.numeric", "_frombuffer"): _Function(_frombuffer),
    ("numpy.core.numeric", "_frombuffer"): _Function(_frombuffer),
    ("builtins", "complex"): complex,
    ("__builtin__", "complex"): complex,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _Function(_latin1_bytes),
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
    """

    def __init__(self, file: IO[bytes], where: str) -> None:
        super().__init__(file)
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


def _plain(value: Any, node: Node) -> Any:
    # The validated tree in plain types, so that the file references no class of the caller's
    # (an OrderedDict subclass, a memmap) and loads with the allowed globals only.
    if isinstance(node, DictNode):
        return {key: _plain(item, node.children[key]) for key, item in value.items()}
    if isinstance(node, SequenceNode):
        items = [_plain(item, item_node) for item, item_node in zip(value, node.items, strict=True)]
        return tuple(items) if node.kind == "tuple" else items
    if node.kind == "ndarray" and type(value) is not np.ndarray:
        return value.view(np.ndarray)
    if node.kind == "generic" and type(value) is not value.dtype.type:
        return value.dtype.type(value)
    return value


# ---------------------------------------------------------------------------------- reading


#: How many tree nodes a record may expand to, per opcode walked, plus :data:`_NODE_SLACK`. A
#: tree pickled as a tree has at most one node per opcode; a record that reuses a container
#: through the memo (a list held twice) reads back as copies, and a few of those fit the budget,
#: but a chain of reuses (which doubles the tree at every link) is refused within it.
_NODES_PER_OPCODE: Final = 4
_NODE_SLACK: Final = 1 << 16

_CONTAINERS: Final = (dict, OrderedDict, list, tuple, set, frozenset)
#: What a dict key or set member may be in a returned value: hashable plain values.
_KEY_TYPES: Final = (str, bytes, int, float, complex, bool, type(None))


class _Frame:
    """A container being read: its items still to read and the items read so far."""

    __slots__ = ("items", "label", "parent", "read", "source")

    def __init__(self, source: object, label: object, parent: "_Frame | None") -> None:
        self.items: Iterator[tuple[object, object]]
        self.source = source
        self.label = label
        self.parent = parent
        self.read: list[tuple[object, object]] = []
        if isinstance(source, dict):
            self.items = iter(cast("dict[object, object]", source).items())
        elif isinstance(source, set | frozenset):
            members = cast("set[object] | frozenset[object]", source)
            self.items = iter([(None, member) for member in members])
        else:
            self.items = enumerate(cast("list[object] | tuple[object, ...]", source))


def _path(frame: _Frame | None, label: object) -> str:
    """The path of item ``label`` of ``frame``, like ``data['a'][0]``."""
    labels = [label]
    while frame is not None and frame.parent is not None:
        labels.append(frame.label)
        frame = frame.parent
    # The last label is the index of the value in the reader's wrapper tuple: not a path.
    return "data" + "".join(f"[{item!r}]" for item in reversed(labels[:-1]))


def _container_path(frame: _Frame) -> str:
    return _path(frame.parent, frame.label)


class _Reader:
    """Turns a loaded record's data into the value a storage returns, without recursion."""

    def __init__(self, limit: int | None, checked: bool, max_depth: int | None) -> None:
        self.limit = limit
        self.checked = checked
        self.max_depth = max_depth
        self.nodes = 0
        self.made: dict[int, object] = {}  # arrays and scalars by description: made once

    def leaf(self, value: object, frame: _Frame, label: object) -> object:
        if isinstance(value, _ArraySpec | _ScalarSpec):
            made = self.made.get(id(value))
            if made is None:
                try:
                    if isinstance(value, _ArraySpec):
                        made = _make_array(value)
                    else:
                        made = _make_scalar(value)
                except (CorruptRecordError, RefusedValueError) as error:
                    raise type(error)(f"{_path(frame, label)}: {error}") from None
                self.made[id(value)] = made
            value = made
        elif isinstance(value, type | _DTypeSpec | _Function):  # what only builds leaves
            raise CorruptRecordError(f"{_path(frame, label)}: a bare dtype, class or function")
        if self.checked:
            self.check(value, frame, label)
        return value

    def check(self, value: object, frame: _Frame, label: object) -> None:
        try:
            validate(value, "data", any_text=True)  # pickle stores every str
        except (TypeError, ValueError) as error:
            message = str(error).removeprefix("data: ").split("; accepted:")[0]
            raise CorruptRecordError(
                f"not a stored tree: {_path(frame, label)}: {message}"
            ) from None

    def key(self, key: object, frame: _Frame, what: str) -> object:
        """A dict key or set member, checked hashable and plain; NumPy scalars are made."""
        if isinstance(key, _ScalarSpec):
            return self.leaf(key, frame, what)
        if type(key) is tuple:
            members = cast("tuple[object, ...]", key)
            self.count(len(members))
            if any(type(member) is tuple for member in members):
                raise CorruptRecordError(
                    f"not a stored tree: {_container_path(frame)}: a {what} is a tuple within "
                    "a tuple"
                )
            return tuple(self.key(member, frame, what) for member in members)
        if self.checked and type(key) not in _KEY_TYPES:
            raise CorruptRecordError(
                f"not a stored tree: {_container_path(frame)}: {what} {key!r} of type "
                f"{type(key).__name__}"
            )
        return key

    def count(self, nodes: int) -> None:
        self.nodes += nodes
        if self.limit is not None and self.nodes > self.limit:
            raise CorruptRecordError(
                f"shared structure: with the containers it reuses through the pickle memo "
                f"expanded, the record's tree has more than {self.limit} nodes"
            )

    def finish(self, frame: _Frame) -> object:
        source = frame.source
        if isinstance(source, dict):
            pairs = [(self.key(key, frame, "dict key"), item) for key, item in frame.read]
            if self.checked:
                self.check_keys({key: None for key, _ in pairs if isinstance(key, str)}, frame)
            result = OrderedDict(pairs)
            if len(result) != len(pairs):
                raise CorruptRecordError(f"{_container_path(frame)}: dict keys that collide")
            return result
        if isinstance(source, set | frozenset):
            members = [self.key(member, frame, "set member") for _, member in frame.read]
            made_set = set(members) if isinstance(source, set) else frozenset(members)
            if len(made_set) != len(members):
                raise CorruptRecordError(f"{_container_path(frame)}: set members that collide")
            return made_set
        items = [item for _, item in frame.read]
        return tuple(items) if isinstance(source, tuple) else items

    def check_keys(self, names: dict[str, None], frame: _Frame) -> None:
        try:
            validate(names, "data")  # the key rules of stored trees, whatever they are
        except (TypeError, ValueError) as error:
            message = str(error).removeprefix("data: ")
            raise CorruptRecordError(
                f"not a stored tree: {_container_path(frame)}: {message}"
            ) from None

    def read(self, value: object) -> Any:
        root = _Frame((value,), None, None)
        stack = [root]
        active = {id(root.source)}  # the containers being read: one met again is a cycle
        while True:
            frame = stack[-1]
            for label, item in frame.items:
                self.count(1)
                if type(item) in _CONTAINERS:
                    if id(item) in active:
                        raise CorruptRecordError(
                            f"{_path(frame, label)}: a container that contains itself"
                        )
                    if self.max_depth is not None and len(stack) > self.max_depth:
                        raise CorruptRecordError(
                            f"{_path(frame, label)}: containers nested deeper than {self.max_depth}"
                        )
                    active.add(id(item))
                    stack.append(_Frame(item, label, frame))
                    break
                frame.read.append((label, self.leaf(item, frame, label)))
            else:
                stack.pop()
                active.discard(id(frame.source))
                if not stack:
                    return frame.read[0][1]
                stack[-1].read.append((frame.label, self.finish(frame)))


def read_form(
    value: object,
    *,
    limit: int | None = None,
    checked: bool = False,
    max_depth: int | None = None,
) -> Any:
    """Returns a loaded tree as storages return trees, walking it without recursion.

    Every dict becomes an ``OrderedDict``, every described array and scalar is made, after it
    is checked; an array or scalar the record holds twice is made once.

    Args:
        value: The data of a loaded record.
        limit: The most nodes the returned tree may have (containers met twice count twice).
        checked: Whether to raise unless the value is a stored tree, or one of the plain values
            corelay 1.0.0 could write besides: dicts with keys that are not ``str`` (``int``,
            ``float``, ``bytes``, ``None``, a NumPy scalar, a tuple of these...) and sets or
            frozensets of such values.
        max_depth: The most containers the returned tree may nest (the root is at depth 1);
            ``None`` for any depth.

    Raises:
        CorruptRecordError: The value is not one a storage returns, contains itself, has
            more nodes than ``limit``, or nests deeper than ``max_depth``.
        RefusedValueError: The value holds an object array.
    """
    return _Reader(limit, checked, max_depth).read(value)


def _check_record(record: object, where: str) -> tuple[str, object]:
    if not isinstance(record, dict):
        raise CorruptRecordError(f"{where}: not a PickleStorage record but {type(record).__name__}")
    fields = cast("dict[object, object]", record)
    key = fields.get("key")
    if "data" not in fields or not isinstance(key, str):
        raise CorruptRecordError(f"{where}: not a {{'data': ..., 'key': str}} record")
    return key, fields["data"]


# ---------------------------------------------------------------------------------- scanning


class _Incomplete(Exception):  # noqa: N818 - internal signal, never escapes this module
    """The file ends inside the record."""


class _Malformed(Exception):  # noqa: N818
    """The bytes are not a pickle."""


class _Mark:
    pass


class _Opaque:
    pass


_MARK: Final = _Mark()
_OPAQUE: Final = _Opaque()
_OPCODES: Final = {ord(op.code): op for op in pickletools.opcodes}


def _stack_effect(op: pickletools.OpcodeInfo) -> tuple[bool, int, int]:
    before = [item.name for item in op.stack_before]
    if "mark" in before:
        return True, before.index("mark"), len(op.stack_after)
    return False, len(before), len(op.stack_after)


# Per opcode: whether it pops down to a mark, how many items it pops (then), how many it pushes.
_EFFECTS: Final = {code: _stack_effect(op) for code, op in _OPCODES.items()}
# Opcodes whose argument is a counted payload, by the size of the count: skipped, never read.
_PAYLOADS: Final = {
    "SHORT_BINSTRING": 1,
    "BINSTRING": 4,
    "SHORT_BINBYTES": 1,
    "BINBYTES": 4,
    "BINBYTES8": 8,
    "BYTEARRAY8": 8,
}
_STRINGS: Final = {"SHORT_BINUNICODE": 1, "BINUNICODE": 4, "BINUNICODE8": 8}
# Longer strings are skipped as well; a key that long is found by unpickling its record.
_MAX_KEY_BYTES: Final = 1 << 16


class _Walker:
    """Walks one pickle: finds where it ends and, if it is a record dict, its key."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self.file = file
        self.size = size
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}
        self.ops = 0  # opcodes walked: what bounds the memo and the loaded tree

    def read(self, count: int) -> bytes:
        data = self.file.read(count)
        if len(data) < count:
            raise _Incomplete
        return data

    def skip(self, count: int) -> None:
        position = self.file.tell() + count
        if position > self.size:
            raise _Incomplete
        self.file.seek(position)

    def count(self, size: int) -> int:
        return int.from_bytes(self.read(size), "little")

    def pop(self) -> object:
        if not self.stack:
            raise _Malformed("stack underflow")
        return self.stack.pop()

    def top(self) -> object:
        if not self.stack:
            raise _Malformed("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[object]:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index] is _MARK:
                items = self.stack[index + 1 :]
                del self.stack[index:]
                return items
        raise _Malformed("no mark on the stack")

    def walk(self) -> str | None:
        """Reads up to and including STOP; returns the record key, or None if not found."""
        while True:
            code = self.read(1)[0]
            self.ops += 1
            op = _OPCODES.get(code)
            if op is None:
                raise _Malformed(f"invalid opcode {code:#04x}")
            name = op.name
            if name == "STOP":
                return self.record_key(self.pop())
            if name in _PAYLOADS:
                self.skip(self.count(_PAYLOADS[name]))
                self.stack.append(_OPAQUE)
            elif name == "LONG4":  # read here: the generic reader would allocate any length
                length = int.from_bytes(self.read(4), "little", signed=True)
                if length < 0:
                    raise _Malformed("LONG4 of negative length")
                self.skip(length)
                self.stack.append(_OPAQUE)
            elif name in _STRINGS:
                length = self.count(_STRINGS[name])
                if length > _MAX_KEY_BYTES:
                    self.skip(length)
                    self.stack.append(_OPAQUE)
                else:
                    self.stack.append(self.read(length).decode("utf-8", "surrogatepass"))
            else:
                self.step(code, op)

    def step(self, code: int, op: pickletools.OpcodeInfo) -> None:
        name = op.name
        argument = self.argument(op)
        stack = self.stack
        if name == "FRAME":
            # Unpicklers read a frame whole: one beyond the end of the file is not loaded.
            if argument > self.size - self.file.tell():
                raise _Incomplete
            return
        if name == "PROTO":
            return
        if name == "MARK":
            stack.append(_MARK)
        elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            index = len(self.memo) if name == "MEMOIZE" else int(argument)
            # Picklers number memo entries 0, 1, 2...; unpicklers size the memo by the largest
            # index, so one beyond the opcodes walked would make a small record take any memory.
            if not 0 <= index < self.ops:
                raise _Malformed(f"memo index {index} beyond the record's {self.ops} opcodes")
            self.memo[index] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(argument) not in self.memo:
                raise _Malformed(f"memo {argument} is not set")
            stack.append(self.memo[int(argument)])
        elif name == "DUP":
            stack.append(self.top())
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "DICT":
            self.set_items({}, self.pop_mark())
        elif name == "SETITEM":
            value, key = self.pop(), self.pop()
            self.set_items(self.pop(), [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            self.set_items(self.pop(), items)
        else:
            to_mark, pops, pushes = _EFFECTS[code]
            if to_mark:
                self.pop_mark()
            for _ in range(pops):
                self.pop()
            stack.extend([_OPAQUE] * pushes)

    def argument(self, op: pickletools.OpcodeInfo) -> Any:
        if op.arg is None:
            return None
        try:
            return op.arg.reader(self.file)
        except ValueError as error:
            if self.file.tell() >= self.size:
                raise _Incomplete from error
            raise _Malformed(str(error)) from error

    def set_items(self, target: object, items: list[object]) -> None:
        if len(items) % 2:
            raise _Malformed("odd number of items for a dict")
        self.stack.append(target)
        if isinstance(target, dict):
            fields = cast("dict[object, object]", target)
            for index in range(0, len(items), 2):
                key = items[index]
                fields[key if isinstance(key, str) else _Opaque()] = items[index + 1]

    @staticmethod
    def record_key(top: object) -> str | None:
        if isinstance(top, dict):
            fields = cast("dict[object, object]", top)
            key = fields.get("key")
            if "data" in fields and isinstance(key, str):
                return key
        return None


def _caller_level() -> int:
    # The stacklevel of the first caller outside this package, for warnings (beartype's
    # wrappers run in the globals of the module they wrap).
    level, frame = 1, inspect.currentframe()
    frame = frame.f_back if frame is not None else None
    while frame is not None and str(frame.f_globals.get("__name__")).startswith("corelay."):
        level += 1
        frame = frame.f_back
    return level


def _file_size(file: IO[bytes]) -> int:
    return os.fstat(file.fileno()).st_size


def scan(file: IO[bytes], path: Path) -> tuple[dict[str, int], int]:
    """Indexes the records of ``file`` without unpickling their data.

    A torn last record (the file ends inside a record that starts like a pickle) is ignored
    with a :class:`RuntimeWarning` naming the file and the record's byte offset.

    Args:
        file: The open file.
        path: Its path, for messages.

    Raises:
        CorruptRecordError: Some bytes before the end are not a record.
        RefusedGlobalError: A record's key could only be found by unpickling it, and it
            references a global that is not allowed.

    Returns:
        The byte offset of the last record of each key, in the order keys first appear, and
        the offset where the complete records end.
    """
    size = _file_size(file)
    index: dict[str, int] = {}
    offset = 0
    file.seek(0)
    while offset < size:
        where = f"{str(path)!r}, record at byte {offset}"
        try:
            key = _Walker(file, size).walk()
        except _Incomplete:
            file.seek(offset)
            if file.read(1) != b"\x80":
                raise CorruptRecordError(f"{where}: not a pickle") from None
            warnings.warn(
                f"{str(path)!r}: ignoring a torn record at byte {offset} ({size - offset} bytes, "
                f"the end of an interrupted write); the {offset} bytes before it are intact "
                "(opening the file for appending cuts the torn record off)",
                RuntimeWarning,
                stacklevel=_caller_level(),
            )
            return index, offset
        except Exception as error:  # _Malformed, or what damaged arguments make readers raise
            raise CorruptRecordError(f"{where}: not a pickle ({error})") from None
        end = file.tell()
        if key is None:
            file.seek(offset)
            key, _ = _check_record(_unpickle(file, where), where)
            file.seek(end)
        problem = next(filter(None, map(name_problem, key.split("/"))), None)
        if problem is None:
            index[key] = offset
        else:  # damage, or a key no storage can address: the other records stay readable
            warnings.warn(
                f"{where}: ignoring the record of key {key!r}, which is not a valid key: {problem}",
                RuntimeWarning,
                stacklevel=_caller_level(),
            )
        offset = end
    return index, offset


# ---------------------------------------------------------------------------------- the file


def _unpickle(file: IO[bytes], where: str) -> object:
    try:
        return TreeUnpickler(file, where).load()
    except pickle.UnpicklingError:
        raise
    except Exception as error:
        # Damaged bytes make unpickling raise anything: an unknown protocol (ValueError), a cut
        # opcode (EOFError), a huge length (MemoryError), NumPy's reconstruction given nonsense
        # (SystemError, RuntimeError)... all of them mean the same to a reader.
        raise CorruptRecordError(
            f"{where}: not a record ({type(error).__name__}: {error})"
        ) from error


class RecordFile:
    """An open record file and the index of its keys.

    Args:
        path: The file.
        mode: ``'r'``, ``'w'`` or ``'a'`` (already checked).

    Raises:
        CorruptRecordError: The file is not a record file.
        RefusedGlobalError: See :func:`scan`.
    """

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self.file: IO[bytes] = _lock.open_locked(path, mode)
        self.index: dict[str, int] = {}
        if mode == "w":
            return
        try:
            self.index, end = scan(self.file, path)
            if mode == "a" and end < _file_size(self.file):
                # Appending after a torn record would bury it inside the file.
                self.file.truncate(end)
        except BaseException:
            self.file.close()
            raise

    def load(self, key: str, *, checked: bool = True, max_depth: int | None = None) -> Any:
        """Reads the value of ``key`` from its last record, as storages return trees.

        Args:
            key: The key.
            checked: Whether to raise unless the value is a stored tree or one of the plain
                values of corelay 1.0.0 files (see :func:`read_form`); without the check, a
                value loaded with the allowed globals alone may hold, say, a ``bytearray``.
            max_depth: The most containers the value may nest, or ``None`` for any depth.

        Raises:
            KeyError: ``key`` has no record.
            RefusedGlobalError: The record references a global that is not allowed.
            RefusedValueError: The record holds an object array.
            CorruptRecordError: The record does not hold ``key``, or a value storages return,
                or it is built to take work or memory out of proportion to its size.
        """
        offset = self.index[key]
        where = f"{str(self.path)!r}, record at byte {offset}"
        # Walked again (metadata only) before unpickling: the checks of memo indexes, frames
        # and lengths that bound the memory of the unpickler, and the opcode count that bounds
        # the tree, hold for the bytes in the file now.
        self.file.seek(offset)
        walker = _Walker(self.file, _file_size(self.file))
        try:
            walker.walk()
        except _Incomplete:
            raise CorruptRecordError(f"{where}: the record ends with the file") from None
        except Exception as error:  # _Malformed, or what damaged arguments make readers raise
            raise CorruptRecordError(f"{where}: not a pickle ({error})") from None
        self.file.seek(offset)
        found, data = _check_record(_unpickle(self.file, where), where)
        if found != key:
            raise CorruptRecordError(f"{where}: holds key {found!r}, not {key!r}")
        limit = _NODE_SLACK + _NODES_PER_OPCODE * walker.ops
        try:
            return read_form(data, limit=limit, checked=checked, max_depth=max_depth)
        except (CorruptRecordError, RefusedValueError) as error:
            raise type(error)(f"{where}: {error}") from None

    def append(self, key: str, value: Any, node: Node) -> None:
        """Appends a record of the validated ``value``, described by ``node``, and flushes it.

        If writing fails part way, the partial record is cut off the file again; if even that
        fails, the file is closed (the next open ignores the torn record).
        """
        record = {"data": _plain(value, node), "key": key}
        file = self.file
        start = file.seek(0, io.SEEK_END)
        try:
            TreePickler(file, PROTOCOL).dump(record)
            file.flush()
        except BaseException:
            try:
                file.seek(start)
                file.truncate()
            except BaseException:
                file.close()
                raise
            raise
        self.index[key] = start
