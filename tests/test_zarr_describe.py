"""`corelay-io inspect` and `validate` on local Zarr stores: described from metadata alone."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from corelay.io.describe import describe_file, find_problems
from corelay.io.errors import NoDataSource
from corelay.io.storage import HashedZarr, ZarrStorage
from tests.test_cli import run
from tests.test_zarr import plain_group


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["a/b"] = {"x": np.arange(5.0), "y": (1, 2.5, "s", None, b"by")}
        storage["labels"] = np.array([b"ab", b"c"])
        storage["top"] = [np.float32(1)]
    return path


def _value_dir(key: Path) -> Path:
    # The member a key's pointer names (see corelay.io._zarr).
    document = json.loads((key / "zarr.json").read_text())
    value: str = document["attributes"]["corelay.value"]
    return key / value


def test_inspect_shows_the_stored_tree(capsys: pytest.CaptureFixture[str], store: Path) -> None:
    status, out, err = run(capsys, "inspect", store)
    assert (status, err) == (0, "")
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert lines[0].startswith(f"{store}: Zarr store, ") and lines[0].endswith(", 3 keys")
    assert "x ndarray <f8 (5,) 40 B" in lines
    assert "y/ tuple 5 items" in lines
    assert '4 bytes = "by"' in lines
    assert "labels ndarray |S2 (2,) ascii, 2 bytes 4 B" in lines
    assert "0 generic <f4 () 4 B" in lines


def test_describe_one_key_and_an_absent_one(store: Path) -> None:
    (entry,) = describe_file(store, "a/b").entries
    assert entry.node == "container" and entry.name == "a/b"
    assert [child.name for child in entry.children] == ["x", "y"]
    with pytest.raises(NoDataSource, match="no key 'a/nope'"):
        describe_file(store, "a/nope")


def test_describe_reads_no_array_data(store: Path) -> None:
    # Chunks gone: only metadata documents are left, and the description is the same.
    before = describe_file(store).model_dump()
    value = _value_dir(store / "a" / "b")
    shutil.rmtree(value / "x" / "c")
    assert describe_file(store).model_dump()["entries"] == before["entries"]


def test_validate_accepts_a_store_and_finds_problems(
    capsys: pytest.CaptureFixture[str], store: Path
) -> None:
    status, out, _ = run(capsys, "validate", store)
    assert status == 0 and ": valid: all " in out
    value = _value_dir(store / "a" / "b")
    (value / "y" / "3" / "zarr.json").unlink()
    document = json.loads((value / "x" / "zarr.json").read_text())
    document["attributes"]["corelay.kind"] = "set"
    (value / "x" / "zarr.json").write_text(json.dumps(document))
    problems = dict(find_problems(describe_file(store)))
    assert set(problems) == {"/a/b/x", "/a/b/y/3"}
    assert problems["/a/b/x"] == "unknown kind 'set'"
    assert "no Zarr metadata" in problems["/a/b/y/3"]
    status, out, _ = run(capsys, "validate", store)
    assert status == 1 and "2 nodes the library cannot hold" in out


def test_a_store_of_another_program_reads_as_plain_groups(tmp_path: Path) -> None:
    path = tmp_path / "other.zarr"
    root = plain_group(path)
    root.create_group("g").create_array("v", data=np.arange(3, dtype="<i2"))
    root.attrs["note"] = "made by zarr"
    (group,) = describe_file(path).entries
    assert group.node == "container" and not group.recorded
    (leaf,) = group.children
    assert leaf.node == "leaf" and (leaf.dtype, leaf.shape, leaf.recorded) == ("<i2", (3,), True)


def test_a_hashed_zarr_store_is_described(tmp_path: Path) -> None:
    cache = HashedZarr(tmp_path / "cache.zarr")
    cache.write(np.ones(4), "input", {"step": 1})
    description = describe_file(tmp_path / "cache.zarr")
    assert description.format == "zarr"
    assert not find_problems(description)


def test_a_directory_that_is_not_a_store_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = run(capsys, "inspect", tmp_path)
    assert status == 2 and "is a directory that is not a Zarr v3 store" in err
