"""The table of tree cases against every backend: what it accepts reads back exactly, what it
refuses raises the case's error and leaves the file as it was."""

from pathlib import Path

import h5py
import pytest

from tests.backends import CASE_BACKENDS, CaseBackend
from tests.cases import ACCEPTED, ANY_TEXT, CASES, REFUSED, TreeCase, assert_same_tree


@pytest.fixture(params=CASE_BACKENDS, ids=[backend.name for backend in CASE_BACKENDS])
def case_backend(request: pytest.FixtureRequest) -> CaseBackend:
    """Each backend of the case table in turn."""
    selected: CaseBackend = request.param
    return selected


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _contents(path: Path) -> object:
    """What a check of 'nothing was written' compares: every HDF5 object's name and
    attributes, the bytes of any other file, or of every file of a directory (Zarr)."""
    if path.is_dir():
        files = (item for item in path.rglob("*") if item.is_file())
        return {str(item.relative_to(path)): item.read_bytes() for item in files}
    if path.read_bytes()[:8] != _HDF5_SIGNATURE:
        return path.read_bytes()
    members: list[tuple[str, list[tuple[str, str]]]] = []

    def add(name: str, obj: h5py.Group | h5py.Dataset) -> None:
        members.append((name, sorted((key, repr(value)) for key, value in obj.attrs.items())))

    with h5py.File(path, "r") as file:
        add("", file)
        file.visititems(add)
    return members


def test_backends_differ_only_in_the_text_they_hold() -> None:
    names = {backend.name for backend in CASE_BACKENDS}
    assert names >= ANY_TEXT
    assert len(names) == len(CASE_BACKENDS)
    for case in CASES:
        assert case.accepted_by in (frozenset(), ANY_TEXT), case.id
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case_backend: CaseBackend, tmp_path: Path, case: TreeCase) -> None:
    path = tmp_path / f"store{case_backend.suffix}"
    refusal = case.outcome(case_backend.name)
    if refusal is None:
        with case_backend.open(path, "w") as store:
            store["key"] = case.tree
            assert_same_tree(store["key"], case.tree)
        with case_backend.open(path, "r") as store:
            assert_same_tree(store["key"], case.tree)
        return
    # Refused by a store that holds nothing yet: nothing is written, not even a group.
    with (
        case_backend.open(path, "w") as store,
        pytest.raises(refusal.error, match=f"^{refusal.pattern}"),
    ):
        store["key"] = case.tree
    never_written = tmp_path / f"never-written{case_backend.suffix}"
    with case_backend.open(never_written, "w"):
        pass
    assert _contents(path) == _contents(never_written)
    # Refused beside an old value, and in its place: the file stays as it was.
    with case_backend.open(path, "w") as store:
        store["old"] = {"kept": 1}
    before = _contents(path)
    with case_backend.open(path, "a") as store:
        with pytest.raises(refusal.error, match=f"^{refusal.pattern}"):
            store["new/sub/key"] = case.tree
        with pytest.raises(refusal.error, match=f"^{refusal.pattern}"):
            store["old"] = case.tree
        assert_same_tree(store["old"], {"kept": 1})
    assert _contents(path) == before


def test_all_accepted_cases_in_one_file(case_backend: CaseBackend, tmp_path: Path) -> None:
    path = tmp_path / f"store{case_backend.suffix}"
    with case_backend.open(path, "w") as store:
        for case in ACCEPTED:
            store[case.id] = case.tree
        for case in REFUSED:
            if case.outcome(case_backend.name) is None:
                store[case.id] = case.tree
    with case_backend.open(path, "r") as store:
        for case in CASES:
            if case.outcome(case_backend.name) is None:
                assert_same_tree(store[case.id], case.tree, case.id)
