"""PickleStorage.compact: the file keeps the last record of each key, replaced atomically."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corelay.io.storage import NoDataTarget, PickleStorage

_ROOT = Path(__file__).parent.parent


def _fill(path: Path) -> None:
    with PickleStorage(path, "w") as storage:
        for value in range(5):
            storage["big"] = np.full(1 << 20, value, dtype=np.float64)  # 8 MiB
        storage["small"] = {"a": 1}
        storage["big"] = np.full(1 << 20, 5, dtype=np.float64)


def test_five_rewrites_of_a_key_shrink_back_to_one(tmp_path: Path) -> None:
    path = tmp_path / "c.pkl"
    _fill(path)
    before = path.stat().st_size
    assert before > 6 * 8 * 2**20
    with PickleStorage(path, "a") as storage:
        view = storage.at(data_key="small")
        reclaimed = storage.compact()
        after = path.stat().st_size
        assert reclaimed == before - after
        assert 8 * 2**20 < after < 8 * 2**20 + 4096
        assert list(storage.keys()) == ["big", "small"]  # the order keys first appeared
        np.testing.assert_array_equal(storage["big"], np.full(1 << 20, 5.0))
        assert view.read() == {"a": 1}  # views go on with the new file
        storage["new"] = 3
        view.write({"b": 2})
        assert storage.compact() > 0  # the replaced record of "small"
    with PickleStorage(path, "r") as storage:
        assert list(storage.keys()) == ["big", "small", "new"]
        assert storage["small"] == {"b": 2} and storage["new"] == 3
        np.testing.assert_array_equal(storage["big"], np.full(1 << 20, 5.0))
    assert not list(tmp_path.glob(".*corelay-compact*"))


def test_compacting_a_compact_file_reclaims_nothing(tmp_path: Path) -> None:
    path = tmp_path / "n.pkl"
    with PickleStorage(path, "w") as storage:
        storage["a"] = 1
        storage["b"] = np.arange(10)
        assert storage.compact() == 0
        assert storage["a"] == 1


def test_the_lock_is_held_through_compaction(tmp_path: Path) -> None:
    path = tmp_path / "l.pkl"
    _fill(path)
    with PickleStorage(path, "a") as storage:
        storage.compact()
        with pytest.raises(BlockingIOError):
            PickleStorage(path, "a")
        script = (
            "import sys\nfrom corelay.io.storage import PickleStorage\n"
            "try:\n    PickleStorage(sys.argv[1], 'a')\n"
            "except BlockingIOError:\n    print('held')\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), *sys.path])}
        out = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env
        )
        assert out.stdout.strip() == "held", out.stderr
    with PickleStorage(path, "a") as storage:  # released with the storage
        assert storage["small"] == {"a": 1}


def test_compact_refuses_read_only_and_closed_storages(tmp_path: Path) -> None:
    path = tmp_path / "r.pkl"
    _fill(path)
    size = path.stat().st_size
    with PickleStorage(path, "r") as storage, pytest.raises(NoDataTarget):
        storage.compact()
    storage = PickleStorage(path, "a")
    storage.close()
    with pytest.raises(ValueError, match="closed"):
        storage.compact()
    assert path.stat().st_size == size


def test_a_failed_compaction_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.pkl"
    _fill(path)
    size = path.stat().st_size

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    with PickleStorage(path, "a") as storage:
        monkeypatch.setattr(os, "replace", fail)
        with pytest.raises(OSError, match="space"):
            storage.compact()
        monkeypatch.undo()
        assert path.stat().st_size == size
        assert not list(tmp_path.glob(".*corelay-compact*"))
        storage["after"] = 1
        np.testing.assert_array_equal(storage["big"], np.full(1 << 20, 5.0))
    with PickleStorage(path, "r") as storage:
        assert storage["after"] == 1


_COMPACTOR = """
import sys
from corelay.io.storage import PickleStorage
with PickleStorage(sys.argv[1], "a") as storage:
    print("open", flush=True)
    storage.compact()
    print("done", flush=True)
"""


def test_a_killed_compaction_leaves_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CORELAY_KILL_SEED", "0")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), *sys.path])}
    for trial in range(int(os.environ.get("CORELAY_COMPACT_KILL_TRIALS", "6"))):
        path = tmp_path / f"k{trial}.pkl"
        _fill(path)
        old = path.stat().st_size
        process = subprocess.Popen(
            [sys.executable, "-c", _COMPACTOR, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert process.stdout is not None
        assert process.stdout.readline() == "open\n"
        time.sleep(rng.uniform(0, 0.03))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        size = path.stat().st_size
        assert size == old or size < old - 4 * 8 * 2**20
        with PickleStorage(path, "a") as storage:
            assert list(storage.keys()) == ["big", "small"]
            np.testing.assert_array_equal(storage["big"], np.full(1 << 20, 5.0))
            assert storage["small"] == {"a": 1}
            storage.compact()  # and the stale copy of a killed compaction is removed
        assert not list(tmp_path.glob(f".{path.name}.corelay-compact*"))
