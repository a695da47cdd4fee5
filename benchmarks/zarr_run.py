"""Zarr figures: ZarrStorage against raw zarr, HashedZarr against HashedHDF5, processes.

    python benchmarks/zarr_run.py            # 256 MiB, 2000 small entries, 4 processes
    python benchmarks/zarr_run.py --smoke    # seconds: only checks that it works

Every figure is a ratio of medians measured in one run, on the same data, alternating sides.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from corelay.io._zarr import chunk_shape
from corelay.io.journal import open_journaled
from corelay.io.storage import HashedHDF5, HashedZarr, ZarrStorage

_ROOT = Path(__file__).parent.parent


def _median(operation: Callable[[], object], rounds: int) -> float:
    times: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        operation()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def big(directory: Path, mib: int, rounds: int) -> list[str]:
    """ZarrStorage write and read of ``mib`` MiB / raw zarr, zstd, the same chunks."""
    data = np.random.default_rng(0).standard_normal((mib * 2**20 // 8 // 1024, 1024))
    chunks = chunk_shape(data.shape, data.dtype.itemsize)
    ours, raw = directory / "ours.zarr", directory / "raw.zarr"

    def write_ours() -> None:
        with ZarrStorage(ours, "w") as storage:
            storage["a"] = data

    def write_raw() -> None:
        shutil.rmtree(raw, ignore_errors=True)
        array = zarr.create_array(
            str(raw), shape=data.shape, dtype=data.dtype, chunks=chunks, compressors=ZstdCodec()
        )
        array[...] = data

    def read_ours() -> None:
        with ZarrStorage(ours, "r") as storage:
            storage["a"]

    def read_raw() -> None:
        zarr.open_array(str(raw), mode="r")[...]

    write_ours(), write_raw()
    results: dict[str, list[float]] = {name: [] for name in ("wo", "wr", "ro", "rr")}
    for _ in range(rounds):  # alternating, so that both sides see the same machine
        results["wo"].append(_median(write_ours, 1))
        results["wr"].append(_median(write_raw, 1))
        results["ro"].append(_median(read_ours, 1))
        results["rr"].append(_median(read_raw, 1))
    m = {name: statistics.median(values) for name, values in results.items()}
    return [
        f"ZarrStorage write {mib} MiB / raw zarr: {m['wo'] / m['wr']:.3f} "
        f"({m['wo']:.3f} s / {m['wr']:.3f} s; target <= 1.1)",
        f"ZarrStorage read {mib} MiB / raw zarr: {m['ro'] / m['rr']:.3f} "
        f"({m['ro']:.3f} s / {m['rr']:.3f} s; target <= 1.1)",
    ]


def small(directory: Path, count: int) -> list[str]:
    """HashedZarr ``count`` small writes and reads / HashedHDF5 (reported, no target)."""
    outputs = [np.full(16, index, dtype=np.float64) for index in range(count)]
    zarr_cache = HashedZarr(directory / "cache.zarr")
    file = open_journaled(directory / "cache.h5", "w")
    hdf5_cache = HashedHDF5(file)
    times: dict[str, float] = {}
    for name, cache in (("zarr", zarr_cache), ("hdf5", hdf5_cache)):
        start = time.perf_counter()
        for index, output in enumerate(outputs):
            cache.write(output, index, None)
        times[f"{name} write"] = time.perf_counter() - start
        start = time.perf_counter()
        for index in range(count):
            cache.read(index, None)
        times[f"{name} read"] = time.perf_counter() - start
    file.close()
    return [
        f"HashedZarr {count} small {what}s / HashedHDF5: "
        f"{times[f'zarr {what}'] / times[f'hdf5 {what}']:.1f} "
        f"({times[f'zarr {what}']:.2f} s / {times[f'hdf5 {what}']:.2f} s; reported, no target)"
        for what in ("write", "read")
    ]


_WRITER = """
import sys, numpy as np
from corelay.io.storage import HashedZarr
cache = HashedZarr(sys.argv[1])
process, count = int(sys.argv[2]), int(sys.argv[3])
for index in range(count):
    cache.write(np.full(16, index, dtype=np.float64), (process, index), None)
"""


def processes(directory: Path, count: int, workers: int) -> list[str]:
    """Throughput of ``workers`` processes writing one HashedZarr / of one process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT / "src"), *sys.path])}
    throughput: dict[int, float] = {}
    for running in (1, workers):
        path = directory / f"processes-{running}.zarr"
        start = time.perf_counter()
        started = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(path), str(process), str(count)], env=env
            )
            for process in range(running)
        ]
        for process in started:
            assert process.wait() == 0
        throughput[running] = running * count / (time.perf_counter() - start)
    return [
        f"HashedZarr throughput, {workers} processes / 1 process: "
        f"{throughput[workers] / throughput[1]:.2f} ({throughput[workers]:.0f} / "
        f"{throughput[1]:.0f} writes per second, {os.cpu_count()} CPUs; reported)"
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="seconds; checks that it works")
    args = parser.parse_args()
    mib, rounds, count, workers = (4, 1, 20, 2) if args.smoke else (256, 3, 2000, 4)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        lines = [
            *big(directory, mib, rounds),
            *small(directory, count),
            *processes(directory, count // 4, workers),
        ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
