"""Indexing a file of records by walking their pickle opcodes, reading only metadata."""

import inspect
import os
import pickletools
import warnings
from pathlib import Path
from typing import IO, Any, Final, cast

from corelay.io._keys import name_problem
from corelay.io._pickle.form import check_record
from corelay.io._pickle.safe import CorruptRecordError, unpickle

#: The field that makes a record a tombstone: the deletion of its key.
DELETED_FIELD: Final = "deleted"


def is_tombstone(record: object) -> bool:
    """Whether ``record`` (loaded, or as a walk sees it) is the tombstone of its key."""
    return isinstance(record, dict) and DELETED_FIELD in cast("dict[object, object]", record)


class Incomplete(Exception):  # noqa: N818 - internal signal, never escapes the pickle format
    """The file ends inside the record."""


class Malformed(Exception):  # noqa: N818
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


class Walker:
    """Walks one pickle: finds where it ends and, if it is a record dict, its key."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self.file = file
        self.size = size
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}
        self.deleted = False  # whether the record walked is a tombstone
        self.ops = 0  # opcodes walked: what bounds the memo and the loaded tree

    def read(self, count: int) -> bytes:
        data = self.file.read(count)
        if len(data) < count:
            raise Incomplete
        return data

    def skip(self, count: int) -> None:
        position = self.file.tell() + count
        if position > self.size:
            raise Incomplete
        self.file.seek(position)

    def count(self, size: int) -> int:
        return int.from_bytes(self.read(size), "little")

    def pop(self) -> object:
        if not self.stack:
            raise Malformed("stack underflow")
        return self.stack.pop()

    def top(self) -> object:
        if not self.stack:
            raise Malformed("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[object]:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index] is _MARK:
                items = self.stack[index + 1 :]
                del self.stack[index:]
                return items
        raise Malformed("no mark on the stack")

    def walk(self) -> str | None:
        """Reads up to and including STOP; returns the record key, or None if not found."""
        while True:
            code = self.read(1)[0]
            self.ops += 1
            op = _OPCODES.get(code)
            if op is None:
                raise Malformed(f"invalid opcode {code:#04x}")
            name = op.name
            if name == "STOP":
                top = self.pop()
                self.deleted = is_tombstone(top)
                return self.record_key(top)
            if name in _PAYLOADS:
                self.skip(self.count(_PAYLOADS[name]))
                self.stack.append(_OPAQUE)
            elif name == "LONG4":  # read here: the generic reader would allocate any length
                length = int.from_bytes(self.read(4), "little", signed=True)
                if length < 0:
                    raise Malformed("LONG4 of negative length")
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
                raise Incomplete
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
                raise Malformed(f"memo index {index} beyond the record's {self.ops} opcodes")
            self.memo[index] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(argument) not in self.memo:
                raise Malformed(f"memo {argument} is not set")
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
                raise Incomplete from error
            raise Malformed(str(error)) from error

    def set_items(self, target: object, items: list[object]) -> None:
        if len(items) % 2:
            raise Malformed("odd number of items for a dict")
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


def file_size(file: IO[bytes]) -> int:
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
        The byte offset of the last record of each key, in the order keys first appear (after
        their last tombstone), without the keys a tombstone deleted, and the offset where the
        complete records end.
    """
    size = file_size(file)
    index: dict[str, int] = {}
    offset = 0
    file.seek(0)
    while offset < size:
        where = f"{str(path)!r}, record at byte {offset}"
        walker = Walker(file, size)
        try:
            key = walker.walk()
        except Incomplete:
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
        except Exception as error:  # Malformed, or what damaged arguments make readers raise
            raise CorruptRecordError(f"{where}: not a pickle ({error})") from None
        end = file.tell()
        deleted = walker.deleted
        if key is None:
            file.seek(offset)
            record = unpickle(file, where)
            key, _ = check_record(record, where)
            deleted = is_tombstone(record)
            file.seek(end)
        problem = next(filter(None, map(name_problem, key.split("/"))), None)
        if problem is None and deleted:
            index.pop(key, None)
        elif problem is None:
            index[key] = offset
        else:  # damage, or a key no storage can address: the other records stay readable
            warnings.warn(
                f"{where}: ignoring the record of key {key!r}, which is not a valid key: {problem}",
                RuntimeWarning,
                stacklevel=_caller_level(),
            )
        offset = end
    return index, offset
