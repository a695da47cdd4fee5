"""The sides of the Zarr figures of ``run.py``: ZarrStorage against raw zarr, HashedZarr against
HashedHDF5, and writer processes. Each side returns ``{metric: seconds}`` for one round."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from corelay.io._zarr.write import chunk_shape
from corelay.io.journal import open_journaled
from corelay.io.storage import HashedHDF5, HashedZarr, ZarrStorage

Side = Callable[[], dict[str, float]]
_ROOT = Path(__file__).resolve().parent.parent


def _timed(operation: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


def big_sides(directory: Path, data: np.ndarray) -> tuple[dict[str, Side], dict[str, Side]]:
    """ZarrStorage and raw zarr (zstd, the same chunks): the write sides, then the read sides.

    Both sides do the same work in their timings: a write empties the store (``'w'``; raw zarr
    removes the directory) and writes ``data``; a read opens the store and reads the array
    whole. The reads are measured apart from the writes, once both stores are written (as for
    the HDF5 figures), so that no read follows its own side's write: what a 256 MiB write
    leaves behind (dirty pages being written back, memory being given back) would otherwise
    fall on one side's read and not the other's, differently from round to round.
    """
    chunks = chunk_shape(data.shape, data.dtype.itemsize)
    ours, raw = directory / "ours.zarr", directory / "raw.zarr"

    def ours_write() -> dict[str, float]:
        def write() -> None:
            with ZarrStorage(ours, "w") as storage:
                storage["a"] = data

        return {"write": _timed(write)}

    def raw_write() -> dict[str, float]:
        def write() -> None:
            shutil.rmtree(raw, ignore_errors=True)
            array = zarr.create_array(
                str(raw), shape=data.shape, dtype=data.dtype, chunks=chunks, compressors=ZstdCodec()
            )
            array[...] = data

        return {"write": _timed(write)}

    def ours_read() -> dict[str, float]:
        def read() -> None:
            with ZarrStorage(ours, "r") as storage:
                storage["a"]

        return {"read": _timed(read)}

    def raw_read() -> dict[str, float]:
        return {"read": _timed(lambda: zarr.open_array(str(raw), mode="r")[...])}

    return {"ours": ours_write, "zarr": raw_write}, {"ours": ours_read, "zarr": raw_read}


def small_sides(directory: Path, count: int) -> dict[str, Side]:
    """HashedZarr and HashedHDF5, each writing then reading ``count`` small entries."""
    outputs = [np.full(16, index, dtype=np.float64) for index in range(count)]
    zarr_path, hdf5_path = directory / "cache.zarr", directory / "cache.h5"

    def run(cache: HashedZarr | HashedHDF5) -> dict[str, float]:
        def write() -> None:
            for index, output in enumerate(outputs):
                cache.write(output, index, None)

        def read() -> None:
            for index in range(count):
                cache.read(index, None)

        return {"write": _timed(write), "read": _timed(read)}

    def zarr_side() -> dict[str, float]:
        shutil.rmtree(zarr_path, ignore_errors=True)
        return run(HashedZarr(zarr_path))

    def hdf5_side() -> dict[str, float]:
        file = open_journaled(hdf5_path, "w")
        try:
            return run(HashedHDF5(file))
        finally:
            file.close()

    return {"ours": zarr_side, "hdf5": hdf5_side}


_WRITER = """
import sys, numpy as np
from corelay.io.storage import HashedZarr
cache = HashedZarr(sys.argv[1])
process, count = int(sys.argv[2]), int(sys.argv[3])
for index in range(count):
    cache.write(np.full(16, index, dtype=np.float64), (process, index), None)
"""


def process_sides(directory: Path, count: int, workers: int) -> dict[str, Side]:
    """``workers`` processes and one process, each writing ``count`` entries into a HashedZarr;
    the metric is the seconds per write of all processes together."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT / "src"), *sys.path])}

    def side(running: int) -> Side:
        def measure() -> dict[str, float]:
            path = directory / f"processes-{running}.zarr"
            shutil.rmtree(path, ignore_errors=True)
            start = time.perf_counter()
            started = [
                subprocess.Popen(
                    [sys.executable, "-c", _WRITER, str(path), str(process), str(count)], env=env
                )
                for process in range(running)
            ]
            if any(process.wait() != 0 for process in started):
                raise RuntimeError("a HashedZarr writer process failed")
            return {"per write": (time.perf_counter() - start) / (running * count)}

        return measure

    return {"ours": side(workers), "one": side(1)}


def append_sides(directory: Path, batches: list[np.ndarray]) -> dict[str, Side]:
    """ZarrStorage.append and raw zarr's ``Array.append`` (zstd, the same chunks), each appending
    ``batches`` to a new array; the metric is the seconds of all appends."""
    chunks = chunk_shape((2**62, *batches[0].shape[1:]), batches[0].dtype.itemsize)
    ours, raw = directory / "append-ours.zarr", directory / "append-raw.zarr"

    def ours_side() -> dict[str, float]:
        shutil.rmtree(ours, ignore_errors=True)
        with ZarrStorage(ours, "w") as storage:

            def append() -> None:
                for batch in batches:
                    storage.append("data", batch)

            return {"time": _timed(append)}

    def raw_side() -> dict[str, float]:
        shutil.rmtree(raw, ignore_errors=True)

        def append() -> None:
            array = zarr.create_array(
                str(raw),
                shape=(0, *batches[0].shape[1:]),
                dtype=batches[0].dtype,
                chunks=chunks,
                compressors=ZstdCodec(),
                # Every chunk written, as the storage writes them (zarr's default first compares
                # each chunk with the fill value, and skips writing it if equal).
                config={"write_empty_chunks": True},
            )
            for batch in batches:
                array.append(batch)

        return {"time": _timed(append)}

    return {"ours": ours_side, "zarr": raw_side}


def slice_sides(
    directory: Path, rows: int, row_shape: tuple[int, ...], starts: list[int], length: int
) -> dict[str, Side]:
    """Slices of ``length`` rows at ``starts``: through ZarrStorage.lazy, and through raw zarr on
    the very array the storage wrote (same codec, same chunks)."""
    path = directory / "slices.zarr"
    shutil.rmtree(path, ignore_errors=True)
    with ZarrStorage(path, "w") as storage:
        for start in range(0, rows, 64):
            count = min(64, rows - start)
            block = np.arange(start, start + count, dtype=np.float32)
            storage.append(
                "maps",
                np.broadcast_to(
                    block.reshape(-1, *[1] * len(row_shape)), (count, *row_shape)
                ).copy(),
            )
    pointer = zarr.open_group(str(path / "maps"), mode="r").attrs["corelay.value"]
    value = path / "maps" / str(pointer)

    def ours_side() -> dict[str, float]:
        with ZarrStorage(path, "r") as storage:
            lazy = storage.lazy("maps")

            def read() -> None:
                for start in starts:
                    lazy[start : start + length]

            return {"time": _timed(read)}

    def raw_side() -> dict[str, float]:
        array = zarr.open_array(str(value), mode="r")

        def read() -> None:
            for start in starts:
                array[start : start + length]

        return {"time": _timed(read)}

    return {"ours": ours_side, "zarr": raw_side}
