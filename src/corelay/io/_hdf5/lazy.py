"""HDF5 datasets as sources of :class:`~corelay.io.lazy.LazyArray`."""

import math
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5p

from corelay.io._hdf5.chunks import check_chunks, pipeline
from corelay.io.errors import UnreadableNodeError
from corelay.io.tree import DEFAULT_MAX_READ_BYTES

#: The filters the storages write, by HDF5 filter id.
_FILTER_NAMES = {1: "gzip", 32000: "lzf", 32015: "zstd"}
_SHUFFLE = 2  # a byte reordering before compression, not a compression itself
_FLETCHER32 = 3


def compression_of(plist: h5p.PropID) -> str | None:
    """The compression of a dataset with creation properties ``plist``, or ``None``.

    A filter the storages do not write is named by its HDF5 id, as ``'filter 307'``.
    """
    if plist.get_layout() != h5d.CHUNKED:
        return None
    names: list[str] = []
    for index in range(plist.get_nfilters()):
        code = plist.get_filter(index)[0]
        if code not in (_SHUFFLE, _FLETCHER32):
            names.append(_FILTER_NAMES.get(code, f"filter {code}"))
    return "+".join(names) or None


def chunks_of(plist: h5p.PropID) -> tuple[int, ...] | None:
    """The chunk shape of a dataset with creation properties ``plist``, or ``None``."""
    if plist.get_layout() != h5d.CHUNKED:
        return None
    return tuple(int(length) for length in plist.get_chunk())


class DatasetSource:
    """A numeric HDF5 dataset of one or more dimensions, read by slices.

    Args:
        dataset: The dataset.
        where: How errors name it.
        alive: Tells whether the storage that opened it is open.
        any_filter: Read chunks through filters whose output size cannot be checked.
        max_bytes: The most a filtered chunk larger than the whole dataset may hold.

    Raises:
        UnreadableNodeError: A filter whose output cannot be bounded, without ``any_filter``, or
            filtered chunks beyond both the dataset's size and ``max_bytes``.
    """

    def __init__(
        self,
        dataset: h5d.DatasetID,
        where: str,
        alive: Callable[[], bool],
        any_filter: bool = False,
        max_bytes: int = DEFAULT_MAX_READ_BYTES,
    ) -> None:
        self._dataset = h5py.Dataset(dataset)
        self._alive = alive
        shape = dataset.shape
        assert shape is not None  # only datasets with a shape are read lazily
        self.shape: tuple[int, ...] = shape
        self.dtype: np.dtype[Any] = dataset.dtype
        plist = dataset.get_create_plist()
        self.chunks = chunks_of(plist)
        self.compression = compression_of(plist)
        self.where = where
        # The chunks a slice touches are checked before HDF5 decodes them.
        self._pipeline = pipeline(dataset, where, any_filter)
        if self._pipeline is not None and self.chunks is not None:
            # A filtered chunk is decoded whole, however little of it a slice selects.
            chunk_bytes = math.prod(self.chunks) * self.dtype.itemsize
            if chunk_bytes > max(math.prod(shape) * self.dtype.itemsize, max_bytes):
                raise UnreadableNodeError(
                    f"{where}: a chunk of {chunk_bytes} bytes, beyond the dataset and "
                    f"max_read_bytes = {max_bytes}"
                )

    def alive(self) -> bool:
        """Tells whether the storage and the dataset are open."""
        return self._alive() and bool(self._dataset.id.valid)

    def read(self, selection: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        """Reads the block ``selection`` selects; only the chunks it touches are read.

        Raises:
            UnreadableNodeError: A chunk it touches decodes beyond a chunk's size, or is damaged.
        """
        if self._pipeline is not None:
            check_chunks(self._dataset.id, self._pipeline, selection)
        block: np.ndarray[Any, Any] = self._dataset[selection]
        return block
