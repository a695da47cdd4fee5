"""`corelay-io inspect` and `validate` of Zarr stores on S3 (SeaweedFS), and their errors."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import zarr
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import AsyncGroup, GroupMetadata
from zarr.core.sync import sync
from zarr.storage import LocalStore, StorePath

from corelay.io.describe import NotAStorageFileError, S3Options, describe_url, find_problems, is_url
from corelay.io.errors import NoDataSource
from corelay.io.storage import HashedZarr, ZarrStorage
from tests.seaweed import S3Server, prefix_of
from tests.test_cli import inspect_json, run

# A server that accepts connections and never answers must fail within this many seconds.
SHORT_TIMEOUT = 1.0
SECRET = "corelay-test-secret-never-printed"


def _tree() -> dict[str, Any]:
    return {
        "maps": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "labels": np.array(["cat", "dog"]),
        "codes": np.array([b"ab", b"c"]),
        "pair": (np.eye(2), 3, "three", None, b"by", 2.5j),
        "steps": [np.int64(7), True],
    }


def _write_storage(store: Store | Path) -> None:
    with ZarrStorage(store, "w") as storage:
        storage["run-1"] = _tree()
        storage["run-2/nested"] = np.ones(5)


def _write_hashed(store: Store | Path) -> None:
    cache = HashedZarr(store)
    cache.write(np.arange(5.0), np.ones(3), {"step": "embed", "k": 4})
    cache.write((np.zeros(2), (np.ones(1),)), "input", None)


def _write_plain(store: Store | Path) -> None:
    opened = LocalStore(store) if isinstance(store, Path) else store
    document = GroupMetadata().to_buffer_dict(default_buffer_prototype())["zarr.json"]
    sync(opened.set("zarr.json", document))
    root = zarr.Group(AsyncGroup(GroupMetadata(), StorePath(opened)))
    root.attrs["note"] = "made by zarr"
    group = root.create_group("g")
    group.create_array("v", data=np.arange(30, dtype="<i2").reshape(5, 6), chunks=(2, 3))
    group.create_array("f", data=np.linspace(0.0, 1.0, 7))


WRITERS: dict[str, Callable[[Store | Path], None]] = {
    "ZarrStorage": _write_storage,
    "HashedZarr": _write_hashed,
    "plain zarr": _write_plain,
}


@pytest.fixture
def prefix(tmp_path: Path) -> str:
    return prefix_of(tmp_path)


@pytest.fixture
def url(s3_server: S3Server, prefix: str) -> str:
    return f"s3://{s3_server.bucket}/{prefix}"


@pytest.fixture
def s3_args(s3_server: S3Server) -> list[str]:
    return ["--endpoint-url", s3_server.endpoint, "--anonymous"]


def _options(server: S3Server, timeout: float = 30.0) -> S3Options:
    return S3Options(endpoint_url=server.endpoint, anonymous=True, timeout=timeout)


# ---------------------------------------------------------------------------------- stores


@pytest.mark.parametrize("writer", list(WRITERS))
def test_inspect_on_s3_equals_the_local_one(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    s3_server: S3Server,
    prefix: str,
    url: str,
    s3_args: list[str],
    writer: str,
) -> None:
    local = tmp_path / "local.zarr"
    WRITERS[writer](local)
    WRITERS[writer](s3_server.store(prefix))
    on_s3 = inspect_json(capsys, url, *s3_args)
    here = inspect_json(capsys, local)
    assert on_s3.pop("path") == url and here.pop("path") == str(local)
    assert on_s3 == here
    assert on_s3["entries"] and on_s3["file_bytes"] > 0
    status, out, err = run(capsys, "inspect", url, *s3_args)
    assert (status, err) == (0, "")
    _, here_text, _ = run(capsys, "inspect", local)
    assert out.splitlines()[0].startswith(f"{url}: Zarr store, ")
    assert out.replace(url, "STORE") == here_text.replace(str(local), "STORE")


@pytest.mark.parametrize("writer", ["ZarrStorage", "HashedZarr"])
def test_validate_on_s3(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    s3_server: S3Server,
    prefix: str,
    url: str,
    s3_args: list[str],
    writer: str,
) -> None:
    local = tmp_path / "local.zarr"
    WRITERS[writer](local)
    WRITERS[writer](s3_server.store(prefix))
    status, out, err = run(capsys, "validate", url, *s3_args)
    _, here, _ = run(capsys, "validate", local)
    assert (status, err) == (0, "")
    assert out.startswith(f"{url}: valid: all ") and out.replace(url, "S") == here.replace(
        str(local), "S"
    )


def test_the_tree_shown_is_the_one_written(
    capsys: pytest.CaptureFixture[str], s3_server: S3Server, prefix: str, url: str
) -> None:
    _write_storage(s3_server.store(prefix))
    description = describe_url(url, options=_options(s3_server))
    assert [entry.name for entry in description.entries] == ["run-1", "run-2"]
    (run_1, _) = description.entries
    assert run_1.node == "container"
    assert [child.name for child in run_1.children] == ["maps", "labels", "codes", "pair", "steps"]
    maps = run_1.children[0]
    assert maps.node == "leaf" and (maps.dtype, maps.shape) == ("<f4", (2, 3, 4))


def test_validate_on_s3_finds_problems(
    capsys: pytest.CaptureFixture[str],
    s3_server: S3Server,
    prefix: str,
    url: str,
    s3_args: list[str],
) -> None:
    store = s3_server.store(prefix)
    with ZarrStorage(store, "w") as storage:
        storage["k"] = {"x": np.arange(3)}
    # The member the key's pointer names (see corelay.io._zarr), then its array's document.
    pointer = json.loads(sync(_get(store, "k/zarr.json")))
    array_path = f"k/{pointer['attributes']['corelay.value']}/x/zarr.json"
    document = json.loads(sync(_get(store, array_path)))
    document["attributes"]["corelay.kind"] = "set"
    sync(_put(store, array_path, json.dumps(document).encode()))
    assert find_problems(describe_url(url, options=_options(s3_server))) == [
        ("/k/x", "unknown kind 'set'")
    ]
    status, out, err = run(capsys, "validate", url, *s3_args)
    assert (status, err) == (1, "")
    assert out.splitlines() == [
        f"{url}: 1 node the library cannot hold:",
        "  /k/x: unknown kind 'set'",
    ]


async def _get(store: Store, key: str) -> bytes:
    buffer = await store.get(key, prototype=default_buffer_prototype())
    assert buffer is not None
    return buffer.to_bytes()


async def _put(store: Store, key: str, data: bytes) -> None:
    await store.set(key, default_buffer_prototype().buffer.from_bytes(data))


def test_inspect_one_key_on_s3(
    capsys: pytest.CaptureFixture[str],
    s3_server: S3Server,
    prefix: str,
    url: str,
    s3_args: list[str],
) -> None:
    _write_storage(s3_server.store(prefix))
    loaded = inspect_json(capsys, url, "run-2/nested", *s3_args)
    (entry,) = loaded["entries"]
    assert (loaded["key"], entry["name"], entry["shape"]) == ("run-2/nested", "run-2/nested", [5])
    status, _, err = run(capsys, "inspect", url, "run-3", *s3_args)
    assert status == 2 and err == f"corelay-io: error: no key 'run-3' in '{url}'\n"
    with pytest.raises(NoDataSource, match="no key 'run-3'"):
        describe_url(url, "run-3", options=_options(s3_server))


def test_the_bucket_root_is_a_prefix_too(
    capsys: pytest.CaptureFixture[str], s3_server: S3Server, prefix: str, s3_args: list[str]
) -> None:
    # The shared bucket holds the stores of the tests under their prefixes, and no root group:
    # without a prefix, the whole bucket is looked at. (A bucket of its own for a store at the
    # root would be a new SeaweedFS collection, which a loaded server may fail to allocate.)
    _write_plain(s3_server.store(prefix))
    bucket = s3_server.bucket
    for url in (f"s3://{bucket}", f"s3://{bucket}/"):
        assert _error(capsys, "inspect", url, *s3_args) == (
            f"{url} holds objects but no zarr.json: not a Zarr v3 store"
        )
    loaded = inspect_json(capsys, f"s3://{bucket}/{prefix}/", *s3_args)
    assert [entry["name"] for entry in loaded["entries"]] == ["g"]


# ---------------------------------------------------------------------------------- access


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_aws_env")
def test_endpoint_and_credentials_come_from_the_environment_and_are_not_printed(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    s3_server: S3Server,
    prefix: str,
    url: str,
) -> None:
    _write_storage(s3_server.store(prefix))
    # SeaweedFS without identities takes signed requests too: these are signed with the key.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCORELAYTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    status, out, err = run(capsys, "inspect", url)
    assert (status, err) == (0, "") and ", 2 keys" in out.splitlines()[0]
    status, out, err = run(capsys, "inspect", f"s3://absent-{prefix[:8]}/x")
    assert (
        status == 2
        and err == f"corelay-io: error: no bucket 'absent-{prefix[:8]}' at {s3_server.endpoint}\n"
    )
    assert SECRET not in out + err


@pytest.mark.usefixtures("clean_aws_env")
def test_without_credentials_or_anonymous_access_says_so(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    s3_server: S3Server,
    prefix: str,
    url: str,
) -> None:
    _write_storage(s3_server.store(prefix))
    # The metadata service, asked last for credentials, is a closed port here: no credentials
    # on any machine, an EC2 one included.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_METADATA_ENDPOINT", f"http://127.0.0.1:{probe.getsockname()[1]}")
    start = time.monotonic()
    status, _, err = run(
        capsys, "inspect", url, "--endpoint-url", s3_server.endpoint, "--timeout", "2"
    )
    assert time.monotonic() - start < 20
    assert status == 2
    assert err == (
        f"corelay-io: error: no AWS credentials for {url}: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or pass --anonymous for a public bucket\n"
    )


# ---------------------------------------------------------------------------------- errors


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert err.startswith("corelay-io: error: ") and err.count("\n") == 1, err
    return err.removeprefix("corelay-io: error: ").rstrip("\n")


def test_a_missing_bucket(
    capsys: pytest.CaptureFixture[str], s3_server: S3Server, s3_args: list[str]
) -> None:
    for command in ("inspect", "validate"):
        message = _error(capsys, command, "s3://no-such-bucket/p", *s3_args)
        assert message == f"no bucket 'no-such-bucket' at {s3_server.endpoint}"
    with pytest.raises(FileNotFoundError, match="no bucket 'no-such-bucket'"):
        describe_url("s3://no-such-bucket/p", options=_options(s3_server))


def test_a_prefix_with_no_zarr_store(
    capsys: pytest.CaptureFixture[str],
    s3_server: S3Server,
    prefix: str,
    url: str,
    s3_args: list[str],
) -> None:
    message = _error(capsys, "inspect", url, *s3_args)
    assert message == f"no Zarr v3 store at {url}: no object under the prefix"
    with pytest.raises(FileNotFoundError, match="no object under the prefix"):
        describe_url(url, options=_options(s3_server))
    # Objects, but none is the root group's document: the store's members, not the store.
    _write_plain(s3_server.store(prefix))
    message = _error(capsys, "validate", f"{url}/g/v/c", *s3_args)
    assert message == f"{url}/g/v/c holds objects but no zarr.json: not a Zarr v3 store"
    with pytest.raises(NotAStorageFileError, match=r"holds objects but no zarr\.json"):
        describe_url(f"{url}/g/v/c", options=_options(s3_server))


def test_unknown_schemes_and_malformed_urls(capsys: pytest.CaptureFixture[str]) -> None:
    assert _error(capsys, "inspect", "gs://bucket/p") == (
        "unknown URL scheme 'gs' in 'gs://bucket/p': reads s3:// URLs"
    )
    assert _error(capsys, "validate", "https://example.org/x.zarr").startswith(
        "unknown URL scheme 'https'"
    )
    assert _error(capsys, "inspect", "s3:///prefix") == (
        "no bucket in 's3:///prefix': expected s3://bucket/prefix"
    )
    assert "query or fragment" in _error(capsys, "inspect", "s3://b/p?versionId=1")
    with pytest.raises(ValueError, match="unknown URL scheme 'file'"):
        describe_url("file:///tmp/x.zarr")
    with pytest.raises(ValueError, match="unknown URL scheme ''"):
        describe_url("bucket/prefix")


def test_is_url() -> None:
    assert is_url("s3://b/p") and is_url("gs://b") and is_url("S3://b")
    assert not is_url("results.h5") and not is_url("/data/s3://x") and not is_url("s3:/b")


def test_s3_options_with_a_local_path_and_bad_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str
) -> None:
    local = tmp_path / "local.zarr"
    _write_storage(local)
    assert _error(capsys, "inspect", str(local), "--anonymous", "--region", "eu-west-1") == (
        f"--region, --anonymous: only for s3:// URLs, not the path {str(local)!r}"
    )
    assert _error(capsys, "validate", str(local), "--timeout", "0").startswith("--timeout: only")
    assert "positive number of seconds" in _error(capsys, "inspect", url, "--timeout", "0")
    assert "positive number of seconds" in _error(capsys, "inspect", url, "--timeout", "nan")
    assert "is not http:// or https://" in _error(
        capsys, "inspect", url, "--endpoint-url", "ftp://host"
    )


def test_s3_options_are_checked() -> None:
    assert S3Options(timeout=5).timeout == 5 and S3Options().timeout == 30
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive number of seconds"):
            S3Options(timeout=bad)
    with pytest.raises(TypeError):
        S3Options(timeout=cast(Any, "5"))
    with pytest.raises(ValueError, match="not http:// or https://"):
        S3Options(endpoint_url="minio:9000")


def test_an_endpoint_that_refuses_connections(capsys: pytest.CaptureFixture[str], url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Closed now: nothing listens on the port.
    endpoint = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    message = _error(
        capsys, "inspect", url, "--endpoint-url", endpoint, "--anonymous", "--timeout", "5"
    )
    assert time.monotonic() - start < 10
    assert message == f"cannot connect to {endpoint} for {url}"


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_an_endpoint_that_does_not_answer_times_out(
    capsys: pytest.CaptureFixture[str], silent_endpoint: str, url: str
) -> None:
    start = time.monotonic()
    message = _error(
        capsys,
        "validate",
        url,
        "--endpoint-url",
        silent_endpoint,
        "--anonymous",
        "--timeout",
        str(SHORT_TIMEOUT),
    )
    elapsed = time.monotonic() - start
    assert SHORT_TIMEOUT <= elapsed < SHORT_TIMEOUT + 5
    assert message == f"{silent_endpoint} did not answer {url} within 1 s (see --timeout)"


def test_the_timeout_is_a_bound_on_each_request(silent_endpoint: str, url: str) -> None:
    start = time.monotonic()
    with pytest.raises(OSError, match="did not answer"):
        describe_url(
            url, options=S3Options(endpoint_url=silent_endpoint, anonymous=True, timeout=2.5)
        )
    assert 2.5 <= time.monotonic() - start < 7.5


EXTRA = 'pip install "corelay-io-storage[zarr]"'


def test_obstore_not_installed_names_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setitem(sys.modules, "obstore", None)  # import fails as if not installed
    message = _error(capsys, "inspect", url)
    assert message.startswith("Describing a Zarr store on S3 needs zarr and obstore: ")
    assert EXTRA in message


def test_zarr_not_installed_names_the_extra(tmp_path: Path, url: str) -> None:
    local = tmp_path / "local.zarr"
    _write_storage(local)
    for target, what in ((url, "a Zarr store on S3"), (str(local), "a Zarr store")):
        # A fresh process in which zarr cannot be imported, as without the extra.
        code = (
            "import sys; sys.modules['zarr'] = None; from corelay.cli import main; "
            f"sys.exit(main(['validate', {target!r}]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.startswith(f"corelay-io: error: Describing {what} needs zarr")
        assert EXTRA in done.stderr and done.stderr.count("\n") == 1


def test_a_real_process_on_s3(s3_server: S3Server, prefix: str, url: str) -> None:
    _write_hashed(s3_server.store(prefix))
    argv = [sys.executable, "-m", "corelay.io", "inspect", url, "--endpoint-url"]
    done = subprocess.run(
        [*argv, s3_server.endpoint, "--anonymous"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"{url}: Zarr store, ")
    failed = subprocess.run(
        [*argv, s3_server.endpoint, "--anonymous", "--timeout", "-1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
