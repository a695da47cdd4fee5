"""``corelay-io --version``: the version, and whose corelay.io.storage is in use."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import corelay.io.storage
from corelay import _installed
from corelay._installed import Installation, file_hash, judge, recorded_hash, report
from corelay.cli import main


def test_version_names_this_package_and_the_storage_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    version = metadata.version("corelay-io-storage")
    assert lines[0].startswith(f"corelay-io-storage {version}")
    assert lines[1] == (
        f"corelay.io.storage: corelay-io-storage's, {Path(corelay.io.storage.__file__)}"
    )
    expected = "corelay: not installed" if _upstream_version() is None else "corelay 1.0.0"
    assert lines[2].startswith(expected)


def _upstream_version() -> str | None:
    try:
        return metadata.version("corelay")
    except metadata.PackageNotFoundError:
        return None


def test_version_from_the_command_line() -> None:
    script = Path(sys.executable).with_name("corelay-io")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "corelay.io.storage: corelay-io-storage's" in result.stdout


def test_installation_of_this_environment() -> None:
    found = _installed.installation()
    assert found.version == metadata.version("corelay-io-storage")
    assert found.storage_file == Path(corelay.io.storage.__file__)
    assert found.owner == "this package"
    # An editable install records no hash of the file; a regular one records its hash.
    recorded = recorded_hash(metadata.distribution("corelay-io-storage"), "corelay/io/storage.py")
    assert found.editable == (recorded is None)
    if recorded is not None:
        assert recorded == file_hash(Path(corelay.io.storage.__file__))


def test_file_hash_is_the_record_form(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"")
    # sha256 of nothing, urlsafe base64 without padding, as pip writes it into RECORD files.
    assert file_hash(path) == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


@pytest.mark.parametrize(
    ("actual", "ours", "upstream", "editable", "owner"),
    [
        ("a", "a", "b", False, "this package"),
        ("b", "a", "b", False, "corelay"),
        ("a", "a", None, False, "this package"),
        ("c", "a", "b", False, "unknown"),
        ("c", None, "b", True, "this package"),
        ("b", None, "b", True, "corelay"),
        ("c", None, None, False, "unknown"),
        (None, "a", "b", False, "unknown"),
    ],
)
def test_judge(
    actual: str | None, ours: str | None, upstream: str | None, editable: bool, owner: str
) -> None:
    assert judge(actual, ours, upstream, editable) == owner


def _installation(owner: _installed.Owner, upstream: str | None) -> Installation:
    return Installation("0.1.0", upstream, Path("/site/corelay/io/storage.py"), owner, False)


def test_report_when_this_package_replaced_corelay() -> None:
    lines = report(_installation("this package", "1.0.0"))
    assert lines[0] == "corelay-io-storage 0.1.0"
    assert lines[1] == "corelay.io.storage: corelay-io-storage's, /site/corelay/io/storage.py"
    assert lines[2].startswith("corelay 1.0.0: installed too; this package replaced its ")
    assert all(file in lines[2] for file in _installed.SHARED_FILES)


def test_report_when_corelay_replaced_this_package() -> None:
    lines = report(_installation("corelay", "1.0.0"))
    assert lines[1] == "corelay.io.storage: corelay 1.0.0's, /site/corelay/io/storage.py"
    assert "installed after this package" in lines[2]
    assert "pip install --force-reinstall --no-deps corelay-io-storage" in lines[2]


def test_report_of_a_modified_file() -> None:
    lines = report(_installation("unknown", None))
    assert "neither installed distribution's" in lines[1]
    assert lines[2] == "corelay: not installed"
