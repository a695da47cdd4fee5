"""Decompression bounded by what a chunk declares, for reading stores written elsewhere.

A compressed chunk of a few kilobytes can decompress to gigabytes, and zarr's codecs allocate
what a frame's header says. The codecs here check that header (or stop decompressing) against
the most a chunk of its array can hold before anything is allocated; a chunk beyond it raises
:class:`~corelay.io.errors.UnreadableNodeError`. Codecs whose output cannot be bounded this way
are not read.
"""

import dataclasses
import math
import struct
import zlib
from typing import Any, cast

from zarr.abc.codec import Codec
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    VLenBytesCodec,
    VLenUTF8Codec,
    ZstdCodec,
)
from zarr.core.array_spec import ArraySpec
from zarr.core.buffer import Buffer
from zarr.core.metadata.v3 import ArrayV3Metadata

from corelay.io._zstd import zstd_content_size
from corelay.io.errors import UnreadableNodeError
from corelay.io.tree import DEFAULT_MAX_READ_BYTES

__all__ = ["bounded_metadata", "inner_chunk_count"]

# Room beyond a chunk's data for what other codecs add inside a compressor (checksums).
_SLACK = 4096
# A chunk of variable-length strings or bytes declares no size: it is bounded by this.
_VARIABLE_CHUNK_BYTES = DEFAULT_MAX_READ_BYTES
# Codecs whose output is their input's size or less, or bounded by the chunk's shape.
_PLAIN = (BytesCodec, TransposeCodec, VLenUTF8Codec, VLenBytesCodec, Crc32cCodec)


def _most_bytes(spec: ArraySpec) -> int:
    """The most bytes a compressor may return for a chunk of ``spec``."""
    native = spec.dtype.to_native_dtype()
    if native.kind in "OT" or native.itemsize == 0:
        return _VARIABLE_CHUNK_BYTES
    return math.prod(spec.shape) * native.itemsize + _SLACK


def _too_big(name: str, declared: int | str, spec: ArraySpec) -> UnreadableNodeError:
    return UnreadableNodeError(
        f"a {name} chunk decompresses to {declared} bytes; a chunk of shape {spec.shape} of "
        f"{spec.dtype.to_native_dtype()} holds at most {_most_bytes(spec)}"
    )


class _BoundedZstd(ZstdCodec):
    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        try:
            size = zstd_content_size(chunk_bytes.as_numpy_array()[:18].tobytes())
        except ValueError as error:
            raise UnreadableNodeError(f"a zstd chunk: {error}") from None
        if size is None:
            raise _too_big("zstd", "an undeclared number of", chunk_spec)
        if size > _most_bytes(chunk_spec):
            raise _too_big("zstd", size, chunk_spec)
        return super()._decode_sync(chunk_bytes, chunk_spec)


class _BoundedGzip(GzipCodec):
    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        most = _most_bytes(chunk_spec)
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = decompressor.decompress(chunk_bytes.as_numpy_array().data, most + 1)
        except zlib.error as error:
            raise UnreadableNodeError(f"a gzip chunk: {error}") from None
        if len(data) > most:
            raise _too_big("gzip", f"more than {most}", chunk_spec)
        if not decompressor.eof:
            raise UnreadableNodeError("a gzip chunk is truncated")
        return chunk_spec.prototype.buffer.from_bytes(data)


class _BoundedBlosc(BloscCodec):
    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        header = chunk_bytes.as_numpy_array()[:16].tobytes()
        if len(header) < 16:
            raise UnreadableNodeError("a blosc chunk is truncated")
        size = struct.unpack_from("<I", header, 4)[0]  # the uncompressed size it declares
        if size > _most_bytes(chunk_spec):
            raise _too_big("blosc", size, chunk_spec)
        return super()._decode_sync(chunk_bytes, chunk_spec)


_BOUNDED: dict[type[Codec], type[Codec]] = {
    ZstdCodec: _BoundedZstd,
    GzipCodec: _BoundedGzip,
    BloscCodec: _BoundedBlosc,
}


def _fields(codec: Codec) -> dict[str, Any]:
    return {
        field.name: getattr(codec, field.name)
        for field in dataclasses.fields(cast(Any, codec))
        if field.init
    }


def _bounded(codecs: tuple[Codec, ...], path: str) -> tuple[Codec, ...]:
    bounded: list[Codec] = []
    for codec in codecs:
        if isinstance(codec, ShardingCodec):
            codec = dataclasses.replace(
                codec,
                codecs=_bounded(codec.codecs, path),
                index_codecs=_bounded(codec.index_codecs, path),
            )
        elif type(codec) in _BOUNDED:
            codec = _BOUNDED[type(codec)](**_fields(codec))
        elif not isinstance(codec, _PLAIN):
            raise UnreadableNodeError(
                f"{path}: the codec {type(codec).__name__} is not read: the size of what it "
                "decodes cannot be checked before it allocates"
            )
        bounded.append(codec)
    return tuple(bounded)


def bounded_metadata(metadata: ArrayV3Metadata, path: str) -> ArrayV3Metadata:
    """``metadata`` with compressors that check each chunk's declared size before decoding.

    Raises:
        UnreadableNodeError: A codec is not one whose output can be bounded.
    """
    return dataclasses.replace(metadata, codecs=_bounded(metadata.codecs, path))


def inner_chunk_count(metadata: ArrayV3Metadata, chunk_shape: tuple[int, ...]) -> int:
    """How many chunks the array is decoded in: its shards' inner chunks, if it is sharded."""
    sharding = next((c for c in metadata.codecs if isinstance(c, ShardingCodec)), None)
    inner = sharding.chunk_shape if sharding is not None else chunk_shape
    return math.prod(
        -(-length // max(chunk, 1)) for length, chunk in zip(metadata.shape, inner, strict=True)
    )
