"""HashedHDF5 cache management: exists, len, evict, clear."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from corelay.io._hashed import META_GROUP
from corelay.io.journal import open_journaled
from corelay.io.storage import HashedHDF5, NoDataSource, NoDataTarget

META = {"step": "embed", "k": 3}


def _fill(cache: HashedHDF5, count: int) -> None:
    for index in range(count):
        cache.write(np.full(2, index), np.arange(index + 1), META)


def test_exists_and_len(tmp_path: Path) -> None:
    with open_journaled(tmp_path / "c.h5", "w") as file:
        cache = HashedHDF5(file)
        assert len(cache) == 0
        assert not cache.exists(np.arange(1), META)
        _fill(cache, 5)
        assert len(cache) == 5
        assert cache.exists(np.arange(1), META)
        assert not cache.exists(np.arange(1), {**META, "k": 4})
        assert not cache.exists(np.arange(1, dtype=np.int32), META)
        cache.write(np.zeros(1), np.arange(1), META)  # replaced: still one entry
        assert len(cache) == 5
    with open_journaled(tmp_path / "c.h5", "r") as file:
        assert len(HashedHDF5(file)) == 5


def test_an_incomplete_entry_is_not_counted(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "c.h5", "w") as file:
        cache = HashedHDF5(file)
        _fill(cache, 2)
        name = cache.entry_name(np.arange(1), META)
        entry = file[f"{name[:2]}/{name}"]
        assert isinstance(entry, h5py.Dataset)
        del entry.attrs["corelay.hashed_entry"]  # as a writer killed before marking it
        assert not cache.exists(np.arange(1), META)
        assert len(cache) == 1
        with pytest.raises(NoDataSource):
            cache.evict(np.arange(1), META)


def test_evict(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    with open_journaled(path, "w") as file:
        cache = HashedHDF5(file)
        _fill(cache, 3)
        cache.evict(np.arange(2), META)
        assert not cache.exists(np.arange(2), META)
        with pytest.raises(NoDataSource, match="no entry"):
            cache.read(np.arange(2), META)
        with pytest.raises(NoDataSource, match="no entry"):
            cache.evict(np.arange(2), META)
        assert len(cache) == 2
        # Written again after its eviction.
        cache.write(np.full(2, 9), np.arange(2), META)
        cache.evict(np.arange(2), META)
    with open_journaled(path, "r") as file:
        cache = HashedHDF5(file)
        assert len(cache) == 2
        assert not cache.exists(np.arange(2), META)
        np.testing.assert_array_equal(cache.read(np.arange(3), META), np.full(2, 2))
        with pytest.raises(NoDataTarget):
            cache.evict(np.arange(3), META)
        with pytest.raises(NoDataTarget):
            cache.clear()
        assert len(cache) == 2
    with pytest.raises(ValueError, match="closed"):
        cache.evict(np.arange(3), META)
    with pytest.raises(ValueError, match="closed"):
        len(cache)


def test_evict_of_an_unhashable_input_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    with open_journaled(path, "w") as file:
        cache = HashedHDF5(file)
        _fill(cache, 1)
        with pytest.raises(TypeError, match="unsupported type generator"):
            cache.evict((number for number in range(1)), META)
        assert len(cache) == 1


def test_clear_keeps_what_hashed_hdf5_did_not_write(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    with open_journaled(path, "w") as file:
        file["notes"] = "kept"
        cache = HashedHDF5(file)
        _fill(cache, 20)
        first_shard = sorted(name for name in file if len(name) == 2)[0]
        file[f"{first_shard}/mine"] = 1  # not an entry: its shard group stays, with it
        cache.clear()
        assert len(cache) == 0
        assert not cache.exists(np.arange(1), META)
        cache.clear()  # nothing left: harmless
    with h5py.File(path, "r") as file:
        assert sorted(file) == sorted(["notes", first_shard])
        shard = file[first_shard]
        assert isinstance(shard, h5py.Group) and list(shard) == ["mine"]
        assert META_GROUP not in file
    with open_journaled(path, "a") as file:
        cache = HashedHDF5(file)
        cache.write(np.ones(1), np.arange(1), META)  # the cache works after clearing
        np.testing.assert_array_equal(cache.read(np.arange(1), META), np.ones(1))
        assert len(cache) == 1


def test_evicted_and_cleared_entries_stay_gone_after_a_kill(tmp_path: Path) -> None:
    # Every change is flushed before the call returns: a process that exits without closing
    # the file (as a killed one does) leaves the file as the last call left it.
    import subprocess
    import sys

    path = tmp_path / "c.h5"
    script = (
        "import os, sys, numpy as np\n"
        "from corelay.io.journal import open_journaled\n"
        "from corelay.io.storage import HashedHDF5\n"
        "file = open_journaled(sys.argv[1], 'w')\n"
        "cache = HashedHDF5(file)\n"
        "for i in range(3): cache.write(np.full(2, i), np.arange(i + 1), {'step': 'embed'})\n"
        "cache.evict(np.arange(1), {'step': 'embed'})\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120)
    with open_journaled(path, "r") as file:
        cache = HashedHDF5(file)
        assert len(cache) == 2
        assert not cache.exists(np.arange(1), {"step": "embed"})
