"""Arrays read a slice at a time from the storage that holds them.

:class:`LazyArray` is what ``storage.lazy(key)`` puts in place of each array of a stored tree.
It holds no data: indexing it reads the part it selects (only the chunks that part touches, for
a chunked dataset), and ``numpy.asarray`` reads it whole. It works for any backend that gives it
an :class:`ArraySource`: a stored array with a shape and a dtype, read by basic slices, and a
way to tell whether its storage is still open.
"""

import operator
from types import EllipsisType
from typing import Any, Protocol, SupportsIndex, TypeAlias, final, runtime_checkable

import numpy as np

__all__ = ["ArraySource", "Index", "LazyArray"]

#: One item of a basic NumPy index.
IndexItem: TypeAlias = SupportsIndex | slice | EllipsisType | None
#: A basic NumPy index: an item, or a tuple of them.
Index: TypeAlias = IndexItem | tuple[IndexItem, ...]


@runtime_checkable
class ArraySource(Protocol):
    """One stored array, as a backend gives it to :class:`LazyArray`."""

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        ...

    @property
    def dtype(self) -> np.dtype[Any]:
        """The array's dtype."""
        ...

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """The shape of the chunks it is stored in, ``None`` if it is not chunked."""
        ...

    @property
    def compression(self) -> str | None:
        """The compression of its chunks, ``None`` if it is not compressed."""
        ...

    @property
    def where(self) -> str:
        """How errors name the array (its path, and its file or store)."""
        ...

    def alive(self) -> bool:
        """Tells whether the storage that holds the array is open."""
        ...

    def read(self, selection: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        """Reads the block ``selection`` selects.

        ``selection`` has one slice per axis, with a positive step, and none is empty.
        """
        ...


@final
class LazyArray:
    """A read-only stored array, read only as far as it is indexed.

    It has the array's ``shape``, ``dtype``, ``ndim``, ``size``, ``nbytes`` and ``len()``, and
    how it is stored (``chunks``, ``compression``). Indexing with NumPy basic indexing (ints,
    slices of any step, ``...`` and ``None``) reads only the selected part, as an array (a NumPy
    scalar when every axis is indexed by an int); ``numpy.asarray(lazy)`` reads it whole. It
    works with ``dask.array.from_array(lazy, chunks=...)``. Any use once its storage is closed
    raises :class:`ValueError`.

    Args:
        source: The stored array.
    """

    __slots__ = ("_source",)

    def __init__(self, source: ArraySource) -> None:
        self._source = source

    def _open(self) -> ArraySource:
        source = self._source
        if not source.alive():
            raise ValueError(f"LazyArray of {source.where}: its storage is closed")
        return source

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape.

        Raises:
            ValueError: The storage is closed.
        """
        return self._open().shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """The array's dtype.

        Raises:
            ValueError: The storage is closed.
        """
        return self._open().dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """The number of elements."""
        size = 1
        for length in self.shape:
            size *= length
        return size

    @property
    def nbytes(self) -> int:
        """The bytes the whole array takes in memory (not in the file)."""
        return self.size * self.dtype.itemsize

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """The shape of the chunks it is stored in; ``None`` if it is stored in one piece."""
        return self._open().chunks

    @property
    def compression(self) -> str | None:
        """The compression of its chunks (``'gzip'``, ``'lzf'``, ``'zstd'``), or ``None``."""
        return self._open().compression

    def __len__(self) -> int:
        """The length of the first axis.

        Raises:
            TypeError: The array is 0-d.
            ValueError: The storage is closed.
        """
        shape = self.shape
        if not shape:
            raise TypeError("len() of a 0-d LazyArray")
        return shape[0]

    def __repr__(self) -> str:
        source = self._source
        return f"LazyArray(shape={source.shape}, dtype={source.dtype}, {source.where})"

    def __getitem__(self, index: Index) -> Any:
        """Reads the part of the array ``index`` selects, with NumPy's basic indexing.

        Raises:
            IndexError: An index out of bounds, or more indices than axes.
            TypeError: Advanced indexing (arrays, lists, booleans): read the array, or a slice
                of it, first.
            ValueError: The storage is closed.
        """
        source = self._open()
        selection, post, counts = _basic(index, source.shape)
        if 0 in counts:
            block: np.ndarray[Any, Any] = np.empty(counts, dtype=source.dtype)
        else:
            block = source.read(selection)
        if all(item == slice(None) for item in post):
            return block
        return block[post]

    def __setitem__(self, index: Index, value: object) -> None:
        """Refuses: a LazyArray is read-only (write through the storage).

        Raises:
            TypeError: Always.
        """
        raise TypeError(f"LazyArray of {self._source.where} is read-only")

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        """Reads the whole array (NumPy's conversion protocol).

        Raises:
            ValueError: ``copy=False`` (the array is not in memory), or the storage is closed.
        """
        if copy is False:
            raise ValueError("a LazyArray cannot be converted without reading it (copy=False)")
        array: np.ndarray[Any, Any] = self[...]
        return array if dtype is None else array.astype(dtype, copy=False)


def _basic(
    index: Index, shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[int | slice | None, ...], tuple[int, ...]]:
    """Splits a basic index into a block to read and what to do with it in memory.

    Returns:
        The block (one positive-step slice per axis), the index that turns the block into the
        result (ints, reversals and new axes), and the block's shape.
    """
    items: tuple[Any, ...] = index if isinstance(index, tuple) else (index,)
    ellipses = sum(1 for item in items if item is Ellipsis)
    if ellipses > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for item in items if item is not None and item is not Ellipsis)
    if used > len(shape):
        raise IndexError(
            f"too many indices for array: array is {len(shape)}-dimensional, but {used} were "
            "indexed"
        )
    if not ellipses:
        items = (*items, Ellipsis)
    selection: list[slice] = []
    post: list[int | slice | None] = []
    counts: list[int] = []
    axis = 0
    for item in items:
        if item is None:
            post.append(None)
            continue
        if item is Ellipsis:
            for _ in range(len(shape) - used):
                selection.append(slice(0, shape[axis], 1))
                counts.append(shape[axis])
                post.append(slice(None))
                axis += 1
            continue
        length = shape[axis]
        if isinstance(item, slice):
            start, stop, step = item.indices(length)
            span = range(start, stop, step)
            count = len(span)
            if count == 0:
                selection.append(slice(0, 0, 1))
                post.append(slice(None))
            elif step > 0:
                selection.append(slice(span[0], span[-1] + 1, step))
                post.append(slice(None))
            else:
                selection.append(slice(span[-1], span[0] + 1, -step))
                post.append(slice(None, None, -1))
            counts.append(count)
        else:
            if isinstance(item, bool) or type(item) is np.bool_ or not hasattr(item, "__index__"):
                raise TypeError(
                    f"LazyArray takes basic indexing only (ints, slices, ..., None), not "
                    f"{type(item).__name__}: index a slice read into memory for more"
                )
            position = operator.index(item)
            if not -length <= position < length:
                raise IndexError(
                    f"index {position} is out of bounds for axis {axis} with size {length}"
                )
            position %= length
            selection.append(slice(position, position + 1, 1))
            post.append(0)
            counts.append(1)
        axis += 1
    return tuple(selection), tuple(post), tuple(counts)
