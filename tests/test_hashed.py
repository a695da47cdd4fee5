"""HashedHDF5: exact keys, round trips, validation, atomic entries, plain-h5py readable layout."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from h5py import h5d

from corelay.io import _hashed, _hdf5
from corelay.io._hashed_meta import stored_meta_json
from corelay.io._hdf5 import KIND_ATTR
from corelay.io._keys import TEMP_PREFIX
from corelay.io.describe import (
    ContainerDescription,
    HashedGroupDescription,
    LeafDescription,
    describe_file,
    find_problems,
)
from corelay.io.hashing import ext_hash
from corelay.io.journal import open_journaled
from corelay.io.storage import HashedHDF5, HDF5Storage, NoDataSource
from corelay.io.tree import validate
from tests.cases import assert_same_tree

META: dict[str, Any] = {"function": "tests.step", "params": {"k": 3, "eps": np.float32(1e-3)}}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache.h5"


@pytest.fixture
def store(path: Path) -> Iterator[HashedHDF5]:
    with h5py.File(path, "w") as file:
        yield HashedHDF5(file.create_group("cache"))


def _group(parent: h5py.Group, name: str) -> h5py.Group:
    group = parent[name]
    assert isinstance(group, h5py.Group)
    return group


def _cache(file: h5py.File) -> h5py.Group:
    return _group(file, "cache")


def _values(output: object) -> list[Any]:
    assert isinstance(output, np.ndarray)
    values: list[Any] = output.tolist()
    return values


def _member(group: h5py.Group, name: str) -> Any:
    member = group[name]
    assert isinstance(member, h5py.Dataset)
    return member[()]


def _entry(store: HashedHDF5, data_in: Any, meta: Any) -> h5py.Group | h5py.Dataset:
    entry = store.base[_hashed.entry_path(store.entry_name(data_in, meta))]
    assert isinstance(entry, h5py.Group | h5py.Dataset)
    return entry


def _snapshot(group: h5py.Group) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Every member's name and attributes, recursively: equal snapshots, unchanged groups."""
    members: list[tuple[str, list[tuple[str, Any]]]] = [("", sorted(group.attrs.items()))]
    group.visititems(lambda name, obj: members.append((name, sorted(obj.attrs.items()))))
    return members


def _flip_last_bit(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    flipped = array.copy()
    flipped.reshape(-1).view(np.uint8)[-1] ^= 1
    return flipped


BASE_INPUT = np.linspace(1.0, 2.0, 6)
DIFFERENT_INPUTS = {
    "last-bit": _flip_last_bit(BASE_INPUT),
    "third-significant-digit": BASE_INPUT * 1.001,
    "dtype-float32": BASE_INPUT.astype(np.float32),
    "dtype-big-endian": BASE_INPUT.astype(">f8"),
    "shape": BASE_INPUT.reshape(2, 3),
    "shape-column": BASE_INPUT.reshape(6, 1),
    "tuple-of-it": (BASE_INPUT,),
    "list-of-it": [BASE_INPUT],
}


@pytest.mark.parametrize("other", DIFFERENT_INPUTS.values(), ids=DIFFERENT_INPUTS.keys())
def test_inputs_differing_in_any_bit_dtype_or_shape_are_other_entries(
    store: HashedHDF5, other: Any
) -> None:
    store.write(np.array([1]), BASE_INPUT, None)
    with pytest.raises(NoDataSource):
        store.read(other, None)
    store.write(np.array([2]), other, None)
    assert _values(store.read(BASE_INPUT, None)) == [1]
    assert _values(store.read(other, None)) == [2]
    assert store.entry_name(other, None) != store.entry_name(BASE_INPUT, None)


LAYOUT_EQUAL = {
    "fortran-order": np.asfortranarray(BASE_INPUT.reshape(2, 3)),
    "strided-view": np.linspace(1.0, 2.0, 11)[::2].reshape(2, 3)[:, ::1],
    "transposed": np.arange(6.0).reshape(3, 2).T,
}


@pytest.mark.parametrize("same", LAYOUT_EQUAL.values(), ids=LAYOUT_EQUAL.keys())
def test_memory_layout_does_not_matter(store: HashedHDF5, same: Any) -> None:
    c_ordered = np.ascontiguousarray(same)
    assert c_ordered.flags.c_contiguous
    store.write(np.array([7]), c_ordered, META)
    assert _values(store.read(same, META)) == [7]
    store.write(np.array([8]), same, META)  # the same entry, replaced
    assert _values(store.read(c_ordered, META)) == [8]
    name = store.entry_name(same, META)
    assert sorted(store.base) == sorted([name[:2], _hashed.META_GROUP])
    assert list(_group(store.base, name[:2])) == [name]


def test_meta_is_part_of_the_key(store: HashedHDF5) -> None:
    metas: list[Any] = [None, {}, {"a": 1}, {"a": 1.0}, {"a": True}, {"a": np.int64(1)}, "a"]
    for index, meta in enumerate(metas):
        store.write(np.array([index]), "in", meta)
    for index, meta in enumerate(metas):
        assert _values(store.read("in", meta)) == [index]
    # Dict order is not part of the key.
    store.write(np.array([9]), "in", {"x": 1, "y": 2})
    assert _values(store.read("in", {"y": 2, "x": 1})) == [9]


def test_entry_name_is_the_hash_of_input_and_meta_hashes(store: HashedHDF5) -> None:
    name = store.entry_name(BASE_INPUT, META)
    assert name == ext_hash((ext_hash(BASE_INPUT), ext_hash(META)))
    assert len(name) == 32
    assert int(name, 16) >= 0


def test_rewrite_replaces_the_entry(store: HashedHDF5) -> None:
    store.write(np.arange(3), "in", META)
    store.write((np.ones(2), (np.zeros(1),)), "in", META)
    assert_same_tree(store.read("in", META), (np.ones(2), (np.zeros(1),)))
    store.write(np.arange(4.0), "in", META)
    assert_same_tree(store.read("in", META), np.arange(4.0))
    name = store.entry_name("in", META)
    assert sorted(store.base) == sorted([name[:2], _hashed.META_GROUP])
    assert list(_group(store.base, name[:2])) == [name]


def test_absent_entry_is_no_data_source_naming_the_hash(store: HashedHDF5) -> None:
    name = store.entry_name("in", META)
    with pytest.raises(NoDataSource, match=name):
        store.read("in", META)
    store.write(np.arange(3), "other", META)
    with pytest.raises(NoDataSource, match=name):
        store.read("in", META)


def _hand_built(store: HashedHDF5, kind: str | None, attr: bool, tuple_group: bool) -> str:
    name = store.entry_name("in", META)
    path = _hashed.entry_path(name)
    entry: h5py.Group | h5py.Dataset
    if tuple_group:
        entry = store.base.create_group(path)
        entry["0"] = np.arange(3)
    else:
        entry = store.base.create_dataset(path, data=np.arange(3))
    if kind is not None:
        entry.attrs[KIND_ATTR] = kind
    if attr:
        hashes = (ext_hash("in"), ext_hash(np.arange(3)), ext_hash(META))
        entry.attrs[_hashed.ENTRY_ATTR] = np.bytes_("input={} output={} meta={}".format(*hashes))
    return name


@pytest.mark.parametrize(
    ("kind", "attr", "tuple_group"),
    [
        (None, False, False),  # killed before the attribute: an array
        ("tuple", False, True),  # killed before the attribute: a tuple
        (None, True, True),  # a group with the attribute that is not a tuple
        ("dict", False, True),  # an HDF5Storage dict at that path
        ("ndarray", False, False),  # an HDF5Storage array at that path
    ],
)
def test_incomplete_or_foreign_entries_are_no_data_source(
    store: HashedHDF5, kind: str | None, attr: bool, tuple_group: bool
) -> None:
    name = _hand_built(store, kind, attr, tuple_group)
    with pytest.raises(NoDataSource, match=name):
        store.read("in", META)
    # Writing replaces them.
    store.write(np.arange(5), "in", META)
    assert_same_tree(store.read("in", META), np.arange(5))


def test_upstream_entries_are_no_data_source(store: HashedHDF5) -> None:
    name = store.entry_name("in", META)
    for path in (name, _hashed.entry_path(name)):  # where corelay 1.0.0 puts it, and ours
        upstream = store.base.create_group(path)
        upstream["data"] = np.arange(3)
        for member in ("meta", "input", "output"):
            upstream[member] = '"json"'
        with pytest.raises(NoDataSource, match=name):
            store.read("in", META)
        del store.base[path]


def test_a_shard_that_is_not_a_group(store: HashedHDF5) -> None:
    name = store.entry_name("in", META)
    store.base[name[:2]] = np.arange(3)
    with pytest.raises(NoDataSource, match=name):
        store.read("in", META)
    before = _snapshot(store.base)
    with pytest.raises(ValueError, match=f"'{name[:2]}' in group '/cache' .* is not a group"):
        store.write(np.arange(5), "in", META)
    assert _snapshot(store.base) == before


def test_a_metadata_group_that_is_not_a_group(store: HashedHDF5) -> None:
    store.base[_hashed.META_GROUP] = np.arange(3)
    before = _snapshot(store.base)
    with pytest.raises(ValueError, match=r"'\.corelay-meta' in group '/cache' .* is not a group"):
        store.write(np.arange(5), "in", META)
    assert _snapshot(store.base) == before


def test_entries_read_without_their_stored_metadata(store: HashedHDF5) -> None:
    store.write(np.arange(3), "in", META)
    del store.base[_hashed.META_GROUP]
    assert_same_tree(store.read("in", META), np.arange(3))
    store.write(np.arange(4), "other", META)  # stores the metadata again
    assert list(_group(store.base, _hashed.META_GROUP)) == [ext_hash(META)]


def test_tuple_entry_missing_an_item_is_no_data_source(store: HashedHDF5) -> None:
    store.write((np.zeros(1), np.ones(1), np.ones(2)), "in", META)
    data = _entry(store, "in", META)
    assert isinstance(data, h5py.Group)
    del data["1"]
    with pytest.raises(NoDataSource, match="incomplete entry"):
        store.read("in", META)


def test_an_entry_left_complete_under_its_temporary_name_is_read(store: HashedHDF5) -> None:
    # What a writer killed between unlinking the old entry and moving in the new one leaves.
    store.write(np.arange(3), "in", META)
    name = store.entry_name("in", META)
    shard = _group(store.base, name[:2])
    shard.move(name, TEMP_PREFIX + name)
    assert_same_tree(store.read("in", META), np.arange(3))
    store.write(np.arange(4), "in", META)
    assert list(shard) == [name]
    assert_same_tree(store.read("in", META), np.arange(4))


def test_an_incomplete_temporary_entry_is_ignored_and_removed(store: HashedHDF5) -> None:
    name = store.entry_name("in", META)
    temp_path = f"{name[:2]}/{TEMP_PREFIX}{name}"
    store.base.create_dataset(temp_path, data=np.arange(2))
    with pytest.raises(NoDataSource):
        store.read("in", META)
    store.write(np.arange(3), "in", META)
    assert temp_path not in store.base
    assert list(_group(store.base, name[:2])) == [name]


def test_a_failed_write_leaves_nothing(store: HashedHDF5, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write(np.arange(3), "old", META)
    before = _snapshot(store.base)

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_hashed, "_set_entry_attr", fail)
    assert store.entry_name("new", META)[:2] != store.entry_name("old", META)[:2]
    with pytest.raises(OSError, match="disk full"):
        store.write(np.arange(4), "new", META)  # a new entry, in a new shard group
    with pytest.raises(OSError, match="disk full"):
        store.write(np.arange(4), "old", META)  # a replacement
    with pytest.raises(OSError, match="disk full"):
        store.write((np.arange(4),), "old", None)  # a new entry beside it, with new metadata
    assert _snapshot(store.base) == before
    monkeypatch.undo()
    assert_same_tree(store.read("old", META), np.arange(3))


def test_entries_are_readable_with_plain_h5py(path: Path) -> None:
    data_in = np.arange(4.0)
    meta = {"function": "mod.f", "kwargs": {"k": np.int8(3), "names": ["a", "b"]}, "x": None}
    output = (np.ones(2), (np.arange(3),))
    with h5py.File(path, "w") as file:
        store = HashedHDF5(file.create_group("cache"))
        store.write(output, data_in, meta)
        store.write(np.zeros(3, dtype=np.float32), data_in + 1, meta)
        name = store.entry_name(data_in, meta)
        other = store.entry_name(data_in + 1, meta)
    with h5py.File(path, "r") as file:
        cache = _cache(file)
        assert name == ext_hash((ext_hash(data_in), ext_hash(meta)))
        # The entry is the output, in a group named by the first two digits of its name.
        entry = cache[f"{name[:2]}/{name}"]
        assert isinstance(entry, h5py.Group)
        hashes = f"input={ext_hash(data_in)} output={ext_hash(output)} meta={ext_hash(meta)}"
        assert entry.attrs["corelay.hashed_entry"] == hashes.encode()
        assert entry.attrs["corelay.kind"] == "tuple"
        np.testing.assert_array_equal(_member(entry, "0"), np.ones(2))
        np.testing.assert_array_equal(_member(entry, "1/0"), np.arange(3))
        np.testing.assert_array_equal(_member(cache, f"{other[:2]}/{other}"), np.zeros(3))
        # Equal metadata is stored once, in the metadata group, named by its hash.
        assert list(_group(cache, ".corelay-meta")) == [ext_hash(meta)]
        stored_meta = _group(cache, f".corelay-meta/{ext_hash(meta)}")
        assert _member(stored_meta, "function") == b"mod.f"
        assert _member(stored_meta, "kwargs/k") == 3
    # The output and the metadata round-trip exactly through the shared codec.
    with HDF5Storage(path, "r") as storage:
        assert_same_tree(storage[f"cache/{name[:2]}/{name}"], output)
        assert_same_tree(storage[f"cache/.corelay-meta/{ext_hash(meta)}"], meta)


def test_entries_are_spread_over_groups_by_their_first_digits(store: HashedHDF5) -> None:
    names = {store.entry_name(index, None) for index in range(40)}
    for index in range(40):
        store.write(np.full(2, index), index, None)
    shards = {name[:2] for name in names}
    assert sorted(store.base) == sorted([*shards, _hashed.META_GROUP])
    assert {name for shard in shards for name in _group(store.base, shard)} == names
    for index in range(40):
        assert _values(store.read(index, None)) == [index, index]


@pytest.mark.parametrize(
    ("size", "layout"), [(1, h5d.COMPACT), (512, h5d.COMPACT), (513, h5d.CONTIGUOUS)]
)
def test_small_arrays_are_stored_in_the_dataset_header(
    store: HashedHDF5, size: int, layout: int
) -> None:
    output = np.arange(size, dtype=np.float64)  # 4 KiB at 512 elements
    store.write(output, "in", None)
    entry = _entry(store, "in", None)
    assert isinstance(entry, h5py.Dataset)
    assert entry.id.get_create_plist().get_layout() == layout
    assert_same_tree(store.read("in", None), output)


def test_inspect_describes_each_entry_with_its_metadata(path: Path) -> None:
    meta = {"step": "embed", "k": 4}
    with open_journaled(path, "w") as file:
        cache = file.create_group("cache")
        store = HashedHDF5(cache)
        store.write(np.arange(5.0), "a", meta)
        store.write((np.zeros(2), (np.ones(1),)), "b", None)
        complete = {store.entry_name("a", meta), store.entry_name("b", None)}
        # An incomplete entry, a temporary one, a bad one and one of corelay 1.0.0 beside them.
        incomplete = store.entry_name("c", None)
        cache[_hashed.entry_path(incomplete)] = np.arange(2)
        cache[f"{incomplete[:2]}/{TEMP_PREFIX}{incomplete}"] = np.arange(2)
        bad = store.entry_name("d", None)
        cache[_hashed.entry_path(bad)] = np.zeros(2, dtype="f4,i4")
        cache[_hashed.entry_path(bad)].attrs[_hashed.ENTRY_ATTR] = np.bytes_(
            f"input={ext_hash('d')} output={ext_hash('d')} meta={ext_hash(None)}"
        )
        upstream = "0" * 32
        for member in ("data", "input", "output", "meta"):
            cache[f"{upstream}/{member}"] = '"json"'
    description = describe_file(path)
    [group] = description.entries
    assert isinstance(group, HashedGroupDescription)
    entries = {entry.name: entry for entry in group.entries}
    assert set(entries) == {*complete, incomplete, bad, upstream}
    first = entries[store.entry_name("a", meta)]
    assert (first.layout, first.complete) == ("corelay", True)
    assert (first.input_hash, first.output_hash) == (ext_hash("a"), ext_hash(np.arange(5.0)))
    assert first.meta == {"step": "embed", "k": 4}
    assert isinstance(first.data, LeafDescription) and first.data.shape == (5,)
    second = entries[store.entry_name("b", None)]
    assert second.meta is None and isinstance(second.data, ContainerDescription)
    assert not entries[incomplete].complete and entries[incomplete].meta is None
    assert entries[upstream].layout == "corelay-1.0.0"
    assert find_problems(description) == [
        (
            f"/cache/{_hashed.entry_path(bad)}",
            "compound dtype [('f0', '<f4'), ('f1', '<i4')]: "
            "the library cannot hold structured data",
        )
    ]


def test_closed_file_is_value_error(path: Path) -> None:
    file = h5py.File(path, "w")
    store = HashedHDF5(file.create_group("cache"))
    store.write(np.arange(3), "in", None)
    file.close()
    with pytest.raises(ValueError, match="closed"):
        store.read("in", None)
    with pytest.raises(ValueError, match="closed"):
        store.write(np.arange(3), "in", None)


def test_base_can_be_swapped(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as first, h5py.File(tmp_path / "b.h5", "w") as second:
        store = HashedHDF5(first)
        store.write(np.arange(3), "in", META)
        store.base = second.create_group("g")
        with pytest.raises(NoDataSource):
            store.read("in", META)
        store.write(np.arange(4), "in", META)
        assert_same_tree(store.read("in", META), np.arange(4))
        assert_same_tree(HashedHDF5(first).read("in", META), np.arange(3))


def test_wrong_argument_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        HashedHDF5("cache.h5")  # type: ignore[arg-type]


def test_every_returned_write_is_flushed(path: Path) -> None:
    file = h5py.File(path, "w")
    store = HashedHDF5(file.create_group("cache"))
    store.write(np.arange(5), "in", META)
    check = subprocess.run(
        [sys.executable, "-c", _READ_BACK, str(path), store.entry_name("in", META)],
        capture_output=True,
        text=True,
        check=False,
    )
    file.close()
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "4.0"


_READ_BACK = """
import sys, h5py
with h5py.File(sys.argv[1], "r", locking=False) as file:
    print(float(file["cache"][sys.argv[2][:2]][sys.argv[2]][4]))
"""


def test_metadata_json_or_tree_reads_back(store: HashedHDF5) -> None:
    plain = {"processor": "attribution", "epsilon": 1e-6, "layer": [1, -0.0], "on": True}
    rich = {"shape": (3, 4), "weights": np.arange(3.0), "raw": b"x", "z": 1j}
    for meta in (plain, rich, None, "name", {"nan": float("nan")}):
        store.write(np.arange(2), "in", meta)
        assert_same_tree(store.read_meta(ext_hash(meta)), meta)
    stored = store.base[f"{_hashed.META_GROUP}/{ext_hash(plain)}"]
    assert isinstance(stored, h5py.Dataset) and KIND_ATTR not in stored.attrs
    assert stored_meta_json(stored) is not None  # one dataset, readable by plain h5py
    assert isinstance(store.base[f"{_hashed.META_GROUP}/{ext_hash(rich)}"], h5py.Group)
    with pytest.raises(NoDataSource):
        store.read_meta("0" * 32)
    with pytest.raises(ValueError, match="not a metadata hash"):
        store.read_meta("../x")


def test_metadata_in_the_old_layout_reads_back(store: HashedHDF5) -> None:
    meta = {"step": "embed", "k": 4}
    # As earlier versions stored every metadata tree: in the HDF5 codec's layout.
    meta_group = store.base.create_group(_hashed.META_GROUP)
    _hdf5.write_node(meta_group, ext_hash(meta), meta, validate(meta, "meta"))
    store.write(np.arange(2), "in", meta)  # finds it stored
    assert_same_tree(store.read_meta(ext_hash(meta)), meta)
    assert_same_tree(store.read("in", meta), np.arange(2))


def test_failed_metadata_write_leaves_nothing(
    store: HashedHDF5, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write(np.arange(2), "first", {"a": 1})
    before = _snapshot(store.base)

    create_dataset = _hdf5.create_dataset

    def fail(*args: Any) -> None:
        create_dataset(*args)  # written, under its temporary name, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_hdf5, "create_dataset", fail)
    with pytest.raises(OSError, match="No space"):
        store.write(np.arange(2), "second", {"a": 2})
    assert _snapshot(store.base) == before
