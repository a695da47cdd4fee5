"""Every backend round-trips every tree of the shared table, and random trees, exactly."""

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.backends import BACKENDS, Backend
from tests.cases import assert_same_tree
from tests.strategies import trees


@pytest.mark.parametrize("backend", BACKENDS, ids=[backend.name for backend in BACKENDS])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees())
def test_random_trees_round_trip(backend: Backend, tree: Any) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"random{backend.suffix}"
        with backend.open(path, "w") as storage:
            storage["key"] = tree
        with backend.open(path, "r") as storage:
            assert_same_tree(storage["key"], tree)
