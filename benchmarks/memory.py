"""Extra peak memory of one large operation, measured in a fresh process.

``benchmarks/run.py`` starts this script once per memory figure, so that nothing else the
benchmarks allocated inflates the peak::

    python benchmarks/memory.py hash --mib 256
    python benchmarks/memory.py hdf5-write --mib 512 --dir DIRECTORY
    python benchmarks/memory.py append --mib 2048 --dir DIRECTORY      # as 64 MiB batches
    python benchmarks/memory.py lazy-slice --mib 512 --dir DIRECTORY   # 40 rows of it
    python benchmarks/memory.py replace --mib 128 --dir DIRECTORY      # four times

It builds a float64 array of the given size, warms the operation up on a small array (imports,
HDF5 initialisation), then measures the operation on the large array twice:

* resident memory: the peak resident set size (``VmHWM``, reset through
  ``/proc/self/clear_refs`` just before) minus the resident set size before the operation;
  where the peak cannot be reset, ``ru_maxrss`` is used instead, which may read low;
* traced memory: the peak of :mod:`tracemalloc` (which sees NumPy's array buffers) minus the
  traced memory before the operation.

Both are checked first on an allocation of known size (16 MiB), reported as
``rss_check_bytes`` and ``traced_check_bytes``. It prints one line of JSON: ``{"array_bytes": ...,
"rss_bytes": ..., "traced_bytes": ..., "rss_method": ..., "rss_check_bytes": ...,
"traced_check_bytes": ...}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Array = np.ndarray[Any, np.dtype[Any]]


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        _status_kib("VmHWM")
    except OSError:
        return False
    return True


def rss_extra(operation: Callable[[], object]) -> tuple[int, str]:
    """The peak resident memory that ``operation`` adds, in bytes, and how it was measured."""
    gc.collect()
    if _reset_peak_rss():
        before = _status_kib("VmRSS")
        operation()
        return max(_status_kib("VmHWM") - before, 0) * 1024, "VmHWM"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    operation()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(after - before, 0) * 1024, "ru_maxrss"


def traced_extra(operation: Callable[[], object]) -> int:
    """The peak memory that ``operation`` allocates as seen by tracemalloc, in bytes."""
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        operation()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(peak - before, 0)


def big_array(mib: int, seed: int = 2) -> Array:
    """A float64 array of ``mib`` MiB (random normal values), every page touched."""
    return np.random.default_rng(seed).standard_normal(mib * 2**20 // 8)


def _measure_hash(array: Array) -> tuple[int, str, int]:
    from corelay.io.hashing import ext_hash

    ext_hash(np.zeros(8))  # warm-up
    rss, method = rss_extra(lambda: ext_hash(array))
    return rss, method, traced_extra(lambda: ext_hash(array))


def _measure_hdf5_write(array: Array, directory: str) -> tuple[int, str, int]:
    from corelay.io.storage import HDF5Storage

    paths = [os.path.join(directory, f"memory-{index}.h5") for index in range(3)]
    storages = [HDF5Storage(path, "w") for path in paths]
    try:
        storages[0]["data"] = np.zeros(8)  # warm-up

        def write(storage: HDF5Storage) -> Callable[[], object]:
            def operation() -> None:
                storage["data"] = array

            return operation

        rss, method = rss_extra(write(storages[1]))
        traced = traced_extra(write(storages[2]))
    finally:
        for storage in storages:
            storage.close()
        for path in paths:
            for name in (path, path + ".journal"):
                if os.path.exists(name):
                    os.remove(name)
    return rss, method, traced


BATCH_MIB = 64
#: Rows of the arrays of the lazy-slice measurement: attribution maps, 3 x 224 x 224 float32.
MAP_SHAPE = (3, 224, 224)
SLICE_ROWS = 40


def _measure_append(mib: int, directory: str) -> tuple[int, str, int, int]:
    """Appends ``mib`` MiB in batches of 64 MiB, each made just before its append."""
    from corelay.io.storage import HDF5Storage

    batches = max(mib // BATCH_MIB, 1)
    rows = BATCH_MIB * 2**20 // 8 // 1024

    def append(path: str) -> Callable[[], object]:
        def operation() -> None:
            with HDF5Storage(path, "w") as storage:
                for index in range(batches):
                    storage.append("data", np.full((rows, 1024), float(index)))

        return operation

    path = os.path.join(directory, "memory-append.h5")
    try:
        append(path)()  # warm-up, and the page cache of a file that size
        rss, method = rss_extra(append(path))
        traced = traced_extra(append(path))
    finally:
        _remove(path)
    return rss, method, traced, rows * 1024 * 8


def _measure_lazy_slice(mib: int, directory: str) -> tuple[int, str, int, int]:
    """Reads 40 rows of a ``mib`` MiB array of attribution maps through ``lazy``."""
    from corelay.io.storage import HDF5Storage

    row = int(np.prod(MAP_SHAPE))
    count = max(mib * 2**20 // 4 // row, 2 * SLICE_ROWS)
    path = os.path.join(directory, "memory-lazy.h5")
    with HDF5Storage(path, "w") as storage:
        for start in range(0, count, 64):  # written in batches: no big array in this process
            rows = min(64, count - start)
            storage.append("maps", np.full((rows, *MAP_SHAPE), start, dtype=np.float32))
    try:
        with HDF5Storage(path, "r") as storage:
            middle = count // 2

            def read() -> None:
                block = storage.lazy("maps")[middle : middle + SLICE_ROWS]
                assert block.shape == (SLICE_ROWS, *MAP_SHAPE)

            read()  # warm-up
            rss, method = rss_extra(read)
            traced = traced_extra(read)
    finally:
        _remove(path)
    return rss, method, traced, count * row * 4


def _measure_replace(array: Array, directory: str) -> tuple[int, str, int]:
    """Replaces the value of one key four times with ``array``."""
    from corelay.io.storage import HDF5Storage

    paths = [os.path.join(directory, f"memory-replace-{index}.h5") for index in range(2)]
    storages = [HDF5Storage(path, "w") for path in paths]
    try:

        def replace(storage: HDF5Storage) -> Callable[[], object]:
            def operation() -> None:
                for _ in range(4):
                    storage["data"] = array

            return operation

        for storage in storages:  # the first write of the key, and the free space it leaves
            storage["data"] = array
            storage["data"] = array
        rss, method = rss_extra(replace(storages[0]))
        traced = traced_extra(replace(storages[1]))
    finally:
        for storage in storages:
            storage.close()
        for path in paths:
            _remove(path)
    return rss, method, traced


def _remove(path: str) -> None:
    for name in (path, path + ".journal"):
        if os.path.exists(name):
            os.remove(name)


def main(argv: Sequence[str] | None = None) -> None:
    """Measures one operation and prints the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "operation", choices=["hash", "hdf5-write", "append", "lazy-slice", "replace"]
    )
    parser.add_argument("--mib", type=int, required=True, help="size of the array in MiB")
    parser.add_argument("--dir", default=".", help="directory for the files (hdf5-write)")
    args = parser.parse_args(argv)
    check = 16 * 2**20
    rss_check, _ = rss_extra(lambda: np.ones(check // 8))
    traced_check = traced_extra(lambda: np.ones(check // 8))
    if args.operation == "append":
        # Measured against one batch: the bound is in batches.
        rss, method, traced, array_bytes = _measure_append(args.mib, args.dir)
    elif args.operation == "lazy-slice":
        rss, method, traced, total = _measure_lazy_slice(args.mib, args.dir)
        array_bytes = total
    else:
        array = big_array(args.mib)
        array_bytes = array.nbytes
        if args.operation == "hash":
            rss, method, traced = _measure_hash(array)
        elif args.operation == "replace":
            rss, method, traced = _measure_replace(array, args.dir)
        else:
            rss, method, traced = _measure_hdf5_write(array, args.dir)
    print(
        json.dumps(
            {
                "array_bytes": array_bytes,
                "rss_bytes": rss,
                "traced_bytes": traced,
                "rss_method": method,
                "rss_check_bytes": rss_check,
                "traced_check_bytes": traced_check,
            }
        )
    )


if __name__ == "__main__":
    main()
