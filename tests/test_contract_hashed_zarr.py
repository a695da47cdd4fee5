"""HashedZarr passes the hashed cache contract of corelay.io.testing, on a directory."""

import shutil
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

from zarr.storage import LocalStore

from corelay.io.storage import HashedZarr, Mode
from corelay.io.testing import HashedCache, HashedCacheTests


class TestHashedZarr(HashedCacheTests):
    suffix = ".zarr"

    @contextmanager
    def open(self, path: Path, mode: Mode) -> Generator[HashedCache]:
        if mode == "w":
            shutil.rmtree(path, ignore_errors=True)
        # Read-only is a property of the store HashedZarr is given.
        yield HashedZarr(LocalStore(path, read_only=True) if mode == "r" else path)
