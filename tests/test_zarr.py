"""ZarrStorage and HashedZarr beyond the shared tables: layout, compression, the hashed cache."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import AsyncGroup, GroupMetadata
from zarr.core.sync import sync
from zarr.storage import LocalStore, StorePath

from corelay.io._keys import TEMP_PREFIX
from corelay.io.memoize import memoize
from corelay.io.storage import HashedHDF5, HashedZarr, NoDataSource, NoDataTarget, ZarrStorage
from tests.cases import TREE_CASES, assert_same_tree

_ROOT = Path(__file__).parent.parent


def _files(path: Path) -> set[str]:
    return {str(item.relative_to(path)) for item in path.rglob("*")}


def _plain_zarr(script: str, *arguments: str) -> str:
    """Runs ``script`` with zarr only (this package is not importable) and returns its output."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.modules['corelay'] = None\n" + script,
            *arguments,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


_READ_ARRAY = """
import sys, zarr
key = zarr.open_group(sys.argv[1], mode="r")[sys.argv[2]]
value = key[key.attrs["corelay.value"]]
array = value[sys.argv[3]] if sys.argv[3] else value
print([type(codec).__name__ for codec in array.compressors], array[...].tolist())
"""


def test_arrays_are_plain_zarr_compressed_by_default(tmp_path: Path) -> None:
    with ZarrStorage(tmp_path / "s.zarr", "w") as storage:
        storage["result"] = {"attribution": np.arange(6.0), "labels": np.array(["a", "bb"])}
    path = str(tmp_path / "s.zarr")
    assert _plain_zarr(_READ_ARRAY, path, "result", "attribution") == (
        "['ZstdCodec'] [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]"
    )
    assert _plain_zarr(_READ_ARRAY, path, "result", "labels") == "['ZstdCodec'] ['a', 'bb']"


@pytest.mark.parametrize(("compression", "codecs"), [("gzip", "['GzipCodec']"), (None, "[]")])
def test_compression_choice(tmp_path: Path, compression: Any, codecs: str) -> None:
    with ZarrStorage(tmp_path / "s.zarr", "w", compression=compression) as storage:
        storage["a"] = np.arange(3)
        assert_same_tree(storage["a"], np.arange(3))
    assert _plain_zarr(_READ_ARRAY, str(tmp_path / "s.zarr"), "a", "") == f"{codecs} [0, 1, 2]"


def test_invalid_compression_touches_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="compression='lzf'"):
        ZarrStorage(tmp_path / "s.zarr", "w", compression="lzf")  # type: ignore[arg-type]
    assert not (tmp_path / "s.zarr").exists()


def test_replacing_leaves_one_value(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["a/b"] = np.zeros(10)
        storage["a/b"] = {"x": np.ones(3)}
        storage["a/b"] = "now a str"
        assert storage["a/b"] == "now a str"
        assert_same_tree(storage["a"], {"b": "now a str"})
    members = [name for name in os.listdir(path / "a" / "b") if name.startswith(TEMP_PREFIX)]
    assert len(members) == 1


def test_refuses_what_is_not_a_zarr_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a Zarr store"):
        ZarrStorage(tmp_path, "w")
    with pytest.raises(FileExistsError, match="is a file"):
        ZarrStorage(tmp_path / "notes.txt", "a")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_array_on_the_key_path_is_value_error(tmp_path: Path) -> None:
    _plain_zarr(
        "import sys, zarr; zarr.create_array(sys.argv[1], name='a', shape=(2,), dtype='i4')",
        str(tmp_path / "s.zarr"),
    )
    storage = ZarrStorage(tmp_path / "s.zarr", "a")
    with storage, pytest.raises(ValueError, match="'a' is an array, not a group"):
        storage["a/b"] = 1


def test_reads_stores_of_other_programs(tmp_path: Path) -> None:
    script = """
import sys, numpy, zarr
root = zarr.open_group(sys.argv[1], mode="w")
root.create_array("values", data=numpy.arange(4.0))
root.create_group("inner").create_array("0", data=numpy.array(7))
"""
    _plain_zarr(script, str(tmp_path / "other.zarr"))
    with ZarrStorage(tmp_path / "other.zarr", "r") as storage:
        assert sorted(storage.keys()) == ["inner", "values"]
        assert_same_tree(storage["values"], np.arange(4.0))
        assert storage["inner"] == {0: np.int64(7)}


def test_without_zarr_the_core_works_and_zarr_names_the_extra(tmp_path: Path) -> None:
    script = f"""
import sys
sys.modules["zarr"] = None
from corelay.io.storage import HDF5Storage, HashedZarr, ZarrStorage
with HDF5Storage({str(tmp_path / "s.h5")!r}, "w") as storage:
    storage["a"] = 1
for make in (lambda: ZarrStorage({str(tmp_path / "z")!r}, "a"), lambda: HashedZarr("x")):
    try:
        make()
    except ImportError as error:
        print(error)
"""
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert all('pip install "corelay-io-storage[zarr]"' in line for line in lines)
    assert not (tmp_path / "z").exists()


# HashedZarr


@pytest.mark.parametrize(
    "tree", [case for _, case in TREE_CASES[:20]], ids=[i for i, _ in TREE_CASES[:20]]
)
def test_hashed_round_trip(tmp_path: Path, tree: Any) -> None:
    cache = HashedZarr(tmp_path / "cache.zarr")
    cache.write(tree, np.arange(3), {"p": 1})
    assert_same_tree(HashedZarr(tmp_path / "cache.zarr").read(np.arange(3), {"p": 1}), tree)


def test_hashed_entry_names_are_hashed_hdf5_names(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "c.h5", "w") as file:
        names = HashedHDF5(file).entry_name(np.ones(3), {"a": 1})
    cache = HashedZarr(tmp_path / "cache.zarr")
    assert cache.entry_name(np.ones(3), {"a": 1}) == names
    cache.write(np.zeros(2), np.ones(3), {"a": 1})
    assert (tmp_path / "cache.zarr" / names[:2] / names / "zarr.json").is_file()


def test_hashed_absent_and_other_meta(tmp_path: Path) -> None:
    cache = HashedZarr(tmp_path / "cache.zarr")
    cache.write(np.zeros(2), 1, "meta")
    with pytest.raises(NoDataSource, match=cache.entry_name(1, "other")):
        cache.read(1, "other")
    with pytest.raises(NoDataSource):
        cache.read(2, "meta")


def test_hashed_rejected_output_writes_nothing(tmp_path: Path) -> None:
    cache = HashedZarr(tmp_path / "cache.zarr")
    before = _files(tmp_path / "cache.zarr")
    unstorable: Any = (np.zeros(2), {"fn": lambda: None})
    with pytest.raises(TypeError, match=r"data_out\[1\]\['fn'\]: unsupported type function"):
        cache.write(unstorable, 1, None)
    with pytest.raises(TypeError, match=r"meta\['f'\]: unsupported type function"):
        cache.write(np.zeros(2), 1, {"f": lambda: None})
    assert _files(tmp_path / "cache.zarr") == before


def test_hashed_same_output_is_not_rewritten_other_output_replaces(tmp_path: Path) -> None:
    path = tmp_path / "cache.zarr"
    cache = HashedZarr(path)
    cache.write(np.arange(5), "in", None)
    name = cache.entry_name("in", None)
    document = path / name[:2] / name / "zarr.json"
    written = document.stat().st_mtime_ns
    cache.write(np.arange(5), "in", None)
    assert document.stat().st_mtime_ns == written
    cache.write((np.ones(2),), "in", None)
    assert_same_tree(cache.read("in", None), (np.ones(2),))
    versions = [n for n in os.listdir(path / name[:2] / name) if n.startswith(TEMP_PREFIX)]
    assert len(versions) == 1


def test_hashed_read_only_store(tmp_path: Path) -> None:
    HashedZarr(tmp_path / "cache.zarr").write(np.ones(2), 1, None)
    cache = HashedZarr(LocalStore(tmp_path / "cache.zarr", read_only=True))
    assert_same_tree(cache.read(1, None), np.ones(2))
    with pytest.raises(NoDataTarget, match="read-only"):
        cache.write(np.ones(2), 2, None)


def plain_group(path: Path) -> zarr.Group:
    """A Zarr v3 root group at ``path``, made as another program makes one."""
    store = LocalStore(path)
    sync(
        store.set(
            "zarr.json",
            GroupMetadata().to_buffer_dict(default_buffer_prototype())["zarr.json"],
        )
    )
    return zarr.Group(AsyncGroup(GroupMetadata(), StorePath(store)))


def test_hashed_in_a_plain_group(tmp_path: Path) -> None:
    group = plain_group(tmp_path / "project.zarr").create_group("cache")
    cache = HashedZarr(group)
    cache.write(np.ones(2), 1, None)
    name = cache.entry_name(1, None)
    assert (tmp_path / "project.zarr" / "cache" / name[:2] / name / "zarr.json").is_file()
    again = plain_group(tmp_path / "project.zarr")["cache"]
    assert isinstance(again, zarr.Group)
    assert_same_tree(HashedZarr(again).read(1, None), np.ones(2))


_SQUARE_CALLS: list[int] = []  # a global: memoize keys closures by their closed-over values


def test_memoize_with_hashed_zarr(tmp_path: Path) -> None:
    @memoize(HashedZarr(tmp_path / "cache.zarr"))
    def square(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        _SQUARE_CALLS.append(1)
        return values**2

    _SQUARE_CALLS.clear()
    first = square(np.arange(4))
    second = square(np.arange(4))
    assert_same_tree(second, first)
    assert len(_SQUARE_CALLS) == 1


def test_deleting_a_key_removes_it_and_leaves_the_others(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["a/b"] = np.arange(3)
        storage["a/c"] = {"x": 1}
        del storage["a/b"]
        assert "a/b" not in storage and not (path / "a" / "b").exists()
        assert storage["a/c"] == {"x": 1}
        with pytest.raises(NoDataSource, match="'a/b'"):
            del storage["a/b"]
    with ZarrStorage(path, "r") as storage, pytest.raises(NoDataTarget):
        del storage["a/c"]


@pytest.mark.parametrize(
    "value", [np.complex64(-0j), np.array([-0.0, -0.0]), np.float32(-0.0)], ids=repr
)
def test_negative_zeros_keep_their_sign(tmp_path: Path, value: Any) -> None:
    with ZarrStorage(tmp_path / "s.zarr", "w") as storage:
        storage["z"] = value
        assert np.asarray(storage["z"]).tobytes() == np.asarray(value).tobytes()


def test_the_name_of_zarr_metadata_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "names.zarr"
    with ZarrStorage(path, "w") as storage:
        storage["k"] = 1
        before = sorted(p.relative_to(path) for p in path.rglob("*"))
        with pytest.raises(ValueError, match=r"'zarr\.json'.*'x/zarr\.json'"):
            storage["k"] = {"x": {"zarr.json": np.arange(3), "y": 2}}
        with pytest.raises(ValueError, match=r"cannot write key 'a/zarr\.json'"):
            storage["a/zarr.json"] = 1
        with pytest.raises(ValueError, match=r"cannot append to key 'zarr\.json'"):
            storage.append("zarr.json", np.arange(3))
        assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
        assert storage["k"] == 1
    cache = HashedZarr(tmp_path / "cache.zarr")
    with pytest.raises(ValueError, match=r"zarr\.json"):
        cache.write({"zarr.json": 1}, "input", None)
    with pytest.raises(NoDataSource):
        cache.read("input", None)


def test_a_store_created_by_another_writer_while_opening_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two writers opening one new store on an object store: the other one's root group appears
    # between this one looking for it and listing the prefix.
    import corelay.io._zarr.layout as layout

    store = LocalStore(tmp_path / "s.zarr")
    HashedZarr(store).write(1, "input", None)  # the other writer, done first here
    real_get_doc = layout.get_doc
    looked: list[str] = []

    async def late_get_doc(store: Any, path: str) -> Any:
        looked.append(path)
        return None if len(looked) == 1 else await real_get_doc(store, path)

    monkeypatch.setattr(layout, "get_doc", late_get_doc)
    assert HashedZarr(store).read("input", None) == 1
    assert len(looked) >= 2
