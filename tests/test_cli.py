"""The corelay-io command: inspect, validate, schema and demo, and its handling of bad input."""

import contextlib
import io
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, cast

import h5py
import numpy as np
import pytest
from jsonschema import Draft202012Validator

import corelay.cli
from corelay.cli import main
from corelay.io.describe import (
    VALUE_BYTES,
    ContainerDescription,
    FileDescription,
    HashedGroupDescription,
    LeafDescription,
    describe_file,
)
from corelay.io.journal import open_journaled
from corelay.io.storage import HashedHDF5, HDF5Storage, PickleStorage

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upstream"
SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "schemas" / "file-description.json").read_text()
)


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def inspect_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> dict[str, Any]:
    status, out, err = run(capsys, "inspect", "--json", *argv)
    assert (status, err) == (0, "")
    loaded: dict[str, Any] = json.loads(out)
    validator: Any = Draft202012Validator(SCHEMA)
    validator.validate(loaded)
    return loaded


@pytest.fixture
def ours(tmp_path: Path) -> Path:
    """An HDF5Storage file with every kind of node."""
    path = tmp_path / "ours.h5"
    with HDF5Storage(path, "w") as storage:
        storage["analysis"] = {
            "attribution": np.zeros((4, 8, 8), dtype=np.float32),
            "labels": np.array(["cat", "dog", "cat", "ship"]),
            "codes": np.array([b"ab", b"c"]),
            "pair": (np.eye(2), 3),
            "steps": [1.5, "two", None, b"four", True, 2j],
            "seed": np.int64(7),
        }
        storage["group/nested"] = np.arange(3)
    return path


@pytest.fixture
def hashed(tmp_path: Path) -> Path:
    """A file with a HashedHDF5 group of two entries."""
    path = tmp_path / "hashed.h5"
    with open_journaled(path, "w") as file:
        cache = HashedHDF5(file.require_group("cache"))
        cache.write(np.arange(5.0), np.ones(3), {"step": "embed", "k": 4})
        cache.write((np.zeros(2), (np.ones(1),)), "input", None)
    return path


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """A plain h5py file with nodes the library cannot hold, and nodes it can."""
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as file:
        file["fine/values"] = np.arange(4)
        file["fine/name"] = "héllo"
        file.create_dataset("compound", data=np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]))
        file.create_dataset("refs", data=np.array([file["fine"].ref], dtype=h5py.ref_dtype))
        file.create_dataset("ragged", (2,), dtype=h5py.vlen_dtype(np.int32))
        file["dangling"] = h5py.SoftLink("/nowhere")
        file["outside"] = h5py.ExternalLink("other.h5", "/x")
        file["clash/1"] = 1
        file["clash/01"] = 2
    return path


# ---------------------------------------------------------------------------------- inspect


def test_inspect_shows_names_kinds_dtypes_shapes_sizes(
    capsys: pytest.CaptureFixture[str], ours: Path
) -> None:
    status, out, err = run(capsys, "inspect", ours)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{ours}: HDF5 file, ")
    assert lines[0].endswith(", 2 keys")
    text = "\n".join(lines)
    assert "analysis/" in text
    assert any("attribution" in line and "<f4  (4, 8, 8)  1.0 KiB" in line for line in lines)
    assert any("labels" in line and "<U4  (4,)" in line and "utf-8" in line for line in lines)
    assert any("codes" in line and "|S2  (2,)  ascii, 2 bytes" in line for line in lines)
    assert any("pair/" in line and "tuple" in line and "2 items" in line for line in lines)
    assert any("steps/" in line and "list" in line and "6 items" in line for line in lines)
    assert any(line.split()[:2] == ["seed", "generic"] for line in lines)
    # Every kind is recorded, but that of the group 'group/nested' created on its way.
    assert [line.split()[:2] for line in lines if "*" in line.split("  (")[0]] == [
        ["group/", "dict*"],
        ["(*:", "no"],
    ]


def test_inspect_json_describes_the_recorded_tree(
    capsys: pytest.CaptureFixture[str], ours: Path
) -> None:
    described = FileDescription.model_validate(inspect_json(capsys, ours))
    analysis = described.entries[0]
    assert isinstance(analysis, ContainerDescription)
    assert (analysis.name, analysis.kind, analysis.recorded) == ("analysis", "dict", True)
    children = {child.name: child for child in analysis.children}
    assert list(children) == ["attribution", "labels", "codes", "pair", "steps", "seed"]
    labels = children["labels"]
    assert isinstance(labels, LeafDescription)
    assert (labels.kind, labels.dtype, labels.shape) == ("ndarray", "<U4", (4,))
    assert labels.string_info is not None and labels.string_info.encoding == "utf-8"
    steps = children["steps"]
    assert isinstance(steps, ContainerDescription)
    assert [child.kind for child in steps.children if isinstance(child, LeafDescription)] == [
        "float",
        "str",
        "none",
        "bytes",
        "bool",
        "complex",
    ]


def test_inspect_one_key(capsys: pytest.CaptureFixture[str], ours: Path) -> None:
    described = inspect_json(capsys, ours, "group/nested")
    assert described["key"] == "group/nested"
    [entry] = described["entries"]
    assert (entry["name"], entry["kind"], entry["shape"]) == ("group/nested", "ndarray", [3])
    status, out, _ = run(capsys, "inspect", ours, "analysis/pair")
    assert status == 0
    assert "analysis/pair/" in out and "tuple" in out


def test_inspect_hashed_group_one_line_per_entry(
    capsys: pytest.CaptureFixture[str], hashed: Path
) -> None:
    status, out, _ = run(capsys, "inspect", hashed)
    assert status == 0
    lines = out.splitlines()
    cache_line = next(index for index, line in enumerate(lines) if "cache/" in line)
    assert "HashedHDF5 cache, 2 entries" in lines[cache_line]
    entries = lines[cache_line + 1 : cache_line + 3]
    assert any(
        "ndarray <f8  (5,)" in line and 'meta {"step": "embed", "k": 4}' in line for line in entries
    )
    assert any("tuple (2 items)" in line and "meta null" in line for line in entries)
    assert all(" in " in line and " out " in line for line in entries)
    assert ".corelay-meta" not in out


def test_inspect_json_hashed_entries(capsys: pytest.CaptureFixture[str], hashed: Path) -> None:
    described = FileDescription.model_validate(inspect_json(capsys, hashed))
    [cache] = described.entries
    assert isinstance(cache, HashedGroupDescription)
    with open_journaled(hashed, "r") as file:
        group = file["cache"]
        assert isinstance(group, h5py.Group)
        store = HashedHDF5(group)
        expected = store.entry_name(np.ones(3), {"step": "embed", "k": 4})
    by_name = {entry.name: entry for entry in cache.entries}
    entry = by_name[expected]
    assert entry.complete and entry.layout == "corelay"
    assert isinstance(entry.input_hash, str) and len(entry.input_hash) == 32
    assert entry.meta == {"step": "embed", "k": 4}
    assert isinstance(entry.data, LeafDescription) and entry.data.shape == (5,)


_FIXTURES = ["hdf5storage.h5", "hashedhdf5.h5", "picklestorage.pkl"]


@pytest.mark.parametrize("name", _FIXTURES)
def test_inspect_reads_corelay_1_0_0_files(capsys: pytest.CaptureFixture[str], name: str) -> None:
    status, out, err = run(capsys, "inspect", FIXTURES / name)
    assert (status, err) == (0, "")
    assert len(out.splitlines()) > 3
    inspect_json(capsys, FIXTURES / name)


def test_inspect_upstream_hdf5storage_marks_unrecorded_kinds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(capsys, "inspect", FIXTURES / "hdf5storage.h5")
    lines = out.splitlines()
    assert any(line.split()[:2] == ["tuple/", "dict*"] for line in lines)
    assert any(line.split()[:3] == ["string", "str*", "|O"] for line in lines)
    assert lines[-1].startswith("(*: no kind recorded")


def test_inspect_upstream_hashed_entries(capsys: pytest.CaptureFixture[str]) -> None:
    described = inspect_json(capsys, FIXTURES / "hashedhdf5.h5")
    [group] = described["entries"]
    assert group["node"] == "hashed"
    entries = {entry["name"]: entry for entry in group["entries"]}
    entry = entries["6abad01d8a58734a8d2ff6fc36d48772"]
    assert entry["layout"] == "corelay-1.0.0"
    assert entry["meta"] == {"processor": "Example", "step": 1}
    assert entry["input_hash"] == "f81df56463b4b8973407d7ec16fcfe52"


def test_inspect_pickle_storage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "store.pkl"
    with PickleStorage(path, "w") as storage:
        storage["run"] = {"maps": np.zeros((2, 3), dtype=np.float32), "tag": "x"}
        storage["count"] = 3
    status, out, _ = run(capsys, "inspect", path)
    assert status == 0
    assert out.splitlines()[0].endswith(", 2 records")
    assert any("maps" in line and "<f4  (2, 3)  24 B" in line for line in out.splitlines())
    assert inspect_json(capsys, path, "count")["entries"][0]["kind"] == "int"


def test_inspect_does_not_read_datasets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # 8 TB that were never written: reading any of it would take forever or fail.
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("huge", shape=(10**6, 10**6), dtype="<f8", chunks=(1000, 1000))
    [entry] = inspect_json(capsys, path)["entries"]
    assert entry["nbytes"] == 8 * 10**12
    assert entry["stored_bytes"] == 0
    status, out, _ = run(capsys, "inspect", path)
    assert status == 0 and "7.3 TiB" in out
    # Reading it is refused by default, before allocating: validate says so.
    status, out, _ = run(capsys, "validate", path)
    assert status == 1
    assert "/huge: declares 8000000000000 bytes more than the file holds" in out
    assert "max_read_bytes" in out


def _leaves(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if node["node"] == "leaf":
        yield node
    for child in node.get("children", []):
        yield from _leaves(child)
    for entry in node.get("entries", []):
        if entry.get("data") is not None:
            yield from _leaves(entry["data"])


def _json_only(value: object) -> None:
    """Fails unless ``value`` is made of JSON types only, with no Python repr in a string."""
    if isinstance(value, dict):
        for key, item in cast("dict[object, object]", value).items():
            assert isinstance(key, str)
            _json_only(item)
    elif isinstance(value, list):
        for item in cast("list[object]", value):
            _json_only(item)
    else:
        assert value is None or isinstance(value, bool | int | float | str), value
        if isinstance(value, str):
            assert not value.startswith(("{'", "('", "array(", "OrderedDict")), value


@pytest.fixture
def values(tmp_path: Path) -> Path:
    path = tmp_path / "values.h5"
    with HDF5Storage(path, "w") as storage:
        storage["run"] = {
            "seed": 7,
            "rate": 0.25,
            "ok": True,
            "z": 1 - 2j,
            "bad": float("nan"),
            "name": "résumé",
            "raw": b"ab\x00",
            "nothing": None,
            "scale": np.float32(1.5),
            "long": "x" * (VALUE_BYTES + 1),
            "maps": np.zeros((2, 2)),
        }
    with h5py.File(path, "a") as file:
        file["run"].attrs["author"] = "ana"
        file["run"].attrs["version"] = np.int64(3)
        file["run"].attrs["empty"] = h5py.Empty("<f8")
        file["run/maps"].attrs["units"] = "m/s"
        file["run/maps"].attrs["window"] = np.array([1.0, 2.0])
        file["run/maps"].attrs["big"] = np.zeros(1000)
    return path


def test_inspect_shows_small_scalar_and_string_values(
    capsys: pytest.CaptureFixture[str], values: Path
) -> None:
    status, out, _ = run(capsys, "inspect", values)
    assert status == 0
    shown = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert shown["seed"].endswith("  = 7")
    assert shown["rate"].endswith("  = 0.25")
    assert shown["ok"].endswith("  = true")
    assert shown["z"].endswith("  = [1.0, -2.0]")
    assert shown["bad"].endswith('  = "nan"')
    assert shown["name"].endswith('  = "résumé"')
    assert shown["raw"].endswith(r'  = "ab\\x00"')  # JSON escapes the backslash
    assert shown["scale"].endswith("  = 1.5")
    # Over the limit, or not a scalar: no value.
    assert "=" not in shown["long"]
    assert "=" not in shown["maps"] and "=" not in shown["nothing"]


def test_inspect_json_values(capsys: pytest.CaptureFixture[str], values: Path) -> None:
    described = inspect_json(capsys, values)
    leaves = {leaf["name"]: leaf for leaf in _leaves(described["entries"][0])}
    assert {name: leaf["value"] for name, leaf in leaves.items()} == {
        "seed": 7,
        "rate": 0.25,
        "ok": True,
        "z": [1.0, -2.0],
        "bad": "nan",
        "name": "résumé",
        "raw": "ab\\x00",
        "nothing": None,
        "scale": 1.5,
        "long": None,
        "maps": None,
    }
    _json_only(described)


def test_inspect_shows_attributes(capsys: pytest.CaptureFixture[str], values: Path) -> None:
    status, out, _ = run(capsys, "inspect", values)
    assert status == 0
    lines = out.splitlines()
    run_line = next(index for index, line in enumerate(lines) if line.split()[0] == "run/")
    # The group's attributes come right under it, one level deeper.
    assert lines[run_line + 1].split() == ["@author", '"ana"']
    assert lines[run_line + 2].split() == ["@version", "3"]
    shown = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert shown["@units"] == '"m/s"'
    assert shown["@window"] == "[1.0, 2.0]"
    assert shown["@big"] == '{"dtype": "<f8", "shape": [1000]}'
    # The library's own attributes are shown as the kinds they record, not as attributes.
    assert "corelay." not in out


def test_inspect_json_attributes(capsys: pytest.CaptureFixture[str], values: Path) -> None:
    [group] = inspect_json(capsys, values)["entries"]
    assert group["attrs"] == {"author": "ana", "version": 3, "empty": None}
    maps = next(child for child in group["children"] if child["name"] == "maps")
    assert maps["attrs"] == {
        "units": "m/s",
        "window": [1.0, 2.0],
        "big": {"dtype": "<f8", "shape": [1000]},
    }
    seed = next(child for child in group["children"] if child["name"] == "seed")
    assert seed["attrs"] == {}


def test_inspect_json_is_json_all_the_way_down(
    capsys: pytest.CaptureFixture[str], ours: Path, hashed: Path, tmp_path: Path
) -> None:
    meta_path = tmp_path / "meta.h5"
    meta = {"params": (1, 2.5, [np.arange(3), np.zeros(100)]), "name": "x", "flag": None}
    with open_journaled(meta_path, "w") as file:
        HashedHDF5(file.require_group("cache")).write(np.ones(2), np.ones(1), meta)
    for path in (ours, hashed, meta_path, *(FIXTURES / name for name in sorted(_FIXTURES))):
        _json_only(inspect_json(capsys, path))
    [cache] = inspect_json(capsys, meta_path)["entries"]
    assert cache["entries"][0]["meta"] == {
        "params": [1, 2.5, [[0, 1, 2], {"dtype": "<f8", "shape": [100]}]],
        "name": "x",
        "flag": None,
    }


def test_inspect_meta_of_many_members_is_cut_short(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "many.h5"
    with open_journaled(path, "w") as file:
        HashedHDF5(file.require_group("cache")).write(
            np.ones(2), np.ones(1), {f"k{index}": index for index in range(70)}
        )
    [cache] = inspect_json(capsys, path)["entries"]
    meta: dict[str, Any] = cache["entries"][0]["meta"]
    assert len(meta) == 65 and meta["..."] == "6 more"
    status, out, _ = run(capsys, "inspect", path)
    assert status == 0
    [line] = [line for line in out.splitlines() if " meta " in line]
    assert line.endswith("…") and len(line.split(" meta ", 1)[1]) == 120


def test_inspect_pickle_values(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "store.pkl"
    with PickleStorage(path, "w") as storage:
        storage["run"] = {"n": 3, "tag": "x", "big": "y" * 1000, "g": np.int16(-2)}
    [record] = inspect_json(capsys, path)["entries"]
    assert {child["name"]: child["value"] for child in record["children"]} == {
        "n": 3,
        "tag": "x",
        "big": None,
        "g": -2,
    }


# ---------------------------------------------------------------------------------- validate


def test_validate_accepts_valid_files(
    capsys: pytest.CaptureFixture[str], ours: Path, hashed: Path
) -> None:
    for path in (ours, hashed, *(FIXTURES / name for name in ("hdf5storage.h5", "hashedhdf5.h5"))):
        status, out, err = run(capsys, "validate", path)
        assert (status, err) == (0, ""), out
        assert ": valid: all " in out


def test_validate_lists_each_offending_path(
    capsys: pytest.CaptureFixture[str], foreign: Path
) -> None:
    status, out, err = run(capsys, "validate", foreign)
    assert (status, err) == (1, "")
    problems = dict(line.strip().split(": ", 1) for line in out.splitlines()[1:])
    assert set(problems) == {"/compound", "/refs", "/ragged", "/dangling", "/outside", "/clash"}
    assert "compound dtype" in problems["/compound"]
    assert "object references" in problems["/refs"]
    assert "variable-length sequences" in problems["/ragged"]
    assert "dangling soft link" in problems["/dangling"]
    assert "external link" in problems["/outside"]
    assert "both read as key 1" in problems["/clash"]
    assert out.splitlines()[0] == f"{foreign}: 6 nodes the library cannot hold:"


def test_validate_finds_incomplete_recorded_tuples(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "broken.h5"
    with HDF5Storage(path, "w") as storage:
        storage["t"] = (np.zeros(1), np.ones(1), np.full(1, 2.0))
    with h5py.File(path, "a") as file:
        del file["t/1"]
    status, out, _ = run(capsys, "validate", path)
    assert status == 1
    assert "/t: incomplete tuple: no item '1'" in out


def test_validate_pickle_problems(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "records.pkl"
    with path.open("wb") as file:
        pickle.dump({"data": {"ok": 1, "bad": {1, 2}}, "key": "sets"}, file)
        pickle.dump({"data": date(2024, 1, 1), "key": "code"}, file)
        pickle.dump({"data": {1: "int key"}, "key": "keys"}, file)
    status, out, _ = run(capsys, "validate", path)
    assert status == 1
    problems = dict(line.strip().split(": ", 1) for line in out.splitlines()[1:])
    assert problems["sets['bad']"].startswith("unsupported type set")
    assert "refused to load global 'datetime.date'" in problems["code"]
    assert "keys must be str" in problems["keys[1]"]


def test_validate_warns_about_a_torn_pickle_record(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "torn.pkl"
    with PickleStorage(path, "w") as storage:
        storage["a"] = np.arange(100)
        storage["b"] = np.arange(100)
    path.write_bytes(path.read_bytes()[:-50])
    status, out, err = run(capsys, "validate", path)
    assert status == 0
    assert "valid" in out
    assert err.startswith("corelay-io: warning: ") and "torn record" in err
    assert len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path: Path, ours: Path) -> Iterator[tuple[str, list[str], str]]:
    text = tmp_path / "notes.txt"
    text.write_text("not a storage file\n")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(ours.read_bytes()[:3000])
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x05not a pickle at all" * 10)
    yield "missing", ["inspect", str(tmp_path / "missing.h5")], "missing.h5: no such file"
    yield "not hdf5", ["inspect", str(text)], "neither an HDF5 file nor a file of pickle records"
    yield "truncated", ["inspect", str(truncated)], "truncated"
    yield "empty", ["validate", str(empty)], "is an empty file"
    yield "directory", ["inspect", str(tmp_path)], "is a directory"
    yield "absent key", ["inspect", str(ours), "nope"], "no key 'nope'"
    yield "invalid key", ["inspect", str(ours), "a//b"], "invalid key 'a//b'"
    yield "absent nested key", ["inspect", str(ours), "analysis/nope/x"], "no key"
    yield "corrupt pickle", ["inspect", str(garbage)], "not a pickle"
    yield "absent pickle key", ["inspect", str(FIXTURES / "picklestorage.pkl"), "x"], "no key 'x'"


def test_bad_input_gives_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ours: Path
) -> None:
    for case, argv, expected in _bad_inputs(tmp_path, ours):
        status, out, err = run(capsys, *argv)
        assert status == 2, case
        assert out == "", case
        assert len(err.splitlines()) == 1, (case, err)
        assert err.startswith("corelay-io: error: "), (case, err)
        assert expected in err, (case, err)


def test_bad_input_in_a_real_process_shows_no_traceback(tmp_path: Path) -> None:
    not_hdf5 = tmp_path / "x.h5"
    not_hdf5.write_text("hello")
    for argv in (["inspect", str(tmp_path / "missing.h5")], ["validate", str(not_hdf5)]):
        result = subprocess.run(
            [sys.executable, "-m", "corelay.io", *argv],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["bogus"], ["schema"], ["inspect"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------- progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ours: Path
) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(corelay.cli, "PROGRESS_DELAY", 0.0)
    assert main(["inspect", str(ours)]) == 0
    shown = terminal.getvalue()
    assert shown.startswith(f"\rreading {ours}: 1")
    assert shown.endswith("\r\x1b[K")  # the line is cleared when done
    assert "\x1b" not in capsys.readouterr().out


def test_no_progress_when_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ours: Path
) -> None:
    monkeypatch.setattr(corelay.cli, "PROGRESS_DELAY", 0.0)
    status, _, err = run(capsys, "validate", ours)
    assert (status, err) == (0, "")


def test_no_progress_for_quick_operations(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ours: Path
) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(corelay.cli, "PROGRESS_DELAY", 3600.0)
    assert main(["inspect", str(ours)]) == 0
    assert terminal.getvalue() == ""


# ---------------------------------------------------------------------------------- demo


STEPS = ["make_samples", "attribute", "spectral_embedding", "cluster"]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache file of one run of the demo (copy it to change it)."""
    path = tmp_path_factory.mktemp("demo") / "demo.h5"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["demo", "--path", str(path)]) == 0
    return path


def _run_section(out: str, number: int) -> str:
    start = out.index(f"run {number} (")
    return out[start : out.index("clusters:" if number == 2 else "run 2 (", start)]


def _statuses(section: str) -> dict[str, str]:
    words = (line.split() for line in section.splitlines()[1:])
    return {line[0]: line[1] for line in words if line and line[0] in STEPS}


def test_demo_computes_then_hits_the_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "demo.h5"
    status, out, err = run(capsys, "demo", "--path", path)
    assert (status, err) == (0, "")
    run_1, run_2 = _run_section(out, 1), _run_section(out, 2)
    assert run_1.startswith("run 1 (empty cache)")
    assert _statuses(run_1) == dict.fromkeys(STEPS, "computed")
    assert _statuses(run_2) == dict.fromkeys(STEPS, "cached")
    assert "read from the cache: no step" in run_1
    assert f"read from the cache: {', '.join(STEPS)}" in run_2
    assert "run 2 returned the same clusters" in out
    assert "a new file, kept: the next run with this --path reuses the cache" in " ".join(
        out.split()
    )
    assert f"$ corelay-io inspect {path}" in out
    assert out.count("HashedHDF5 cache, 1 entry") == 4
    described = describe_file(path)
    assert sorted(entry.name for entry in described.entries) == sorted(STEPS)
    assert main(["validate", str(path)]) == 0


def test_demo_run_again_on_its_file_reuses_the_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, demo_cache: Path
) -> None:
    path = Path(shutil.copy(demo_cache, tmp_path / "demo.h5"))
    status, out, err = run(capsys, "demo", "--path", path)
    assert (status, err) == (0, "")
    assert "the cache file of an earlier demo: its cached steps are reused" in " ".join(out.split())
    run_1 = _run_section(out, 1)
    assert run_1.startswith("run 1 (the cache of an earlier demo, reused)")
    assert _statuses(run_1) == dict.fromkeys(STEPS, "cached")
    assert f"read from the cache: {', '.join(STEPS)}" in run_1
    assert "run 2 returned the same clusters" in out
    # Reused, not rewritten: still one entry per step.
    assert out.count("HashedHDF5 cache, 1 entry") == 4


def test_demo_reuses_a_partial_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, demo_cache: Path
) -> None:
    path = Path(shutil.copy(demo_cache, tmp_path / "demo.h5"))
    with h5py.File(path, "a") as file:
        del file["spectral_embedding"], file["cluster"]
    status, out, _ = run(capsys, "demo", "--path", path)
    assert status == 0
    run_1 = _run_section(out, 1)
    assert _statuses(run_1) == {
        "make_samples": "cached",
        "attribute": "cached",
        "spectral_embedding": "computed",
        "cluster": "computed",
    }
    assert "read from the cache: make_samples, attribute\n" in run_1


def test_demo_defaults_to_a_temporary_directory_it_removes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, temporary = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temporary.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    status, out, err = run(capsys, "demo")
    assert (status, err) == (0, "")
    assert "in a temporary directory, removed at the end" in " ".join(out.split())
    [inspected] = [line for line in out.splitlines() if line.startswith("$ corelay-io inspect ")]
    used = Path(inspected.removeprefix("$ corelay-io inspect "))
    assert used.name == "corelay-demo.h5"
    assert used.parent.parent == temporary
    assert _statuses(_run_section(out, 1)) == dict.fromkeys(STEPS, "computed")
    assert list(work.iterdir()) == []
    assert list(temporary.iterdir()) == []


def test_demo_does_not_touch_other_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ours: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    for path in (notes, ours):
        before = path.read_bytes()
        status, out, err = run(capsys, "demo", "--path", path)
        assert (status, out) == (2, "")
        assert "is not a cache file of the demo; not touching it" in err
        assert path.read_bytes() == before


def test_describe_file_checks_its_arguments(ours: Path) -> None:
    bad: Any = 3
    with pytest.raises(TypeError):
        describe_file(bad)
    with pytest.raises(TypeError):
        describe_file(ours, key=bad)


def test_console_script_is_declared() -> None:
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'corelay-io = "corelay.cli:main"' in pyproject
