"""Fixtures shared by the test modules."""

from pathlib import Path

import pytest

from tests.backends import BACKENDS, Backend


@pytest.fixture(params=BACKENDS, ids=[backend.name for backend in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each keyed storage backend in turn."""
    selected: Backend = request.param
    return selected


@pytest.fixture
def store_path(backend: Backend, tmp_path: Path) -> Path:
    """A path for a storage file of the current backend."""
    return tmp_path / f"store{backend.suffix}"
