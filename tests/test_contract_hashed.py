"""HashedHDF5 passes the hashed cache contract of corelay.io.testing."""

from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

import h5py

from corelay.io.storage import HashedHDF5, Mode
from corelay.io.testing import HashedCache, HashedCacheTests


class TestHashedHDF5(HashedCacheTests):
    suffix = ".h5"

    @contextmanager
    def open(self, path: Path, mode: Mode) -> Generator[HashedCache]:
        with h5py.File(path, mode) as file:
            group = file["cache"] if mode == "r" else file.require_group("cache")
            assert isinstance(group, h5py.Group)
            yield HashedHDF5(group)
