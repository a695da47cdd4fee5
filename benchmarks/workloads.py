"""Small-operation workloads that the benchmarks run against two versions of corelay.

Both sides of a comparison run the same functions on the same data: the data is generated here
from fixed seeds, and the storage classes under test are passed in. This module needs only NumPy,
h5py and the corelay under test, so that an interpreter with another corelay installed (for
example corelay 1.0.0) can run it as a script; it then times that corelay's ``HashedHDF5`` and
``HDF5Storage`` and prints the timings as one line of JSON::

    python benchmarks/workloads.py --ops 2000 --dir DIRECTORY

``benchmarks/run.py --against-python PYTHON`` does this once per round, alternating with the
same workloads run in-process with this checkout's classes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, NamedTuple, Protocol

import h5py
import numpy as np

Array = np.ndarray[Any, np.dtype[Any]]

#: Elements of each small array (float32).
SMALL_SIZE = 100
#: Shape of each input of a cached step (float32): a small image.
INPUT_SHAPE = (3, 16, 16)


class HashedItem(NamedTuple):
    """One cached step: its output, its input and its identifying metadata."""

    data_out: Array
    data_in: Array
    meta: dict[str, Any]


class HashedCache(Protocol):
    """What both corelays' ``HashedHDF5`` offer."""

    def write(self, data_out: Any, data_in: Any, meta: Any) -> None: ...

    def read(self, data_in: Any, meta: Any) -> Any: ...


class KeyValueStorage(Protocol):
    """What both corelays' ``HDF5Storage`` offer."""

    @property
    def io(self) -> Any: ...

    def __setitem__(self, key: str, value: Any, /) -> None: ...

    def __getitem__(self, key: str, /) -> Any: ...

    def close(self) -> None: ...


#: ``(path, mode) -> h5py.File``, e.g. ``h5py.File`` itself.
FileOpener = Callable[[str, str], h5py.File]
#: ``h5group -> HashedHDF5``.
HashedFactory = Callable[[h5py.Group], HashedCache]
#: ``(path, mode) -> HDF5Storage``.
StorageFactory = Callable[[str, str], KeyValueStorage]


def small_arrays(count: int, seed: int = 6) -> list[Array]:
    """``count`` float32 arrays of :data:`SMALL_SIZE` elements, the same for a given seed."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SMALL_SIZE, dtype=np.float32) for _ in range(count)]


def small_keys(count: int) -> list[str]:
    """The distinct keys the small arrays are stored under."""
    return [f"a{index:05d}" for index in range(count)]


#: Distinct metadata dicts among the cached steps, as in a pipeline of a few processors.
FEW_METAS = 4


def hashed_items(count: int, seed: int = 8, *, distinct_metas: bool = False) -> list[HashedItem]:
    """``count`` cached steps: small array outputs, array inputs and metadata dicts.

    The metadata dicts take :data:`FEW_METAS` distinct values, or with ``distinct_metas`` a
    distinct one for every step (a parameter sweep, say).
    """
    rng = np.random.default_rng(seed)
    return [
        HashedItem(
            data_out=rng.standard_normal(SMALL_SIZE, dtype=np.float32),
            data_in=rng.standard_normal(INPUT_SHAPE, dtype=np.float32),
            meta={
                "processor": "attribution",
                "epsilon": 1e-6,
                "layer": index if distinct_metas else index % FEW_METAS,
            },
        )
        for index in range(count)
    ]


def _check(results: Sequence[Any], expected: Sequence[Array], what: str) -> None:
    if len(results) != len(expected):
        raise AssertionError(f"{what}: {len(results)} results for {len(expected)} operations")
    for index, (result, array) in enumerate(zip(results, expected, strict=True)):
        if not np.array_equal(np.asarray(result), array):
            raise AssertionError(f"{what}: operation {index} read back other data")


def _remove(path: str) -> None:
    for name in (path, path + ".journal"):
        if os.path.exists(name):
            os.remove(name)


def time_hashed(
    make_cache: HashedFactory, open_file: FileOpener, path: str, items: Sequence[HashedItem]
) -> dict[str, float]:
    """Times writing every item into a fresh file, then reading every item back.

    The writes are followed by one ``flush()``, inside the timing, so that both sides end with
    the data in the file. The reads reopen the file read-only. The file is removed afterwards.

    Returns:
        ``{'write': seconds, 'read': seconds}``.
    """
    file = open_file(path, "w")
    try:
        cache = make_cache(file.require_group("cache"))
        gc.collect()
        start = time.perf_counter()
        for item in items:
            cache.write(item.data_out, item.data_in, item.meta)
        file.flush()
        write = time.perf_counter() - start
    finally:
        file.close()
    file = open_file(path, "r")
    try:
        group = file["cache"]
        if not isinstance(group, h5py.Group):
            raise AssertionError("the cache group is a dataset")
        cache = make_cache(group)
        results: list[Any] = []
        gc.collect()
        start = time.perf_counter()
        for item in items:
            results.append(cache.read(item.data_in, item.meta))
        read = time.perf_counter() - start
    finally:
        file.close()
    _remove(path)
    _check(results, [item.data_out for item in items], "HashedHDF5")
    return {"write": write, "read": read}


def time_storage(
    open_storage: StorageFactory, path: str, arrays: Sequence[Array]
) -> dict[str, float]:
    """Times ``storage[key] = array`` for every array into a fresh file, then reading them back.

    The writes are followed by one ``storage.io.flush()``, inside the timing. The reads reopen
    the file read-only. The file is removed afterwards.

    Returns:
        ``{'write': seconds, 'read': seconds}``.
    """
    keys = small_keys(len(arrays))
    storage = open_storage(path, "w")
    try:
        gc.collect()
        start = time.perf_counter()
        for key, array in zip(keys, arrays, strict=True):
            storage[key] = array
        storage.io.flush()
        write = time.perf_counter() - start
    finally:
        storage.close()
    storage = open_storage(path, "r")
    try:
        results: list[Any] = []
        gc.collect()
        start = time.perf_counter()
        for key in keys:
            results.append(storage[key])
        read = time.perf_counter() - start
    finally:
        storage.close()
    _remove(path)
    _check(results, arrays, "HDF5Storage")
    return {"write": write, "read": read}


def main(argv: Sequence[str] | None = None) -> None:
    """Times the installed corelay on both workloads and prints the timings as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=2000, help="operations per workload")
    parser.add_argument("--dir", required=True, help="an existing directory for the files")
    args = parser.parse_args(argv)
    from corelay.io.storage import HashedHDF5, HDF5Storage

    ops: int = args.ops
    directory: str = args.dir
    hashed = time_hashed(
        HashedHDF5, h5py.File, os.path.join(directory, "hashed.h5"), hashed_items(ops)
    )
    distinct = time_hashed(
        HashedHDF5,
        h5py.File,
        os.path.join(directory, "distinct.h5"),
        hashed_items(ops, distinct_metas=True),
    )
    storage = time_storage(HDF5Storage, os.path.join(directory, "storage.h5"), small_arrays(ops))
    print(
        json.dumps(
            {
                "corelay": metadata.version("corelay"),
                "hashed_write": hashed["write"],
                "hashed_read": hashed["read"],
                "hashed_distinct_write": distinct["write"],
                "hashed_distinct_read": distinct["read"],
                "storage_write": storage["write"],
                "storage_read": storage["read"],
            }
        )
    )


if __name__ == "__main__":
    main()
