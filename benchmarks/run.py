"""Benchmarks of corelay.io.storage against its references: the design's performance targets.

Run from the repository root, with this checkout importable (``pip install -e .`` or
``PYTHONPATH=src``)::

    python benchmarks/run.py                 # the design's sizes, one to two minutes
    python benchmarks/run.py --quick         # fewer small operations and rounds, under a minute
    python benchmarks/run.py --smoke         # seconds: only checks that the benchmarks work
    python benchmarks/run.py --against-python PYTHON   # also compare with corelay 1.0.0

Figures 15 to 19 measure the Zarr storages (``benchmarks/zarr_figures.py``; they need the
``zarr`` extra).

Every figure is a ratio measured in this one process, on the same data: the library's side and
the reference's side run alternately, round by round (ABAB...), after a warm-up round, and the
ratio is the median of one side over the median of the other. Memory figures are measured in a
fresh child process each (``benchmarks/memory.py``). With ``--against-python``, the corelay
installed in that interpreter (corelay 1.0.0) runs ``benchmarks/workloads.py`` once per round,
alternating with the same workload run here.

It prints a table (figure, ours, reference, ratio, target, OK/MISS) and a last line counting the
figures within target. The exit status is 0 when every measured figure is within target, 1 when
one is not, 2 when a figure could not be measured because of an error; ``--smoke`` exits 0
unless there was an error.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xxhash
from workloads import (
    FEW_METAS,
    Array,
    hashed_items,
    small_arrays,
    small_keys,
    time_hashed,
    time_storage,
)

import corelay
from corelay.io.hashing import ext_hash
from corelay.io.journal import open_journaled
from corelay.io.storage import HashedHDF5, HDF5Storage, PickleStorage

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent
MIB = 2**20

#: Sizes of the design's performance targets.
DESIGN_BIG_MIB = 256
DESIGN_WRITE_MEMORY_MIB = 512
DESIGN_OPS = 2000

#: Marks targets that are this benchmark's choice, not the design's.
OWN_TARGET = "(a)"


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions of one kind of run."""

    name: str
    big_mib: int
    hash_memory_mib: int
    write_memory_mib: int
    ops: int
    rounds: int
    warmup: int
    hash_rounds: int


CONFIGS = {
    "full": Config(
        "full", DESIGN_BIG_MIB, DESIGN_BIG_MIB, DESIGN_WRITE_MEMORY_MIB, DESIGN_OPS, 9, 1, 25
    ),
    # Large arrays cost little time; the small operations are the slow part.
    "quick": Config(
        "quick", DESIGN_BIG_MIB, DESIGN_BIG_MIB, DESIGN_WRITE_MEMORY_MIB, 1000, 5, 1, 11
    ),
    "smoke": Config("smoke", 4, 8, 8, 20, 1, 0, 1),
}


@dataclass
class Row:
    """One line of the table."""

    figure: str
    ours: str
    reference: str
    ratio: str
    target: str
    result: str
    counted: bool = True  # a figure with a target, counted in the last line


@dataclass
class Report:
    """The rows and notes of a run."""

    rows: list[Row] = field(default_factory=list[Row])
    notes: list[str] = field(default_factory=list[str])
    errors: list[str] = field(default_factory=list[str])


Side = Callable[[], dict[str, float]]
Samples = dict[str, dict[str, list[float]]]


def alternate(sides: dict[str, Side], rounds: int, warmup: int) -> Samples:
    """Runs the sides in turn, round after round, and collects their timings after the warm-up.

    Each side returns ``{metric: seconds}`` for one round.
    """
    samples: Samples = {name: {} for name in sides}
    for index in range(warmup + rounds):
        for name, side in sides.items():
            timings = side()
            if index >= warmup:
                for metric, elapsed in timings.items():
                    samples[name].setdefault(metric, []).append(elapsed)
    return samples


def timed(operation: Callable[[], object]) -> float:
    """The wall-clock seconds of one call of ``operation``, after a garbage collection."""
    gc.collect()
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


def read_dataset(file: h5py.File, key: str) -> Any:
    """``file[key][()]``, for a dataset."""
    dataset = file[key]
    if not isinstance(dataset, h5py.Dataset):
        raise TypeError(f"{key!r} is a group")
    return dataset[()]


class Checker:
    """Checks the first value each side reads back, without keeping any.

    Keeping a large value would make the next read of that side allocate fresh memory, whose
    first touch costs far more than reusing freed memory: the sides would not be alike.
    """

    def __init__(self, expected: Array, what: str) -> None:
        self.expected = expected
        self.what = what
        self.checked: set[str] = set()

    def __call__(self, side: str, value: object) -> None:
        """Raises AssertionError if this is ``side``'s first value and it is not as expected."""
        if side in self.checked:
            return
        if not np.array_equal(np.asarray(value), self.expected):
            raise AssertionError(f"{self.what} by {side} differs from the one written")
        self.checked.add(side)


def remove(path: Path) -> None:
    """Removes an HDF5 or pickle file and the journal beside it, if there."""
    for name in (path, path.with_name(path.name + ".journal")):
        name.unlink(missing_ok=True)


def seconds(value: float) -> str:
    """``value`` seconds for the table."""
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} us"


def spread(values: Sequence[float]) -> str:
    """The range of a side's timings, for the notes."""
    return f"{seconds(min(values))}..{seconds(max(values))}"


def size(mib: int, design_mib: int) -> str:
    """A size for a figure's name, saying so when it is not the design's."""
    return f"{mib} MiB" if mib == design_mib else f"{mib} MiB [design: {design_mib}]"


def count(ops: int) -> str:
    """A number of operations for a figure's name, saying so when it is not the design's."""
    return str(ops) if ops == DESIGN_OPS else f"{ops} [design: {DESIGN_OPS}]"


def ratio_row(
    report: Report,
    figure: str,
    ours: Sequence[float],
    reference: Sequence[float],
    target: float,
    *,
    own_target: bool = False,
) -> None:
    """Adds a timed figure: the median of ``ours`` over the median of ``reference``."""
    ratio = statistics.median(ours) / statistics.median(reference)
    report.rows.append(
        Row(
            figure,
            seconds(statistics.median(ours)),
            seconds(statistics.median(reference)),
            f"{ratio:.3f}",
            f"<= {target:.2f}" + (f" {OWN_TARGET}" if own_target else ""),
            "OK" if ratio <= target else "MISS",
        )
    )
    report.notes.append(
        f"{figure}: {len(ours)} rounds; ours {spread(ours)}, reference {spread(reference)}"
    )


# -- figures ---------------------------------------------------------------------------------


def figure_hash(report: Report, config: Config, big: Array) -> None:
    """1: ext_hash of the big array over raw xxh3_128 of its buffer."""
    buffer = big.data

    samples = alternate(
        {
            "ours": lambda: {"time": timed(lambda: ext_hash(big))},
            "xxh3": lambda: {"time": timed(lambda: xxhash.xxh3_128(buffer).hexdigest())},
        },
        config.hash_rounds,
        config.warmup,
    )
    ratio_row(
        report,
        f"1 ext_hash {size(config.big_mib, DESIGN_BIG_MIB)} float64 / xxh3_128",
        samples["ours"]["time"],
        samples["xxh3"]["time"],
        1.5,
    )


def child_environment() -> dict[str, str]:
    """The environment for child processes that must import the corelay measured here."""
    root = str(Path(corelay.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}


def figure_memory(
    report: Report, figure: str, operation: str, mib: int, target_percent: float, directory: Path
) -> None:
    """2 and 5: the extra peak memory of an operation, over the size of its array."""
    completed = subprocess.run(
        [sys.executable, str(HERE / "memory.py"), operation, f"--mib={mib}", f"--dir={directory}"],
        env=child_environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory.py {operation} failed:\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    array, rss, traced = result["array_bytes"], result["rss_bytes"], result["traced_bytes"]
    extra = max(rss, traced)
    percent = 100 * extra / array
    report.rows.append(
        Row(
            figure,
            f"{extra / MIB:.2f} MiB",
            f"{array / MIB:.0f} MiB",
            f"{percent:.2f} %",
            f"<= {target_percent:.0f} %",
            "OK" if percent <= target_percent else "MISS",
        )
    )
    check = 16 * MIB
    checked = (
        f"a {check // MIB} MiB check allocation read "
        f"{result['rss_check_bytes'] / MIB:.1f} MiB resident, "
        f"{result['traced_check_bytes'] / MIB:.1f} MiB traced"
    )
    report.notes.append(
        f"{figure}: the larger of resident {rss / MIB:.2f} MiB ({result['rss_method']}) and "
        f"traced {traced / MIB:.2f} MiB (tracemalloc); {checked}"
    )


def figure_hdf5_big(report: Report, config: Config, big: Array, directory: Path) -> None:
    """3 and 4: HDF5Storage write and read of the big array over raw h5py."""
    path = directory / "big.h5"

    def ours_write() -> dict[str, float]:
        storage = HDF5Storage(path, "w")
        try:
            elapsed = timed(lambda: storage.__setitem__("data", big))
        finally:
            storage.close()
        remove(path)
        return {"time": elapsed}

    def h5py_write() -> dict[str, float]:
        file = h5py.File(path, "w")

        def write() -> None:
            file.create_dataset("data", data=big)
            file.flush()

        try:
            elapsed = timed(write)
        finally:
            file.close()
        remove(path)
        return {"time": elapsed}

    written = alternate({"ours": ours_write, "h5py": h5py_write}, config.rounds, config.warmup)
    mib = size(config.big_mib, DESIGN_BIG_MIB)
    ratio_row(
        report,
        f"3 HDF5Storage write {mib} / h5py write+flush",
        written["ours"]["time"],
        written["h5py"]["time"],
        1.10,
    )

    # Both sides read the same file, written by HDF5Storage (plain HDF5 for h5py).
    with HDF5Storage(path, "w") as storage:
        storage["data"] = big
    check = Checker(big, "the big array read back from HDF5")

    def ours_read() -> dict[str, float]:
        storage = HDF5Storage(path, "r")
        try:
            gc.collect()
            start = time.perf_counter()
            value = storage["data"]
            elapsed = time.perf_counter() - start
        finally:
            storage.close()
        check("ours", value)
        return {"time": elapsed}

    def h5py_read() -> dict[str, float]:
        file = h5py.File(path, "r")
        try:
            gc.collect()
            start = time.perf_counter()
            value = read_dataset(file, "data")
            elapsed = time.perf_counter() - start
        finally:
            file.close()
        check("h5py", value)
        return {"time": elapsed}

    read = alternate({"ours": ours_read, "h5py": h5py_read}, config.rounds, config.warmup)
    remove(path)
    ratio_row(
        report,
        f"4 HDF5Storage read {mib} / h5py read",
        read["ours"]["time"],
        read["h5py"]["time"],
        1.10,
    )


def figure_hdf5_small(report: Report, config: Config, directory: Path) -> None:
    """6 and 7: many small HDF5Storage writes and reads over raw h5py."""
    path = directory / "small.h5"
    arrays = small_arrays(config.ops)
    keys = small_keys(config.ops)

    def ours_write() -> dict[str, float]:
        storage = HDF5Storage(path, "w")

        def write() -> None:
            for key, array in zip(keys, arrays, strict=True):
                storage[key] = array

        try:
            elapsed = timed(write)
        finally:
            storage.close()
        remove(path)
        return {"time": elapsed}

    def h5py_write() -> dict[str, float]:
        file = h5py.File(path, "w")

        def write() -> None:
            for key, array in zip(keys, arrays, strict=True):
                file.create_dataset(key, data=array)
                file.flush()

        try:
            elapsed = timed(write)
        finally:
            file.close()
        remove(path)
        return {"time": elapsed}

    written = alternate({"ours": ours_write, "h5py": h5py_write}, config.rounds, config.warmup)
    ops = count(config.ops)
    ratio_row(
        report,
        f"6 {ops} small HDF5Storage writes / h5py write+flush",
        written["ours"]["time"],
        written["h5py"]["time"],
        1.5,
    )

    # Both sides read the same file, written by HDF5Storage.
    with HDF5Storage(path, "w") as storage:
        for key, array in zip(keys, arrays, strict=True):
            storage[key] = array
    results: dict[str, list[Any]] = {"ours": [], "h5py": []}

    def ours_read() -> dict[str, float]:
        storage = HDF5Storage(path, "r")
        values: list[Any] = []

        def read() -> None:
            for key in keys:
                values.append(storage[key])

        try:
            elapsed = timed(read)
        finally:
            storage.close()
        results["ours"] = values
        return {"time": elapsed}

    def h5py_read() -> dict[str, float]:
        file = h5py.File(path, "r")
        values: list[Any] = []

        def read() -> None:
            for key in keys:
                values.append(read_dataset(file, key))

        try:
            elapsed = timed(read)
        finally:
            file.close()
        results["h5py"] = values
        return {"time": elapsed}

    read = alternate({"ours": ours_read, "h5py": h5py_read}, config.rounds, config.warmup)
    remove(path)
    for side, values in results.items():
        if len(values) != len(arrays) or not all(
            np.array_equal(value, array) for value, array in zip(values, arrays, strict=True)
        ):
            raise AssertionError(f"small arrays read back by {side} differ from those written")
    ratio_row(
        report,
        f"7 {ops} small HDF5Storage reads / h5py read",
        read["ours"]["time"],
        read["h5py"]["time"],
        2.0,
    )


def _journaled(path: str, mode: str) -> h5py.File:
    return open_journaled(path, "w" if mode == "w" else "r")


def _storage(path: str, mode: str) -> HDF5Storage:
    return HDF5Storage(path, mode)


def run_other(python: str, ops: int, directory: Path) -> dict[str, float]:
    """Runs ``workloads.py`` under another interpreter, away from this checkout."""
    # Without PYTHONPATH, so that it imports the corelay installed there.
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run(
        [python, str(HERE / "workloads.py"), "--ops", str(ops), "--dir", str(directory)],
        env=environment,
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"workloads.py under {python} failed:\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return {key: float(value) for key, value in result.items() if key != "corelay"}


def other_version(python: str) -> str:
    """The version of the corelay that ``python`` imports, checking that it does."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    script = "import corelay.io.storage, h5py, numpy; from importlib import metadata; "
    script += "print(metadata.version('corelay'))"
    completed = subprocess.run(
        [python, "-c", script],
        env=environment,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if completed.returncode != 0:
        print(
            f"--against-python {python}: cannot import corelay:\n{completed.stderr}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return completed.stdout.strip()


def info_row(figure: str, ours: Sequence[float], reference: Sequence[float] | None) -> Row:
    """An informational line: not counted, no target."""
    if reference is None:
        return Row(figure, seconds(statistics.median(ours)), "-", "-", "-", "info", False)
    ratio = statistics.median(ours) / statistics.median(reference)
    return Row(
        figure,
        seconds(statistics.median(ours)),
        seconds(statistics.median(reference)),
        f"{ratio:.3f}",
        "-",
        "info",
        False,
    )


def figure_hashed(
    report: Report, config: Config, directory: Path, against: str | None, version: str
) -> None:
    """8: HashedHDF5 writes and reads over corelay 1.0.0's; HDF5Storage over 1.0.0's (info).

    Three of our sides: a journaled file and a plain ``h5py.File`` with a few distinct metadata
    dicts, and a plain ``h5py.File`` with a distinct one for every entry.
    """
    items = hashed_items(config.ops)
    distinct_items = hashed_items(config.ops, distinct_metas=True)
    sides: dict[str, Side] = {
        "ours": lambda: time_hashed(HashedHDF5, _journaled, str(directory / "hashed.h5"), items),
        "plain": lambda: time_hashed(HashedHDF5, h5py.File, str(directory / "plain.h5"), items),
        "distinct": lambda: time_hashed(
            HashedHDF5, h5py.File, str(directory / "distinct.h5"), distinct_items
        ),
    }
    ops = count(config.ops)
    kinds = (("write", "writes"), ("read", "reads"))
    # (our side, the reference's metric prefix, what the row says, target)
    rows = (
        ("ours", "hashed", f"{FEW_METAS} metas", 0.5),
        ("plain", "hashed", f"plain h5py.File, {FEW_METAS} metas", 0.5),
        ("distinct", "hashed_distinct", "plain h5py.File, a meta per entry", 1.0),
    )
    if against is None:
        samples = alternate(sides, config.rounds, config.warmup)
        for metric, name in kinds:
            for side, _, what, target in rows:
                figure = f"8 HashedHDF5 {ops} {name} ({what}) / corelay 1.0.0"
                ours = samples[side][metric]
                median = seconds(statistics.median(ours))
                skipped = "skipped (needs --against-python)"
                report.rows.append(Row(figure, median, "-", "-", f"<= {target:.2f}", skipped))
                report.notes.append(f"{figure}: {len(ours)} rounds; ours {spread(ours)}")
        return

    other = f"corelay {version}"
    other_directory = directory / "other"
    other_directory.mkdir()
    arrays = small_arrays(config.ops)
    sides["storage"] = lambda: time_storage(_storage, str(directory / "storage.h5"), arrays)
    sides["other"] = lambda: run_other(against, config.ops, other_directory)
    samples = alternate(sides, config.rounds, config.warmup)
    for metric, name in kinds:
        for side, prefix, what, target in rows:
            reference = samples["other"][f"{prefix}_{metric}"]
            figure = f"8 HashedHDF5 {ops} {name} ({what}) / {other}"
            ratio_row(report, figure, samples[side][metric], reference, target)
    for metric, name in kinds:
        info = f"  (info) {ops} small HDF5Storage {name} / {other} HDF5Storage"
        ours, reference = samples["storage"][metric], samples["other"][f"storage_{metric}"]
        report.rows.append(info_row(info, ours, reference))
        report.notes.append(f"{info.strip()}: ours {spread(ours)}, reference {spread(reference)}")


def figure_pickle(report: Report, config: Config, big: Array, directory: Path) -> None:
    """9: PickleStorage write and read of the big array over raw pickle.dump and pickle.load."""
    path = directory / "big.pickle"
    record = {"data": big, "key": "data"}

    def ours_write() -> dict[str, float]:
        storage = PickleStorage(path, "w")
        try:
            elapsed = timed(lambda: storage.__setitem__("data", big))
        finally:
            storage.close()
        remove(path)
        return {"time": elapsed}

    def pickle_write() -> dict[str, float]:
        with open(path, "wb") as file:

            def write() -> None:
                pickle.dump(record, file, protocol=5)
                file.flush()

            elapsed = timed(write)
        remove(path)
        return {"time": elapsed}

    written = alternate({"ours": ours_write, "pickle": pickle_write}, config.rounds, config.warmup)
    mib = size(config.big_mib, DESIGN_BIG_MIB)
    ratio_row(
        report,
        f"9 PickleStorage write {mib} / pickle.dump+flush",
        written["ours"]["time"],
        written["pickle"]["time"],
        1.10,
        own_target=True,
    )

    # Both sides read the same file, written by PickleStorage: one record, a plain pickle.
    with PickleStorage(path, "w") as storage:
        storage["data"] = big
    check = Checker(big, "the big array read back from the pickle")

    def ours_read() -> dict[str, float]:
        gc.collect()
        start = time.perf_counter()
        with PickleStorage(path, "r") as storage:
            value = storage["data"]
        elapsed = time.perf_counter() - start
        check("ours", value)
        return {"time": elapsed}

    def pickle_read() -> dict[str, float]:
        gc.collect()
        start = time.perf_counter()
        with open(path, "rb") as file:
            value = pickle.load(file)["data"]
        elapsed = time.perf_counter() - start
        check("pickle", value)
        return {"time": elapsed}

    read = alternate({"ours": ours_read, "pickle": pickle_read}, config.rounds, config.warmup)
    remove(path)
    ratio_row(
        report,
        f"9 PickleStorage open+read {mib} / open+pickle.load",
        read["ours"]["time"],
        read["pickle"]["time"],
        1.10,
        own_target=True,
    )


# -- the run ---------------------------------------------------------------------------------


# -- big arrays --------------------------------------------------------------------------------

#: The design's sizes of the big-array figures, in MiB.
DESIGN_GZIP_MIB = 256
DESIGN_BATCH_MIB = 64
DESIGN_APPEND_MEMORY_MIB = 2048
DESIGN_SLICE_MEMORY_MIB = 512
DESIGN_REPLACE_MIB = 64
DESIGN_REPLACE_MEMORY_MIB = 128
#: Rows of the sliced array: attribution maps, 3 x 224 x 224 float32.
MAP_SHAPE = (3, 224, 224)
SLICE_ROWS = 40


def big_sizes(config: Config) -> dict[str, int]:
    """The sizes of the big-array figures, in MiB: the design's, but tiny in a smoke run."""
    if config.name == "smoke":
        return {"gzip": 4, "batch": 2, "batches": 2, "slice": 8, "replace": 2}
    return {
        "gzip": DESIGN_GZIP_MIB,
        "batch": DESIGN_BATCH_MIB,
        "batches": 4,
        "slice": 256,
        "replace": DESIGN_REPLACE_MIB,
    }


def compressible(mib: int) -> Array:
    """``mib`` MiB of float32 that compress like attribution maps: smooth, rounded values."""
    count = mib * MIB // 4
    rng = np.random.default_rng(3)
    wave = np.sin(np.arange(count, dtype=np.float32) / 1000)
    return np.round(wave + rng.normal(0, 1e-2, count).astype(np.float32), 3).astype(np.float32)


def figure_compressed(report: Report, config: Config, directory: Path) -> None:
    """10: a gzip-compressed HDF5Storage write over raw h5py with the same filter and chunks."""
    from corelay.io._hdf5.write import chunk_shape

    mib = big_sizes(config)["gzip"]
    data = compressible(mib)
    path = directory / "gzip.h5"

    def ours() -> dict[str, float]:
        storage = HDF5Storage(path, "w", compression="gzip")
        try:
            elapsed = timed(lambda: storage.__setitem__("data", data))
        finally:
            storage.close()
        remove(path)
        return {"time": elapsed}

    def raw() -> dict[str, float]:
        file = h5py.File(path, "w")

        def write() -> None:
            file.create_dataset(
                "data",
                data=data,
                chunks=chunk_shape(data.shape, data.itemsize),
                compression="gzip",
                compression_opts=4,
            )
            file.flush()

        try:
            elapsed = timed(write)
        finally:
            file.close()
        remove(path)
        return {"time": elapsed}

    # gzip runs at tens of MB/s: fewer rounds than the other figures.
    times = alternate({"ours": ours, "h5py": raw}, min(config.rounds, 5), config.warmup)
    ratio_row(
        report,
        f"10 gzip write {size(mib, DESIGN_GZIP_MIB)} / h5py same filter+chunks",
        times["ours"]["time"],
        times["h5py"]["time"],
        1.10,
    )


def figure_append(report: Report, config: Config, directory: Path) -> None:
    """11: HDF5Storage appends of 64 MiB batches over h5py resize + write + flush."""
    from corelay.io._hdf5.write import chunk_shape

    sizes = big_sizes(config)
    rows = sizes["batch"] * MIB // 8 // 1024
    batches = [np.full((rows, 1024), float(index)) for index in range(sizes["batches"])]
    path = directory / "append.h5"

    def ours() -> dict[str, float]:
        storage = HDF5Storage(path, "w")

        def append() -> None:
            for batch in batches:
                storage.append("data", batch)

        try:
            elapsed = timed(append)
        finally:
            storage.close()
        remove(path)
        return {"time": elapsed}

    def raw() -> dict[str, float]:
        file = h5py.File(path, "w")

        def append() -> None:
            dataset = file.create_dataset(
                "data",
                shape=(0, 1024),
                maxshape=(None, 1024),
                dtype=np.float64,
                chunks=chunk_shape((2**62, 1024), 8),
            )
            for batch in batches:
                start = len(dataset)
                dataset.resize(start + len(batch), axis=0)
                dataset[start:] = batch
                file.flush()

        try:
            elapsed = timed(append)
        finally:
            file.close()
        remove(path)
        return {"time": elapsed}

    times = alternate({"ours": ours, "h5py": raw}, config.rounds, config.warmup)
    ratio_row(
        report,
        f"11 {sizes['batches']} appends of {size(sizes['batch'], DESIGN_BATCH_MIB)}"
        " / h5py resize+write+flush",
        times["ours"]["time"],
        times["h5py"]["time"],
        1.20,
    )


def figure_lazy_slice(report: Report, config: Config, directory: Path) -> None:
    """12: 40-row slices through HDF5Storage.lazy over the same slices through h5py."""
    mib = big_sizes(config)["slice"]
    row = int(np.prod(MAP_SHAPE))
    count = max(mib * MIB // 4 // row, 2 * SLICE_ROWS)
    path = directory / "slice.h5"
    with HDF5Storage(path, "w") as storage:
        for start in range(0, count, 64):
            rows = min(64, count - start)
            block = np.arange(start, start + rows, dtype=np.float32)
            storage.append(
                "maps", np.broadcast_to(block[:, None, None, None], (rows, *MAP_SHAPE)).copy()
            )
    starts = np.random.default_rng(4).integers(0, count - SLICE_ROWS, 20).tolist()

    def ours() -> dict[str, float]:
        storage = HDF5Storage(path, "r")
        lazy = storage.lazy("maps")
        try:
            gc.collect()
            start_time = time.perf_counter()
            for start in starts:
                lazy[start : start + SLICE_ROWS]
            elapsed = time.perf_counter() - start_time
        finally:
            storage.close()
        return {"time": elapsed}

    def raw() -> dict[str, float]:
        file = h5py.File(path, "r")
        dataset = file["maps"]
        assert isinstance(dataset, h5py.Dataset)
        try:
            gc.collect()
            start_time = time.perf_counter()
            for start in starts:
                dataset[start : start + SLICE_ROWS]
            elapsed = time.perf_counter() - start_time
        finally:
            file.close()
        return {"time": elapsed}

    times = alternate({"ours": ours, "h5py": raw}, config.rounds, config.warmup)
    remove(path)
    ratio_row(
        report,
        f"12 {len(starts)} slices of {SLICE_ROWS} rows (lazy) / h5py slices",
        times["ours"]["time"],
        times["h5py"]["time"],
        1.20,
    )


def figure_replace(report: Report, config: Config, directory: Path) -> None:
    """13: replacing a 64 MiB value (average of 6) over h5py delete + write + flush."""
    mib = big_sizes(config)["replace"]
    values = [np.full(mib * MIB // 8, float(index)) for index in range(2)]
    ours_path, raw_path = directory / "replace-ours.h5", directory / "replace-h5py.h5"
    with HDF5Storage(ours_path, "w") as storage:  # the key exists, and has been replaced once
        storage["data"] = values[0]
        storage["data"] = values[1]
    with h5py.File(raw_path, "w") as file:
        file.create_dataset("data", data=values[0])
        del file["data"]
        file.create_dataset("data", data=values[1])

    def ours() -> dict[str, float]:
        storage = HDF5Storage(ours_path, "a")

        def replace() -> None:
            for index in range(6):
                storage["data"] = values[index % 2]

        try:
            elapsed = timed(replace) / 6
        finally:
            storage.close()
        return {"time": elapsed}

    def raw() -> dict[str, float]:
        file = h5py.File(raw_path, "a")

        def replace() -> None:
            for index in range(6):
                del file["data"]
                file.create_dataset("data", data=values[index % 2])
                file.flush()

        try:
            elapsed = timed(replace) / 6
        finally:
            file.close()
        return {"time": elapsed}

    times = alternate({"ours": ours, "h5py": raw}, config.rounds, config.warmup)
    remove(ours_path)
    remove(raw_path)
    ratio_row(
        report,
        f"13 replace {size(mib, DESIGN_REPLACE_MIB)} (avg of 6) / h5py delete+write+flush",
        times["ours"]["time"],
        times["h5py"]["time"],
        1.50,
    )


def figure_big_memory(report: Report, config: Config, directory: Path) -> None:
    """14: extra peak memory of appending, slicing lazily and replacing, each in its process."""
    smoke = config.name == "smoke"
    append_mib = 16 if smoke else DESIGN_APPEND_MEMORY_MIB
    slice_mib = 16 if smoke else DESIGN_SLICE_MEMORY_MIB
    replace_mib = 8 if smoke else DESIGN_REPLACE_MEMORY_MIB
    figure_memory(
        report,
        f"14a append {size(append_mib, DESIGN_APPEND_MEMORY_MIB)} as 64 MiB batches,"
        " extra peak / one batch",
        "append",
        append_mib,
        300,
        directory,
    )
    figure_memory(
        report,
        f"14b lazy {SLICE_ROWS}-row slice of {size(slice_mib, DESIGN_SLICE_MEMORY_MIB)},"
        " extra peak / array (64 MiB = 12.5 %)",
        "lazy-slice",
        slice_mib,
        12.5,
        directory,
    )
    figure_memory(
        report,
        f"14c replace {size(replace_mib, DESIGN_REPLACE_MEMORY_MIB)} 4 times, extra peak / array",
        "replace",
        replace_mib,
        15,
        directory,
    )


def where_corelay() -> str:
    """Where the measured corelay comes from, relative to this repository if it is in it."""
    package = Path(corelay.__file__).resolve().parent
    try:
        relative = package.relative_to(REPOSITORY)
    except ValueError:
        return "an installed package"
    return f"{relative} (this checkout{revision()})"


def revision() -> str:
    """``, commit <hash>`` of this checkout, with ``+ changes`` if src/ differs from it."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPOSITORY), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f", commit {commit}" + (" + changes" if changes else "")


def hdf5_version() -> str:
    """The version of the HDF5 library that h5py uses."""
    return str(getattr(importlib.import_module("h5py.version"), "hdf5_version", "?"))


def header(config: Config, directory: Path, against: str | None, version: str) -> list[str]:
    """The lines above the table: what was run, with what."""
    sizes = {
        "full": "full run, the design's sizes",
        "quick": f"quick run, {config.ops} instead of {DESIGN_OPS} small operations",
        "smoke": "smoke run: tiny sizes, one round; checks that it works, ratios mean nothing",
    }[config.name]
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("numpy", "h5py", "xxhash"))
    same_disk = os.stat(directory).st_dev == os.stat(REPOSITORY).st_dev
    lines = [
        f"corelay.io.storage benchmarks: {sizes}",
        f"{config.rounds} rounds per figure ({config.hash_rounds} for figure 1) after "
        f"{config.warmup} warm-up round(s), sides alternated round by round, median per side",
        f"corelay from {where_corelay()}; Python {platform.python_version()}, {versions}, "
        f"HDF5 {hdf5_version()}; {os.cpu_count()} CPUs",
        "files in a temporary directory "
        + ("on the repository's file system" if same_disk else "on another file system"),
    ]
    if against is None:
        lines.append("figure 8 needs --against-python PYTHON (an interpreter with corelay 1.0.0)")
    else:
        lines.append(f"figure 8 and the HDF5Storage rows against corelay {version}")
    return lines


def table(rows: Sequence[Row]) -> list[str]:
    """The rows as aligned text."""
    titles = Row("figure", "ours", "reference", "ratio", "target", "result")
    columns = ("figure", "ours", "reference", "ratio", "target", "result")
    widths = [max(len(getattr(row, column)) for row in [titles, *rows]) for column in columns]

    def line(row: Row) -> str:
        cells = [getattr(row, column) for column in columns]
        text = [cells[0].ljust(widths[0])]
        text += [cell.rjust(width) for cell, width in zip(cells[1:5], widths[1:5], strict=True)]
        return "  ".join([*text, cells[5]])

    rule = "-" * len(line(titles))
    return [line(titles), rule, *(line(row) for row in rows), rule]


def summary(rows: Sequence[Row]) -> str:
    """The last line: how many figures are within target, and how many were not measured."""
    counted = [row for row in rows if row.counted]
    within = sum(row.result == "OK" for row in counted)
    unmeasured = sum(row.result.startswith("skipped") for row in counted)
    text = f"{within} of {len(counted)} figures within target"
    return text + (f", {unmeasured} not measured" if unmeasured else "")


def figure_zarr(report: Report, config: Config, big: Array, directory: Path) -> None:
    """15 to 17: ZarrStorage over raw zarr, HashedZarr over HashedHDF5, processes over one."""
    import zarr_figures  # needs zarr: imported only when these figures run

    mib = size(config.big_mib, DESIGN_BIG_MIB)
    data = big.reshape(-1, 1024)  # rows of 8 KiB: a view, chunked along the rows
    writes, reads = zarr_figures.big_sides(directory, data)
    written = alternate(writes, config.rounds, config.warmup)
    os.sync()  # the reads start with nothing of the writes left to write back
    read = alternate(reads, config.rounds, config.warmup)
    for what, timed_big in (("write", written), ("read", read)):
        ratio_row(
            report,
            f"15 ZarrStorage {what} {mib} / raw zarr",
            timed_big["ours"][what],
            timed_big["zarr"][what],
            1.10,
        )
    small = alternate(zarr_figures.small_sides(directory, config.ops), config.rounds, 0)
    for what in ("write", "read"):
        report.rows.append(
            info_row(
                f"16 HashedZarr {count(config.ops)} small {what}s / HashedHDF5",
                small["ours"][what],
                small["hdf5"][what],
            )
        )
    workers = 4 if config.name != "smoke" else 2
    sides = zarr_figures.process_sides(directory, max(1, config.ops // 4), workers)
    timed_processes = alternate(sides, max(1, config.rounds // 3), 0)
    report.rows.append(
        info_row(
            f"17 HashedZarr time per write, {workers} processes / 1 ({os.cpu_count()} CPUs)",
            timed_processes["ours"]["per write"],
            timed_processes["one"]["per write"],
        )
    )


def figure_zarr_big(report: Report, config: Config, directory: Path) -> None:
    """18 and 19: ZarrStorage appends and lazy slices over raw zarr, same codec and chunks."""
    import zarr_figures  # needs zarr: imported only when these figures run

    sizes = big_sizes(config)
    rows = sizes["batch"] * MIB // 8 // 1024
    batches = [np.full((rows, 1024), float(index + 1)) for index in range(sizes["batches"])]
    times = alternate(zarr_figures.append_sides(directory, batches), config.rounds, config.warmup)
    ratio_row(
        report,
        f"18 ZarrStorage {sizes['batches']} appends of {size(sizes['batch'], DESIGN_BATCH_MIB)}"
        " / raw zarr Array.append",
        times["ours"]["time"],
        times["zarr"]["time"],
        1.20,
    )
    row = int(np.prod(MAP_SHAPE))
    count = max(sizes["slice"] * MIB // 4 // row, 2 * SLICE_ROWS)
    starts = np.random.default_rng(4).integers(0, count - SLICE_ROWS, 20).tolist()
    sides = zarr_figures.slice_sides(directory, count, MAP_SHAPE, starts, SLICE_ROWS)
    times = alternate(sides, config.rounds, config.warmup)
    ratio_row(
        report,
        f"19 ZarrStorage {len(starts)} slices of {SLICE_ROWS} rows (lazy) / raw zarr slices",
        times["ours"]["time"],
        times["zarr"]["time"],
        1.20,
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Measure corelay.io.storage against its references (the design's targets)."
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--quick", action="store_true", help="smaller sizes, under two minutes")
    kind.add_argument("--smoke", action="store_true", help="seconds; checks the benchmarks work")
    parser.add_argument(
        "--against-python",
        metavar="PYTHON",
        help="an interpreter with corelay 1.0.0 installed, for figure 8 and HDF5Storage rows",
    )
    parser.add_argument("--rounds", type=int, help="rounds per figure (default: by kind of run)")
    parser.add_argument(
        "--figures", help="comma-separated figure numbers to run (default: all), e.g. 6,7"
    )
    parser.add_argument(
        "--tmp-dir", help="where to make the temporary directory (default: the system's)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmarks, prints the table and returns the exit status."""
    args = parse(argv)
    config = CONFIGS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.rounds is not None:
        config = Config(**{**config.__dict__, "rounds": args.rounds, "hash_rounds": args.rounds})
    wanted = (
        {int(number) for number in args.figures.split(",")} if args.figures else set(range(1, 20))
    )
    against: str | None = args.against_python
    version = "1.0.0" if against is None else other_version(against)
    directory = Path(tempfile.mkdtemp(prefix="corelay-bench-", dir=args.tmp_dir))
    report = Report()
    started = time.perf_counter()
    try:
        for line in header(config, directory, against, version):
            print(line, flush=True)
        big: Array = np.random.default_rng(1).standard_normal(config.big_mib * MIB // 8)
        figures: list[tuple[int, Callable[[], None]]] = [
            (1, lambda: figure_hash(report, config, big)),
            (
                2,
                lambda: figure_memory(
                    report,
                    "2 ext_hash extra peak memory / "
                    + size(config.hash_memory_mib, DESIGN_BIG_MIB),
                    "hash",
                    config.hash_memory_mib,
                    5,
                    directory,
                ),
            ),
            (3, lambda: figure_hdf5_big(report, config, big, directory)),
            (
                5,
                lambda: figure_memory(
                    report,
                    "5 HDF5Storage write extra peak memory / "
                    + size(config.write_memory_mib, DESIGN_WRITE_MEMORY_MIB),
                    "hdf5-write",
                    config.write_memory_mib,
                    15,
                    directory,
                ),
            ),
            (6, lambda: figure_hdf5_small(report, config, directory)),
            (8, lambda: figure_hashed(report, config, directory, against, version)),
            (9, lambda: figure_pickle(report, config, big, directory)),
            (10, lambda: figure_compressed(report, config, directory)),
            (11, lambda: figure_append(report, config, directory)),
            (12, lambda: figure_lazy_slice(report, config, directory)),
            (13, lambda: figure_replace(report, config, directory)),
            (14, lambda: figure_big_memory(report, config, directory)),
            (15, lambda: figure_zarr(report, config, big, directory)),
            (18, lambda: figure_zarr_big(report, config, directory)),
        ]
        for number, run_figure in figures:
            # Figures 3 and 4, 6 and 7, 15 to 17, and 18 and 19 are measured together.
            together = {3: {3, 4}, 6: {6, 7}, 15: {15, 16, 17}, 18: {18, 19}}.get(number, {number})
            if not wanted & together:
                continue
            print(f"... figure {number}", file=sys.stderr, flush=True)
            # Write back what earlier figures left dirty (nothing is dropped from the page
            # cache), so that the kernel's writeback does not run during this figure.
            os.sync()
            try:
                run_figure()
            except Exception as error:  # one broken figure must not hide the others
                name = f"{number} (error)"
                report.rows.append(Row(name, "-", "-", "-", "-", f"error: {type(error).__name__}"))
                report.errors.append(f"figure {number}: {traceback.format_exc()}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print()
    for line in table(report.rows):
        print(line)
    if any(row.target.endswith(OWN_TARGET) for row in report.rows):
        print(f"{OWN_TARGET} target not in the design; this benchmark's choice")
    print("notes:")
    for note in report.notes:
        print(f"  {note}")
    for failure in report.errors:
        print(failure, file=sys.stderr)
    print(f"({time.perf_counter() - started:.0f} s)")
    print(summary(report.rows))
    if report.errors:
        return 2
    if args.smoke:
        return 0
    return 1 if any(row.result == "MISS" for row in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
