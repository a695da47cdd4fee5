"""Many processes write and read one HashedZarr at once: on a directory, and on S3.

``CORELAY_ZARR_WRITES`` sets how many writes each process makes (200 by default); half of them
go to entries that every process writes.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from zarr.storage import ObjectStore

from corelay.io.storage import HashedZarr, NoDataSource
from tests.cases import assert_same_tree
from tests.seaweed import S3Server, prefix_of, s3_store

_ROOT = Path(__file__).parent.parent
_WRITES = int(os.environ.get("CORELAY_ZARR_WRITES", "200"))
_META = {"step": "attribution", "version": 2}

_WORKER = """
import sys
from tests.test_zarr_concurrency import check_output, open_cache, output, race_output
role, process, writes, where = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cache = open_cache(where)
from corelay.io.storage import NoDataSource
if role == "writer":
    for step in range(writes):
        entry = step // 2 if step % 2 == 0 else 1_000_000 * (process + 1) + step
        cache.write(output(entry), entry, {meta!r})
        check_output(cache.read(entry, {meta!r}), entry)
        if step % 10 == 0:
            cache.write(race_output(process), "race", {meta!r})
    print("done", flush=True)
else:
    import os
    found = 0
    while not os.path.exists(sys.argv[5]):
        for entry in range(writes // 2):
            try:
                check_output(cache.read(entry, {meta!r}), entry)
                found += 1
            except NoDataSource:
                pass
        try:
            race = cache.read("race", {meta!r})
            assert any(race[0][0] == p for p in range(8)), race
            check_output(race, None)
        except NoDataSource:
            pass
    print("read", found, flush=True)
""".replace("{meta!r}", repr(_META))


def output(entry: int) -> tuple[Any, ...]:
    """The output written for ``entry``: some of them span several chunks."""
    size = 600_000 if entry % 50 == 0 else 40 + entry % 13
    return (np.full(size, entry, dtype=np.float64), np.arange(entry % 7), f"entry {entry}")


def race_output(process: int) -> tuple[Any, ...]:
    """What process ``process`` writes to the entry every process replaces."""
    return (np.full(700_000, process, dtype=np.float64), np.arange(3), "race")


def check_output(actual: Any, entry: int | None) -> None:
    """Checks a read output is whole: ``output(entry)``, or a whole race output."""
    if entry is None:
        assert_same_tree(actual, race_output(int(actual[0][0])))
    else:
        assert_same_tree(actual, output(entry))


def open_cache(where: str) -> HashedZarr:
    """Opens the cache at ``where``: a directory, or ``s3 <endpoint> <bucket> <prefix>``."""
    kind, *parts = where.split(" ")
    if kind == "s3":
        endpoint, bucket, prefix = parts
        return HashedZarr(ObjectStore(s3_store(endpoint, bucket, prefix)))
    return HashedZarr(parts[0])


def _run(where: str, writers: int, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), *sys.path])}
    stop = tmp_path / "stop"

    def start(role: str, process: int) -> subprocess.Popen[str]:
        arguments = [role, str(process), str(_WRITES), where, str(stop)]
        return subprocess.Popen(
            [sys.executable, "-c", _WORKER, *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    reader = start("reader", 0)
    started = [start("writer", process) for process in range(writers)]
    failures: list[str] = []
    for writer in started:
        out, err = writer.communicate(timeout=900)
        if writer.returncode != 0 or "done" not in out:
            failures.append(err)
    stop.touch()
    out, err = reader.communicate(timeout=300)
    if reader.returncode != 0:
        failures.append(err)
    assert not failures, "\n".join(failures)
    cache = open_cache(where)
    for process in range(writers):
        for step in range(_WRITES):
            entry = step // 2 if step % 2 == 0 else 1_000_000 * (process + 1) + step
            check_output(cache.read(entry, _META), entry)
    check_output(cache.read("race", _META), None)
    try:
        cache.read(-1, _META)
    except NoDataSource:
        pass
    else:
        raise AssertionError("an entry nobody wrote was found")


def test_four_processes_on_a_directory(tmp_path: Path) -> None:
    _run(f"dir {tmp_path / 'cache.zarr'}", 4, tmp_path)


def test_two_processes_on_s3(s3_server: S3Server, tmp_path: Path) -> None:
    _run(f"s3 {s3_server.endpoint} {s3_server.bucket} {prefix_of(tmp_path)}", 2, tmp_path)
