"""The zstd frame header, read to know what a frame decompresses to before decompressing it."""

import struct

_ZSTD_MAGIC = 0xFD2FB528


def zstd_content_size(frame: bytes) -> int | None:
    """The content size a zstd frame's header declares, ``None`` if it declares none.

    Raises:
        ValueError: ``frame`` does not start with a zstd frame header.
    """
    if len(frame) < 5 or struct.unpack_from("<I", frame)[0] != _ZSTD_MAGIC:
        raise ValueError("not a zstd frame")
    descriptor = frame[4]
    size_flag, single_segment, dictionary_flag = (
        descriptor >> 6,
        (descriptor >> 5) & 1,
        descriptor & 3,
    )
    offset = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dictionary_flag]
    width = (1 if single_segment else 0, 2, 4, 8)[size_flag]
    if width == 0:
        return None
    if len(frame) < offset + width:
        raise ValueError("a truncated zstd frame header")
    size = int.from_bytes(frame[offset : offset + width], "little")
    return size + 256 if width == 2 else size
