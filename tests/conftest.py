"""Fixtures shared by the test modules."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import BACKENDS, Backend
from tests.seaweed import S3Server, seaweed_server


@pytest.fixture(params=BACKENDS, ids=[backend.name for backend in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each keyed storage backend in turn."""
    selected: Backend = request.param
    return selected


@pytest.fixture
def store_path(backend: Backend, tmp_path: Path) -> Path:
    """A path for a storage file of the current backend."""
    return tmp_path / f"store{backend.suffix}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server with an empty bucket, for the whole test session."""
    with seaweed_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
