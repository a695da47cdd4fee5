"""Loading a record with its big arrays memory-mapped from the file, read-only.

Records are written with protocol 5, which puts the bytes of a contiguous array in band, after a
``BYTEARRAY8`` opcode and its length. A big payload is written outside the pickle's frames, so
the record can be loaded as another stream: the same opcodes, with each big payload replaced by
protocol 5's reference to an out-of-band buffer (``NEXT_BUFFER``, ``READONLY_BUFFER``), and a
read-only view of the file's mapping as that buffer. The array is then made on the mapped bytes,
with no copy. Records of older protocols (arrays restored from ``bytes`` by ``__setstate__``)
have no such payloads, and load as usual.
"""

import io
import mmap
import pickletools
import struct
from typing import Any

from corelay.io._pickle.safe import CorruptRecordError, unpickle

#: Payloads from this size up are mapped (smaller ones sit inside frames, and cost little).
MAPPED_BYTES = 64 * 1024

_OPS = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}
_BYTEARRAY8 = 0x96
_FRAME = 0x95
_STOP = ord(".")
_REFERENCE = b"\x97\x98"  # NEXT_BUFFER, READONLY_BUFFER
_LENGTHS = {
    pickletools.TAKEN_FROM_ARGUMENT1: struct.Struct("<B"),
    pickletools.TAKEN_FROM_ARGUMENT4: struct.Struct("<i"),
    pickletools.TAKEN_FROM_ARGUMENT4U: struct.Struct("<I"),
    pickletools.TAKEN_FROM_ARGUMENT8U: struct.Struct("<Q"),
}


def mapped_payloads(mapping: mmap.mmap, start: int) -> tuple[list[tuple[int, int, int]], int]:
    """The big array payloads of the record at ``start``, outside frames, and its end.

    The record must have been walked (checked) already.

    Returns:
        For each payload: where its opcode starts, where its bytes start and end; and the
        offset just past the record.
    """
    found: list[tuple[int, int, int]] = []
    position = start
    frame_end = start
    size = len(mapping)
    while position < size:
        at = position
        code = mapping[position]
        op = _OPS.get(code)
        if op is None:
            raise CorruptRecordError(f"unknown opcode {code:#x} at byte {position}")
        position += 1
        argument = op.arg
        length = 0
        if argument is None:
            pass
        elif argument.n >= 0:
            if code == _FRAME:
                frame_end = position + 8 + struct.unpack_from("<Q", mapping, position)[0]
            position += argument.n
        elif argument.n == pickletools.UP_TO_NEWLINE:
            lines = 2 if argument.name == "stringnl_noescape_pair" else 1
            for _ in range(lines):
                newline = mapping.find(b"\n", position)
                if newline < 0:
                    raise CorruptRecordError(f"an opcode at byte {at} has no end")
                position = newline + 1
        else:
            field = _LENGTHS[argument.n]
            length = field.unpack_from(mapping, position)[0]
            position += field.size
            if code == _BYTEARRAY8 and length >= MAPPED_BYTES and at >= frame_end:
                found.append((at, position, position + length))
            position += length
        if code == _STOP:
            return found, position
    raise CorruptRecordError(f"the record at byte {start} ends with the file")


def load_mapped(mapping: mmap.mmap, start: int, where: str) -> object:
    """Unpickles the record at ``start`` with its big array payloads mapped, read-only."""
    payloads, end = mapped_payloads(mapping, start)
    view = memoryview(mapping)
    parts: list[Any] = []
    buffers: list[memoryview] = []
    position = start
    for at, low, high in payloads:
        parts.append(view[position:at])
        parts.append(_REFERENCE)
        buffers.append(view[low:high].toreadonly())
        position = high
    parts.append(view[position:end])
    stream = b"".join(parts)
    view.release()
    return unpickle(io.BytesIO(stream), where, buffers)
