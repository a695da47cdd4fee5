"""Every backend round-trips every tree of the shared table, and random trees, exactly."""

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.backends import BACKENDS, Backend
from tests.cases import TREE_CASES, assert_same_tree
from tests.strategies import trees


@pytest.mark.parametrize("tree", [case for _, case in TREE_CASES], ids=[i for i, _ in TREE_CASES])
def test_round_trip(backend: Backend, store_path: Path, tree: Any) -> None:
    with backend.open(store_path, "w") as storage:
        storage["key"] = tree
        assert_same_tree(storage["key"], tree)
    with backend.open(store_path, "r") as storage:
        assert_same_tree(storage["key"], tree)


def test_all_cases_in_one_file(backend: Backend, store_path: Path) -> None:
    with backend.open(store_path, "w") as storage:
        for case_id, tree in TREE_CASES:
            storage[case_id] = tree
    with backend.open(store_path, "r") as storage:
        assert set(storage.keys()) == {case_id for case_id, _ in TREE_CASES}
        for case_id, tree in TREE_CASES:
            assert_same_tree(storage[case_id], tree, case_id)


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
