"""Filtered chunks read without letting a filter inflate a chunk beyond a chunk's size.

HDF5's deflate filter grows its output buffer until the stream ends: a 2 MB chunk of a 4-element
dataset can make it allocate 2 GiB. Every chunk a read touches is therefore checked here first:

- deflate (gzip), shuffle and fletcher32: the chunks of numeric datasets are decoded here, with
  the decompressor stopped at the chunk's size, straight into the array read (no second
  decoding by HDF5); other datasets (strings, ``bool``, lazy slices) have each chunk
  decompressed here up to the chunk's size, then read through HDF5.
- zstd (hdf5plugin): the frame header must declare exactly the chunk's size, which is what the
  filter allocates, before HDF5 decodes it.
- lzf: its decoder grows its buffer by the compressed chunk's size until the data fits, and lzf
  expands data at most about 100 times: bounded by the file. Its declared chunk size is checked.
- Any other filter is refused (:class:`UnreadableNodeError`) unless the read opts in, as the size
  of what it decodes cannot be checked before it allocates.

Contiguous, compact and unfiltered chunked datasets are read by HDF5 as they are.
"""

import itertools
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from h5py import h5d, h5t

from corelay.io._zstd import zstd_content_size
from corelay.io.errors import UnreadableNodeError

DEFLATE = 1
SHUFFLE = 2
FLETCHER32 = 3
LZF = 32000
ZSTD = 32015
_NAMES = {DEFLATE: "gzip", SHUFFLE: "shuffle", FLETCHER32: "fletcher32", LZF: "lzf", ZSTD: "zstd"}
_COMPRESSORS = (DEFLATE, LZF, ZSTD)
_CHECKSUM_BYTES = 4
# An item of a variable-length type takes this much in a chunk: a length and a heap address.
_VLEN_ITEM_BYTES = 16
# The header bytes that hold a zstd frame's content size, at most.
_ZSTD_HEADER_BYTES = 18


@dataclass(frozen=True)
class Pipeline:
    """The filters of a chunked dataset and the size of its chunks, as read from the file."""

    filters: tuple[tuple[int, tuple[int, ...]], ...]
    """Each filter's id and parameters, in the order they were applied when writing."""
    chunk: tuple[int, ...]
    """The chunk shape."""
    chunk_bytes: int
    """The bytes one chunk holds, unfiltered."""
    path: str
    """How errors name the dataset."""

    @property
    def decodable(self) -> bool:
        """Whether the chunks can be decoded here whole (deflate, shuffle, fletcher32 only)."""
        # fletcher32 is verified by HDF5: a chunk with it is checked here, decoded by HDF5.
        return all(code in (DEFLATE, SHUFFLE) for code, _ in self.filters)


def pipeline(dataset: h5d.DatasetID, path: str, any_filter: bool = False) -> Pipeline | None:
    """The filters of ``dataset`` if it is chunked and filtered, else ``None``.

    Args:
        dataset: The dataset.
        path: How errors name it.
        any_filter: Accept filters whose output cannot be bounded (they are then not checked).

    Raises:
        UnreadableNodeError: A filter whose output cannot be bounded (without ``any_filter``),
            two compressors, or lzf declaring chunks larger than the dataset's.
    """
    plist = dataset.get_create_plist()
    if plist.get_layout() != h5d.CHUNKED:
        return None
    count = plist.get_nfilters()
    if count == 0:
        return None
    filters: list[tuple[int, tuple[int, ...]]] = []
    for index in range(count):
        code, _flags, values, _name = plist.get_filter(index)
        filters.append((int(code), tuple(int(value) for value in values)))
    chunk = tuple(int(length) for length in plist.get_chunk())
    result = Pipeline(tuple(filters), chunk, math.prod(chunk) * _item_bytes(dataset), path)
    unknown = [code for code, _ in filters if code not in _NAMES]
    if unknown:
        if any_filter:
            return None  # read as HDF5 reads it, unchecked: the reader opted in
        raise UnreadableNodeError(
            f"{path}: filtered with HDF5 filter {unknown[0]}, whose output cannot be checked "
            "against the chunk's size before it allocates: not read"
        )
    if sum(code in _COMPRESSORS for code, _ in filters) > 1:
        raise UnreadableNodeError(f"{path}: chunks compressed twice: not read")
    for code, values in filters:
        # lzf's decoder allocates the chunk size it declares first.
        if code == LZF and len(values) >= 3 and values[2] > result.chunk_bytes:
            raise UnreadableNodeError(
                f"{path}: lzf declares chunks of {values[2]} bytes; a chunk of shape {chunk} "
                f"holds {result.chunk_bytes}"
            )
    return result


def _item_bytes(dataset: h5d.DatasetID) -> int:
    file_type = dataset.get_type()
    if file_type.get_class() == h5t.VLEN or (
        isinstance(file_type, h5t.TypeStringID) and file_type.is_variable_str()
    ):
        return _VLEN_ITEM_BYTES
    return int(file_type.get_size())


def _stored_chunks(dataset: h5d.DatasetID) -> list[tuple[tuple[int, ...], int]]:
    found: list[tuple[tuple[int, ...], int]] = []

    def visit(info: h5d.StoreInfo) -> None:
        found.append((tuple(int(at) for at in info.chunk_offset), int(info.filter_mask)))

    dataset.chunk_iter(visit)
    return found


def _decode(
    pipe: Pipeline, offset: tuple[int, ...], mask: int, raw: bytes, whole: bool
) -> bytes | None:
    """Undoes the filters of one chunk, in reverse order, never past the chunk's size.

    Without ``whole``, stops (returning ``None``) where the rest is bounded and left to HDF5;
    shuffle is then skipped, as it keeps the size.
    """
    data: bytes = raw
    for index in range(len(pipe.filters) - 1, -1, -1):
        code, values = pipe.filters[index]
        if mask >> index & 1:
            continue  # the writer skipped this filter for this chunk
        # What this filter was given when writing: the chunk, and the checksums added before.
        expected = pipe.chunk_bytes + _CHECKSUM_BYTES * sum(
            1
            for before, (code_before, _) in enumerate(pipe.filters[:index])
            if code_before == FLETCHER32 and not mask >> before & 1
        )
        if code == DEFLATE:
            data = _inflate(pipe, offset, data, expected)
        elif code == FLETCHER32:
            if len(data) < _CHECKSUM_BYTES:
                raise _damaged(pipe, offset, "shorter than its checksum")
            data = data[:-_CHECKSUM_BYTES]
        elif code == SHUFFLE:
            if whole:
                item = values[0] if values and values[0] > 0 else 1
                data = _unshuffle(data, item)
        elif code == ZSTD:
            _check_zstd(pipe, offset, data, expected)
            return None
        else:  # lzf: bounded growth, left to HDF5
            return None
    if whole and len(data) != pipe.chunk_bytes:
        raise _damaged(pipe, offset, f"holds {len(data)} bytes, not {pipe.chunk_bytes}")
    return data


def _inflate(pipe: Pipeline, offset: tuple[int, ...], data: bytes, expected: int) -> bytes:
    decompressor = zlib.decompressobj()
    try:
        out = decompressor.decompress(data, expected + 1)
    except zlib.error as error:
        raise _damaged(pipe, offset, f"gzip: {error}") from None
    if len(out) > expected:
        raise UnreadableNodeError(
            f"{pipe.path}: the gzip chunk at {offset} decompresses to more than {expected} "
            f"bytes, what a chunk of shape {pipe.chunk} holds: not read"
        )
    if not decompressor.eof:
        raise _damaged(pipe, offset, "gzip: the stream is truncated")
    if len(out) != expected:
        raise _damaged(pipe, offset, f"gzip: {len(out)} bytes, not {expected}")
    return out


def _check_zstd(pipe: Pipeline, offset: tuple[int, ...], data: bytes, expected: int) -> None:
    try:
        size = zstd_content_size(data[:_ZSTD_HEADER_BYTES])
    except ValueError as error:
        raise _damaged(pipe, offset, f"zstd: {error}") from None
    if size != expected:
        declared = "an undeclared number of" if size is None else str(size)
        raise UnreadableNodeError(
            f"{pipe.path}: the zstd chunk at {offset} declares {declared} bytes; a chunk of "
            f"shape {pipe.chunk} holds {expected}: not read"
        )


def _unshuffle(data: bytes, item: int) -> bytes:
    # HDF5's shuffle stores byte k of every item together; a remainder is left as it is.
    raw = np.frombuffer(data, dtype=np.uint8)
    items = raw.size // item
    if item == 1 or items == 0:
        return data
    body = raw[: items * item].reshape(item, items).T.tobytes()
    return body + data[items * item :]


def _damaged(pipe: Pipeline, offset: tuple[int, ...], why: str) -> UnreadableNodeError:
    return UnreadableNodeError(f"{pipe.path}: the chunk at {offset} is damaged: {why}")


def _chunk_slices(
    offset: tuple[int, ...], chunk: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    # The part of the array a chunk covers, and the part of the chunk that is in the array.
    target: list[slice] = []
    source: list[slice] = []
    for start, length, size in zip(offset, chunk, shape, strict=True):
        if start >= size:
            return None  # left from before the dataset shrank: not part of it
        stop = min(start + length, size)
        target.append(slice(start, stop))
        source.append(slice(0, stop - start))
    return tuple(target), tuple(source)


def _checked_offset(pipe: Pipeline, offset: tuple[int, ...]) -> tuple[int, ...]:
    if len(offset) != len(pipe.chunk) or any(
        at % length for at, length in zip(offset, pipe.chunk, strict=False)
    ):
        raise _damaged(pipe, offset, "not at a chunk boundary")
    return offset


def read_decoded(
    dataset: h5d.DatasetID, pipe: Pipeline, out: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Fills ``out`` (the dataset's shape, its dtype) with the dataset, decoded chunk by chunk.

    Only for a :attr:`Pipeline.decodable` pipeline and a dtype laid out as the file's type.

    Raises:
        UnreadableNodeError: A chunk decompresses beyond a chunk's size, or is damaged.
    """
    stored = _stored_chunks(dataset)
    shape = out.shape
    grid = math.prod(-(-size // length) for size, length in zip(shape, pipe.chunk, strict=True))
    if len(stored) < grid:
        # Chunks never written hold the fill value.
        fill = np.zeros(1, dtype=out.dtype)
        dataset.get_create_plist().get_fill_value(fill)
        out[...] = fill[0]
    for offset, mask in stored:
        _checked_offset(pipe, offset)
        where = _chunk_slices(offset, pipe.chunk, shape)
        if where is None:
            continue
        _mask, raw = dataset.read_direct_chunk(offset)
        data = _decode(pipe, offset, mask, raw, whole=True)
        assert data is not None  # a decodable pipeline is decoded whole
        block = np.frombuffer(data, dtype=out.dtype).reshape(pipe.chunk)
        target, source = where
        out[target] = block[source]
    return out


def check_chunks(
    dataset: h5d.DatasetID, pipe: Pipeline, selection: tuple[slice, ...] | None = None
) -> None:
    """Checks that the chunks ``selection`` touches (default: all) decode within their size.

    Raises:
        UnreadableNodeError: A chunk decompresses beyond a chunk's size, or is damaged.
    """
    if not any(code in (DEFLATE, ZSTD) for code, _ in pipe.filters):
        return  # shuffle, fletcher32 and lzf: nothing to check chunk by chunk
    if selection is None:
        chunks: Iterator[tuple[tuple[int, ...], int | None]] = (
            (offset, mask) for offset, mask in _stored_chunks(dataset)
        )
    else:
        shape = dataset.shape
        assert shape is not None  # a chunked dataset has a shape
        chunks = ((offset, None) for offset in _touched(pipe.chunk, shape, selection))
    for offset, mask in chunks:
        _checked_offset(pipe, offset)
        if mask is None:
            info = dataset.get_chunk_info_by_coord(offset)
            if info.byte_offset is None:
                continue  # never written: the fill value
        found_mask, raw = dataset.read_direct_chunk(offset)
        _decode(pipe, offset, found_mask if mask is None else mask, raw, whole=False)


def _touched(
    chunk: tuple[int, ...], shape: tuple[int, ...], selection: tuple[slice, ...]
) -> Iterator[tuple[int, ...]]:
    # The offsets of the chunks holding an index a block selects, on each axis: with a step of
    # a chunk or more, one chunk per index, not every chunk between the first and the last.
    ranges: list[Sequence[int]] = []
    for length, size, part in zip(chunk, shape, selection, strict=True):
        indices = range(*part.indices(size))
        if not indices:
            return iter(())
        if abs(indices.step) >= length:
            ranges.append(sorted(index // length * length for index in indices))
            continue
        first, last = min(indices[0], indices[-1]), max(indices[0], indices[-1])
        ranges.append(range(first // length * length, last + 1, length))
    return itertools.product(*ranges)
