"""HDF5 files written by others, damaged or crafted: reads end quickly, follow nothing outside
the file unless asked, and raise only documented errors naming the path."""

import functools
import math
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from h5py import h5p, h5t

from corelay import cli
from corelay.cli import main
from corelay.io import _hdf5
from corelay.io.storage import HashedHDF5, HDF5Storage, NoDataSource, UnreadableNodeError
from corelay.io.tree import MAX_DEPTH
from tests.cases import assert_same_tree
from tests.memory import traced_peak


def _crafted(path: Path, build: Callable[[h5py.File], None]) -> Path:
    with h5py.File(path, "w") as file:
        build(file)
    return path


def _external_pair(tmp_path: Path) -> Path:
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["x"] = np.arange(4)

    def build(file: h5py.File) -> None:
        file["ext"] = h5py.ExternalLink("other.h5", "/x")
        file.create_group("g")["ext"] = h5py.ExternalLink("other.h5", "/x")
        file["plain"] = np.ones(2)

    return _crafted(tmp_path / "f.h5", build)


def test_external_link_is_not_followed_unless_asked(tmp_path: Path) -> None:
    path = _external_pair(tmp_path)
    with HDF5Storage(path, "r") as storage:
        with pytest.raises(UnreadableNodeError, match=r"/ext: external link to '/x' in 'other.h5'"):
            storage["ext"]
        with pytest.raises(UnreadableNodeError, match="/g/ext: external link"):
            storage["g"]
        with pytest.raises(UnreadableNodeError, match="follow_external"):
            _ = "ext" in storage
        assert_same_tree(storage["plain"], np.ones(2))
        view = storage.at(data_key="ext")
        view.follow_external = True  # opting in, for this view only
        assert_same_tree(view.read(), np.arange(4))
        with pytest.raises(UnreadableNodeError):
            storage["ext"]
    with HDF5Storage(path, "r") as storage:
        storage.follow_external = True
        assert_same_tree(storage["g"], {"ext": np.arange(4)})


def test_a_write_through_an_external_link_is_refused(tmp_path: Path) -> None:
    path = _external_pair(tmp_path)
    other = tmp_path / "other.h5"
    before = other.read_bytes()
    with HDF5Storage(path, "a") as storage:
        with pytest.raises(UnreadableNodeError, match=r"ext: external link"):
            storage["ext/new"] = np.zeros(2)
        assert_same_tree(storage["plain"], np.ones(2))
        storage["after"] = 1
    assert other.read_bytes() == before


def _virtual(tmp_path: Path) -> Path:
    def build(file: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
        layout[:] = h5py.VirtualSource("missing.h5", "x", shape=(3,))
        file.create_virtual_dataset("vds", layout, fillvalue=-1)
        (tmp_path / "raw.bin").write_bytes(np.arange(3.0).tobytes())
        file.create_dataset(
            "raw", shape=(3,), dtype="f8", external=[(str(tmp_path / "raw.bin"), 0, 24)]
        )

    return _crafted(tmp_path / "v.h5", build)


def test_virtual_and_externally_stored_datasets_are_not_read_unless_asked(tmp_path: Path) -> None:
    path = _virtual(tmp_path)
    with HDF5Storage(path, "r") as storage:
        with pytest.raises(UnreadableNodeError, match="/vds: a virtual dataset"):
            storage["vds"]
        with pytest.raises(UnreadableNodeError, match="/raw: a dataset stored in other files"):
            storage["raw"]
        storage.follow_external = True
        assert_same_tree(storage["vds"], np.full(3, -1.0))  # asked for: the fill values
        assert_same_tree(storage["raw"], np.arange(3.0))


def _shared_levels(file: h5py.File, depth: int) -> None:
    # Each level holds the next level's group twice: 2**depth paths through depth groups.
    group = file.create_group("dag")
    for _ in range(depth):
        child = group.create_group("a")
        group["b"] = child
        group = child
    group["leaf"] = np.zeros(1)


def test_shared_groups_are_refused_within_seconds(tmp_path: Path) -> None:
    path = _crafted(tmp_path / "dag.h5", lambda file: _shared_levels(file, 30))
    start = time.perf_counter()
    with (
        HDF5Storage(path, "r") as storage,
        pytest.raises(UnreadableNodeError, match=r"/dag/.*/b: a group reached a second time"),
    ):
        storage["dag"]
    assert time.perf_counter() - start < 5


def test_group_containing_itself_is_refused(tmp_path: Path) -> None:
    def build(file: h5py.File) -> None:
        group = file.create_group("loop")
        group.attrs[_hdf5.KIND_ATTR] = "dict"
        group["again"] = group

    path = _crafted(tmp_path / "loop.h5", build)
    with (
        HDF5Storage(path, "r") as storage,
        pytest.raises(UnreadableNodeError, match="/loop/again: a group reached a second time"),
    ):
        storage["loop"]


def test_shared_datasets_read_as_copies(tmp_path: Path) -> None:
    def build(file: h5py.File) -> None:
        group = file.create_group("g")
        group["a"] = np.arange(2)
        group["b"] = group["a"]

    with HDF5Storage(_crafted(tmp_path / "f.h5", build), "r") as storage:
        assert_same_tree(storage["g"], {"a": np.arange(2), "b": np.arange(2)})


def _declared(file: h5py.File) -> None:
    file.create_dataset("huge", shape=(2**28,), dtype="f8", chunks=(1024,))
    file.create_dataset("small", shape=(2**17,), dtype="f8", chunks=(1024,), fillvalue=7.0)


def test_declared_sizes_are_checked_before_allocating(tmp_path: Path) -> None:
    path = _crafted(tmp_path / "declared.h5", _declared)
    assert path.stat().st_size < 16_000
    with HDF5Storage(path, "r") as storage:
        with (
            traced_peak() as peak,
            pytest.raises(UnreadableNodeError, match=r"/huge: declares 2147483648 bytes"),
        ):
            storage["huge"]
        assert peak.bytes < 1_000_000
        assert_same_tree(storage["small"], np.full(2**17, 7.0))  # 1 MiB: under the default
        storage.max_read_bytes = 2**19
        with pytest.raises(UnreadableNodeError, match="raise max_read_bytes"):
            storage["small"]
    with h5py.File(path, "r") as file, pytest.raises(UnreadableNodeError, match="/huge: declares"):
        huge = file["huge"]
        assert isinstance(huge, h5py.Dataset)
        _hdf5.read_array(huge.id)  # what HashedHDF5 reads, with the default limit


def test_declared_sizes_add_up_over_one_read(tmp_path: Path) -> None:
    def build(file: h5py.File) -> None:
        group = file.create_group("many")
        for index in range(8):
            group.create_dataset(str(index), shape=(2**14,), dtype="f8", chunks=(1024,))

    with HDF5Storage(_crafted(tmp_path / "many.h5", build), "r") as storage:
        storage.max_read_bytes = 5 * 2**17  # five of the eight datasets
        with pytest.raises(UnreadableNodeError, match="/many/5: declares"):
            storage["many"]
        storage.max_read_bytes = 8 * 2**17
        assert len(storage["many"]) == 8


def test_written_data_never_counts_against_the_limit(tmp_path: Path) -> None:
    with HDF5Storage(tmp_path / "f.h5", "w") as storage:
        storage.max_read_bytes = 0
        tree: dict[str, Any] = {
            "a": np.arange(2**18.0),
            "b": ("text", np.array(["x", "yz"]), b"raw"),
        }
        storage["key"] = tree
        assert_same_tree(storage["key"], tree)


def test_dangling_soft_links(tmp_path: Path) -> None:
    def build(file: h5py.File) -> None:
        file["dangling"] = h5py.SoftLink("/nowhere")
        file.create_group("g")["dangling"] = h5py.SoftLink("/nowhere")

    with HDF5Storage(_crafted(tmp_path / "f.h5", build), "r") as storage:
        assert "dangling" not in storage
        with pytest.raises(NoDataSource, match="'dangling'"):
            storage["dangling"]
        with pytest.raises(
            UnreadableNodeError, match="/g/dangling: soft link to '/nowhere', which does not exist"
        ):
            storage["g"]


def test_cyclic_soft_links(tmp_path: Path) -> None:
    def build(file: h5py.File) -> None:
        group = file.create_group("g")
        group["one"] = h5py.SoftLink("/g/two")
        group["two"] = h5py.SoftLink("/g/one")
        file.create_group("up")["parent"] = h5py.SoftLink("/up")

    with HDF5Storage(_crafted(tmp_path / "f.h5", build), "r") as storage:
        with pytest.raises(UnreadableNodeError, match="/g/one: soft link to '/g/two' cannot be"):
            storage["g"]
        with pytest.raises(UnreadableNodeError, match="/up/parent: a group reached a second"):
            storage["up"]


_WRONG_KINDS: list[tuple[str, Callable[[h5py.File], None], str]] = [
    (
        "group-kind-ndarray",
        lambda file: file.create_group("x").attrs.create(_hdf5.KIND_ATTR, "ndarray"),
        "unknown corelay.kind 'ndarray' on a group",
    ),
    (
        "dataset-kind-dict",
        lambda file: file.create_dataset("x", data=1).attrs.create(_hdf5.KIND_ATTR, "dict"),
        "unknown corelay.kind 'dict' on a dataset",
    ),
    (
        "kind-not-a-string",
        lambda file: file.create_group("x").attrs.create(_hdf5.KIND_ATTR, 3),
        "the corelay.kind attribute is not a string",
    ),
    (
        "kind-array",
        lambda file: file.create_group("x").attrs.create(_hdf5.KIND_ATTR, ["dict", "list"]),
        "the corelay.kind attribute is not a string",
    ),
    (
        "str-kind-on-numbers",
        lambda file: file.create_dataset("x", data=[1, 2]).attrs.create(_hdf5.KIND_ATTR, "str"),
        "/x: cannot be read as a str",
    ),
    (
        "bad-unicode-dtype",
        lambda file: _with_attrs(
            file.create_dataset("x", data=np.array([b"a"])),
            {_hdf5.KIND_ATTR: "ndarray", _hdf5.DTYPE_ATTR: "<Q9"},
        ),
        "/x: cannot be read as a ndarray",
    ),
    (
        "unicode-dtype-not-a-string",
        lambda file: _with_attrs(
            file.create_dataset("x", data=np.array([b"a"])),
            {_hdf5.KIND_ATTR: "ndarray", _hdf5.DTYPE_ATTR: np.zeros(1000)},
        ),
        "/x: cannot be read as a ndarray: ValueError: the corelay.dtype attribute is not a string",
    ),
]


def _with_attrs(obj: h5py.Dataset | h5py.Group, attrs: dict[str, Any]) -> None:
    for name, value in attrs.items():
        obj.attrs[name] = value


@pytest.mark.parametrize(
    ("build", "message"),
    [(build, message) for _, build, message in _WRONG_KINDS],
    ids=[case for case, _, _ in _WRONG_KINDS],
)
def test_wrong_kind_attributes(
    tmp_path: Path, build: Callable[[h5py.File], None], message: str
) -> None:
    with (
        HDF5Storage(_crafted(tmp_path / "f.h5", build), "r") as storage,
        pytest.raises(UnreadableNodeError, match=message),
    ):
        storage["x"]


def test_named_datatypes(tmp_path: Path) -> None:
    def build(file: h5py.File) -> None:
        file["type"] = np.dtype("f8")
        file.create_group("g")["type"] = file["type"]

    with HDF5Storage(_crafted(tmp_path / "f.h5", build), "r") as storage:
        with pytest.raises(UnreadableNodeError, match="/type: a named datatype, not data"):
            storage["type"]
        with pytest.raises(UnreadableNodeError, match="/g/type: a named datatype"):
            storage["g"]


def _non_utf8_name(file: h5py.File) -> None:
    group = file.create_group("g")
    group["ok"] = 1
    lcpl = h5p.create(h5p.LINK_CREATE)
    lcpl.set_char_encoding(h5t.CSET_UTF8)
    group.id.links.create_hard(b"bad\xff", group.id, b"ok", lcpl=lcpl)


def test_member_names_that_are_not_utf8(tmp_path: Path) -> None:
    with (
        HDF5Storage(_crafted(tmp_path / "f.h5", _non_utf8_name), "r") as storage,
        pytest.raises(UnreadableNodeError, match=r"/g: member name b'bad\\xff' is not UTF-8"),
    ):
        storage["g"]


def test_foreign_names_reading_as_one_key(tmp_path: Path) -> None:
    def build(file: h5py.File) -> None:
        group = file.create_group("g")
        group["1"] = 1
        group["01"] = 2

    with (
        HDF5Storage(_crafted(tmp_path / "f.h5", build), "r") as storage,
        pytest.raises(UnreadableNodeError, match="reads as the same key 1"),
    ):
        storage["g"]


def test_foreign_groups_deeper_than_the_limit(tmp_path: Path) -> None:
    def build(file: h5py.File) -> None:
        group = file.create_group("deep")
        for _ in range(MAX_DEPTH + 20):
            group = group.create_group("d")

    with (
        HDF5Storage(_crafted(tmp_path / "f.h5", build), "r") as storage,
        pytest.raises(UnreadableNodeError, match=f"nested deeper than {MAX_DEPTH}"),
    ):
        storage["deep"]


def test_unreadable_nodes_are_value_errors() -> None:
    assert issubclass(UnreadableNodeError, ValueError)


# ---------------------------------------------------------------------------------- the CLI


def _hostile_file(path: Path) -> Path:
    def build(file: h5py.File) -> None:
        _shared_levels(file, 30)
        loop = file.create_group("loop")
        loop["again"] = loop
        deep = file.create_group("deep")
        for _ in range(MAX_DEPTH + 20):
            deep = deep.create_group("d")
        file["ext"] = h5py.ExternalLink("other.h5", "/x")
        layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
        layout[:] = h5py.VirtualSource("missing.h5", "x", shape=(3,))
        file.create_virtual_dataset("vds", layout, fillvalue=-1)
        file["dangling"] = h5py.SoftLink("/nowhere")
        file["c1"] = h5py.SoftLink("/c2")
        file["c2"] = h5py.SoftLink("/c1")
        file["type"] = np.dtype("f8")
        file.create_group("kind").attrs[_hdf5.KIND_ATTR] = np.array(["dict", "list"], dtype="S4")
        file.create_dataset("huge", shape=(2**28,), dtype="f8", chunks=(1024,))
        _non_utf8_name(file)

    return _crafted(path, build)


def test_validate_reports_every_hostile_node_within_seconds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _hostile_file(tmp_path / "hostile.h5")
    start = time.perf_counter()
    assert main(["validate", str(path)]) == 1
    assert time.perf_counter() - start < 10
    out, err = capsys.readouterr()
    assert err == ""
    problems = dict(line.strip().split(": ", 1) for line in out.splitlines()[1:])
    assert problems["/dag/b"].startswith("a group reached a second time")
    assert problems["/loop/again"].startswith("a group that contains itself")
    assert "nested deeper than" in problems["/deep" + "/d" * MAX_DEPTH]
    assert "external link to 'other.h5:/x'" in problems["/ext"]
    assert problems["/vds"].startswith("a virtual dataset")
    assert problems["/dangling"] == "dangling soft link to '/nowhere'"
    assert "too many links" in problems["/c1"]
    assert "named datatype" in problems["/type"]
    assert problems["/kind"] == "the corelay.kind attribute is not a string"
    assert "max_read_bytes" in problems["/huge"]
    assert "not UTF-8" in problems["/g/b'bad\\xff'"]


def test_inspect_of_hostile_files_prints_no_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _hostile_file(tmp_path / "hostile.h5")
    assert main(["inspect", str(path)]) == 0
    assert main(["inspect", "--json", str(path)]) == 0
    for key in ("dag", "loop", "deep", "ext", "c1", "dangling", "type", "kind", "g"):
        assert main(["inspect", str(path), key]) == 0, key
    assert "Traceback" not in capsys.readouterr().err


def test_cli_prints_one_line_for_unexpected_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cli, "describe_file", explode)
    assert main(["validate", str(tmp_path / "any.h5")]) == 2
    _, err = capsys.readouterr()
    assert err == "corelay-io: error: RecursionError: maximum recursion depth exceeded\n"


def test_inspect_of_a_key_behind_an_external_link_does_not_follow_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other.create_group("x")["y"] = np.arange(2)
    path = _crafted(
        tmp_path / "f.h5",
        lambda file: file.create_group("g").__setitem__("ext", h5py.ExternalLink("other.h5", "/x")),
    )
    assert main(["inspect", str(path), "g/ext/y"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("corelay-io: error: /g/ext: external link to '/x' in 'other.h5'")
    assert main(["inspect", str(path), "g/ext"]) == 0
    assert "external link" in capsys.readouterr().out


def test_inspect_of_hashed_metadata_with_shared_groups_ends_quickly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "hashed.h5"
    with h5py.File(path, "w") as file:
        # A tuple in the metadata: stored as a group (metadata JSON holds is one dataset).
        HashedHDF5(file.require_group("cache")).write(np.ones(2), np.ones(1), {"k": (1,)})
        metas = file["cache/.corelay-meta"]
        assert isinstance(metas, h5py.Group)
        [meta] = metas.values()
        assert isinstance(meta, h5py.Group)
        group = meta.create_group("dag")  # 8 links to the next level, 12 levels: 8**12 paths
        for _ in range(12):
            child = group.create_group("0")
            for index in range(1, 8):
                group[str(index)] = child
            group = child
        meta["outside"] = h5py.ExternalLink("other.h5", "/x")
    start = time.perf_counter()
    assert main(["inspect", "--json", str(path)]) == 0
    assert time.perf_counter() - start < 10
    out = capsys.readouterr().out
    assert "<a group shown before>" in out
    assert "external link to '/x' in 'other.h5'" in out


# Decompression bombs: a chunk that inflates far beyond what a chunk of its dataset holds.

_BOMB_BYTES = 1 << 28  # what HDF5's own filter would allocate for the bomb chunk


@functools.cache
def _gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(_BOMB_BYTES >> 20)]
    return b"".join(parts) + compressor.flush()


def _bomb_file(path: Path, shuffle: bool = False, dtype: str = "i8") -> Path:
    with h5py.File(path, "w") as file:
        data = np.arange(4, dtype=dtype)
        dataset = file.create_dataset(
            "k", data=data, chunks=(4,), compression="gzip", shuffle=shuffle
        )
        dataset.id.write_direct_chunk((0,), _gzip_bomb())
        file.create_group("g")["k"] = dataset  # the bomb inside a tree, too
        file["fine"] = np.arange(3)
    return path


@pytest.mark.parametrize("shuffle", [False, True], ids=["gzip", "gzip+shuffle"])
def test_gzip_bombs_are_refused_before_allocating(tmp_path: Path, shuffle: bool) -> None:
    path = _bomb_file(tmp_path / "bomb.h5", shuffle)
    start = time.perf_counter()
    with traced_peak() as peak:
        with HDF5Storage(path, "r") as storage:
            with pytest.raises(UnreadableNodeError, match=r"^/k: the gzip chunk at \(0,\) decomp"):
                storage["k"]
            with pytest.raises(UnreadableNodeError, match=r"^/g/k: the gzip chunk"):
                storage["g"]
            lazy = storage.lazy("k")
            with pytest.raises(UnreadableNodeError, match=r"'/k' in .*: the gzip chunk at"):
                lazy[1:3]
            with pytest.raises(UnreadableNodeError, match="the gzip chunk at"):
                np.asarray(lazy)
            assert_same_tree(storage["fine"], np.arange(3))
        with h5py.File(path, "r") as file:
            dataset = file["k"]
            assert isinstance(dataset, h5py.Dataset)
            # What HashedHDF5 reads entries with.
            with pytest.raises(UnreadableNodeError, match=r"^/k: the gzip chunk"):
                _hdf5.read_array(dataset.id)
    assert peak.bytes < 16 << 20, peak.bytes
    assert time.perf_counter() - start < 5


_PEAK_SCRIPT = """
import resource, sys
from corelay.io.storage import HDF5Storage, UnreadableNodeError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with HDF5Storage(sys.argv[1], "r") as storage:
    try:
        storage["k"]
    except UnreadableNodeError as error:
        print(error)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_a_gzip_bomb_does_not_raise_the_peak_memory_of_a_process(tmp_path: Path) -> None:
    path = _bomb_file(tmp_path / "bomb.h5")
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)], capture_output=True, text=True, check=True
    )
    message, grown = done.stdout.splitlines()
    assert message.startswith("/k: the gzip chunk at (0,) decompresses to more than 32 bytes")
    assert int(grown) < 64 << 20, grown


def test_inspect_of_a_gzip_bomb_ends_quickly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _bomb_file(tmp_path / "bomb.h5")
    start = time.perf_counter()
    with traced_peak() as peak:
        assert main(["inspect", str(path)]) == 0
        assert main(["inspect", "--json", str(path), "k"]) == 0
    assert peak.bytes < 32 << 20, peak.bytes
    assert time.perf_counter() - start < 10
    assert "Traceback" not in capsys.readouterr().err


def _zstd_frame(file: h5py.File, content: int, options: dict[str, Any]) -> bytes:
    # The chunk hdf5plugin's filter writes for ``content`` zero bytes: one zstd frame.
    zeros = np.zeros(content, np.uint8)
    dataset = file.create_dataset(f"frame-{content}", data=zeros, chunks=(content,), **options)
    return dataset.id.read_direct_chunk((0,))[1]


def test_zstd_bombs_are_refused_before_allocating(tmp_path: Path) -> None:
    hdf5plugin = pytest.importorskip("hdf5plugin")  # in the test extra: never skipped in CI
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as file:
        zstd: dict[str, Any] = dict(hdf5plugin.Zstd())
        options: dict[str, Any] = {"chunks": (4,), **zstd}
        bomb = file.create_dataset("k", data=np.arange(4), **options)
        bomb.id.write_direct_chunk((0,), _zstd_frame(file, 64 << 20, zstd))
        short = file.create_dataset("short", data=np.arange(4), **options)
        short.id.write_direct_chunk((0,), _zstd_frame(file, 16, zstd))
        file.create_dataset("junk", data=np.arange(4), **options).id.write_direct_chunk(
            (0,), b"not zstd at all"
        )
        file.create_dataset("fine", data=np.arange(10.0), **options)
    with traced_peak() as peak, HDF5Storage(path, "r") as storage:
        with pytest.raises(UnreadableNodeError, match=r"^/k: the zstd chunk at \(0,\) decl"):
            storage["k"]
        with pytest.raises(UnreadableNodeError, match=r"declares 16 bytes; .* holds 32"):
            storage["short"]
        with pytest.raises(UnreadableNodeError, match=r"^/junk: the chunk at .* not a zstd"):
            storage["junk"]
        with pytest.raises(UnreadableNodeError, match="the zstd chunk"):
            storage.lazy("k")[:1]
        assert_same_tree(storage["fine"], np.arange(10.0))
        assert_same_tree(storage.lazy("fine")[3:5], np.arange(3.0, 5.0))
    assert peak.bytes < 16 << 20, peak.bytes


def _truncated(good: bytes) -> bytes:
    return good[:-5]


def _corrupt(good: bytes) -> bytes:
    return b"\x00" + good[1:]


def _short(good: bytes) -> bytes:
    return zlib.compress(bytes(8))


def _trailing(good: bytes) -> bytes:
    return zlib.compress(bytes(32)) + b"trailing"


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (_truncated, "gzip: the stream is truncated"),
        (_corrupt, "gzip: Error"),
        (_short, "gzip: 8 bytes, not 32"),
        (_trailing, None),
    ],
    ids=["truncated", "corrupt", "short", "trailing"],
)
def test_damaged_gzip_chunks(
    tmp_path: Path, chunk: Callable[[bytes], bytes], message: str | None
) -> None:
    path = tmp_path / "damaged.h5"
    with h5py.File(path, "w") as file:
        dataset = file.create_dataset("k", data=np.arange(4), chunks=(4,), compression="gzip")
        dataset.id.write_direct_chunk((0,), chunk(dataset.id.read_direct_chunk((0,))[1]))
    with HDF5Storage(path, "r") as storage:
        if message is None:  # HDF5 ignores what follows the stream, and so does the library
            assert_same_tree(storage["k"], np.zeros(4, dtype=np.int64))
            return
        with pytest.raises(UnreadableNodeError, match=f"^/k: the chunk at .* damaged: {message}"):
            storage["k"]


def test_unknown_filters_are_refused_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "filters.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("k", data=np.arange(100), chunks=(10,), scaleoffset=0)
    with HDF5Storage(path, "r") as storage:
        with pytest.raises(UnreadableNodeError, match=r"^/k: filtered with HDF5 filter 6, whose"):
            storage["k"]
        with pytest.raises(UnreadableNodeError, match="filter 6"):
            storage.lazy("k")
    with h5py.File(path, "r") as file:
        dataset = file["k"]
        assert isinstance(dataset, h5py.Dataset)
        read = _hdf5.read_array(dataset.id, _hdf5.ReadLimits(any_filter=True))
        assert_same_tree(read, np.arange(100))


_ROUND_TRIP_DTYPES = [
    "?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16",
    ">i4", ">f8", ">c16", "S5",
]  # fmt: skip
_FILTERS: dict[str, dict[str, Any]] = {
    "gzip": {"compression": "gzip"},
    "shuffle+gzip": {"compression": "gzip", "shuffle": True},
    "gzip+fletcher32": {"compression": "gzip", "fletcher32": True},
    "all3": {"compression": "gzip", "shuffle": True, "fletcher32": True, "compression_opts": 9},
    "fletcher32": {"fletcher32": True},
    "shuffle": {"shuffle": True},
    "lzf": {"compression": "lzf", "shuffle": True},
}


def _values(dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(7)
    count = math.prod(shape)
    if dtype.kind == "S":
        return np.array([str(i).encode() for i in range(count)], dtype=dtype).reshape(shape)
    if dtype.kind == "b":
        flags: np.ndarray[Any, Any] = rng.integers(0, 2, count) == 1
        return flags.reshape(shape)
    raw: np.ndarray[Any, Any] = rng.integers(0, 256, count * dtype.itemsize, dtype=np.uint8)
    values = raw.view(dtype)
    if dtype.kind in "fc":  # random bytes, but no NaN: equal values compare equal
        values = np.asarray(np.nan_to_num(values), dtype=dtype)
    return values.reshape(shape)


def _filtered_pairs(file: h5py.File, options: dict[str, Any]) -> list[str]:
    # Each dataset twice: filtered, and contiguous ("plain/" + name), to read the same.
    shapes = [((10,), (4,)), ((7, 5, 3), (3, 2, 2)), ((0, 3), (2, 3)), ((1,), (1,))]
    names: list[str] = []
    plain = file.create_group("plain")
    for code in _ROUND_TRIP_DTYPES:
        for shape, chunks in shapes:
            name = f"{code.replace('>', 'be')}-{'x'.join(map(str, shape))}"
            values = _values(np.dtype(code), shape)
            maxshape = tuple(None for _ in shape)  # chunks may then exceed the shape
            file.create_dataset(name, data=values, chunks=chunks, maxshape=maxshape, **options)
            plain[name] = values
            names.append(name)
    if "compression" in options and "fletcher32" not in options:  # HDF5 refuses the others
        text = ["a", "bé", "", "long" * 20]
        file.create_dataset("text", data=text, chunks=(3,), **options)
        plain["text"] = text
        names.append("text")
    sparse = file.create_dataset("sparse", shape=(9, 4), dtype="f4", chunks=(2, 3), **options)
    sparse[4:6, 1:2] = 5  # two chunks written, the others hold the fill value
    filled = file.create_dataset(
        "filled", shape=(5,), dtype="i2", chunks=(2,), fillvalue=-3, **options
    )
    filled[0] = 1
    plain["sparse"], plain["filled"] = sparse[()], filled[()]
    return [*names, "sparse", "filled"]


def _assert_pairs_read_alike(path: Path, names: list[str]) -> None:
    with HDF5Storage(path, "r") as storage:
        for name in names:
            read, expected = storage[name], storage["plain/" + name]
            assert isinstance(read, np.ndarray), name
            assert isinstance(expected, np.ndarray), name
            assert_same_tree(read, expected)
        lazy = storage.lazy("i8-7x5x3")
        assert_same_tree(lazy[1:6:2, ::2, 1:], storage["plain/i8-7x5x3"][1:6:2, ::2, 1:])


@pytest.mark.parametrize("filters", list(_FILTERS), ids=list(_FILTERS))
def test_filtered_datasets_written_by_h5py_read_exactly(tmp_path: Path, filters: str) -> None:
    path = tmp_path / "filtered.h5"
    with h5py.File(path, "w") as file:
        names = _filtered_pairs(file, _FILTERS[filters])
    _assert_pairs_read_alike(path, names)


def test_zstd_datasets_written_by_h5py_read_exactly(tmp_path: Path) -> None:
    hdf5plugin = pytest.importorskip("hdf5plugin")  # in the test extra: never skipped in CI
    path = tmp_path / "zstd.h5"
    with h5py.File(path, "w") as file:
        names = _filtered_pairs(file, {**hdf5plugin.Zstd(), "shuffle": True})
    _assert_pairs_read_alike(path, names)


def test_gzip_datasets_written_by_the_storage_read_exactly(tmp_path: Path) -> None:
    values = np.random.default_rng(1).normal(size=(300, 1000))
    with HDF5Storage(tmp_path / "s.h5", "w", compression="gzip") as storage:
        storage["x"] = {"a": values, "b": values[:, :3].astype("f2")}
    with HDF5Storage(tmp_path / "s.h5", "r") as storage:
        assert_same_tree(storage["x"], {"a": values, "b": values[:, :3].astype("f2")})


def test_a_lazy_slice_with_a_long_step_checks_only_the_chunks_it_selects(tmp_path: Path) -> None:
    path = tmp_path / "sparse.h5"
    with HDF5Storage(path, "w", compression="gzip") as storage:
        storage["k"] = np.arange(4.0)
    with h5py.File(path, "a") as file:
        attributes = dict(file["k"].attrs)
        del file["k"]
        # 10**8 chunks of one element declared, none written: a file of a few kilobytes.
        sparse = file.create_dataset("k", (10**8,), "f8", chunks=(1,), compression="gzip")
        sparse[5 * 10**7] = 3.0
        for name, value in attributes.items():
            sparse.attrs[name] = value
    with HDF5Storage(path, "r") as storage:
        lazy = storage.lazy("k")
        started = time.monotonic()
        block = lazy[:: 10**7]
        # Walking every chunk between the first and last index selected takes minutes.
        assert time.monotonic() - started < 5
        np.testing.assert_array_equal(block, [0, 0, 0, 0, 0, 3, 0, 0, 0, 0])
        np.testing.assert_array_equal(lazy[6 * 10**7 : 4 * 10**7 : -(10**7)], [0, 3])


def test_a_filtered_chunk_far_beyond_its_dataset_counts_against_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big-chunk.h5"
    with h5py.File(path, "w") as file:
        dataset = file.create_dataset(
            "k", (4,), "f8", maxshape=(None,), chunks=(2**23,), compression="gzip"
        )
        dataset[:] = [7, 7, 7, 7]  # a 64 MiB chunk, a few KiB in the file
    with HDF5Storage(path, "r") as storage:
        storage.max_read_bytes = 16 * 2**20
        with traced_peak() as peak:
            with pytest.raises(UnreadableNodeError, match="max_read_bytes"):
                storage["k"]
            with pytest.raises(UnreadableNodeError, match="max_read_bytes"):
                storage.lazy("k")
        assert peak.bytes < 8 * 2**20
        storage.max_read_bytes = 128 * 2**20
        assert storage["k"].tolist() == [7, 7, 7, 7]
