"""Descriptions of storage files, made from their metadata: what ``corelay-io inspect`` shows.

:func:`describe_file` describes an HDF5 file (written by :class:`~corelay.io.storage.HDF5Storage`,
:class:`~corelay.io.storage.HashedHDF5`, corelay 1.0.0 or any other tool), a
:class:`~corelay.io.storage.PickleStorage` file or a local Zarr v3 store (a directory, written by
:class:`~corelay.io.storage.ZarrStorage` or another program) as a :class:`FileDescription`: the
tree of names, node kinds, dtypes, shapes and sizes, with one entry per cached output for
HashedHDF5 groups. Zarr arrays are described from their metadata documents too, and
:func:`describe_url` describes a Zarr store on S3 (``s3://bucket/prefix``) the same way. Each
node that the library cannot hold carries a ``problem``; :func:`find_problems` lists them with
their paths.

HDF5 datasets are described from their metadata: no array is read (only the few small datasets
a HashedHDF5 entry's metadata consists of). A pickle file holds no metadata apart from its
records, so its records are loaded one at a time, with the same restricted unpickler as
:class:`~corelay.io.storage.PickleStorage` (a file cannot run code).
"""

import math
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from corelay._typecheck import typechecked
from corelay.io._description import (
    NON_STR_KEY,
    VALUE_BYTES,
    ContainerDescription,
    ContainerKind,
    Description,
    FileDescription,
    HashedEntryDescription,
    HashedGroupDescription,
    LeafDescription,
    LeafKind,
    NotAStorageFileError,
    OtherDescription,
    Problem,
    Progress,
)
from corelay.io._hashed import (
    entry_path,
)
from corelay.io._hdf5.describe import describe_hdf5
from corelay.io._keys import split_key
from corelay.io._pickle.describe import describe_pickle
from corelay.io._zarr import require_zarr

__all__ = [
    "VALUE_BYTES",
    "ContainerDescription",
    "ContainerKind",
    "Description",
    "FileDescription",
    "HashedEntryDescription",
    "HashedGroupDescription",
    "LeafDescription",
    "LeafKind",
    "NotAStorageFileError",
    "OtherDescription",
    "Problem",
    "Progress",
    "S3Options",
    "describe_file",
    "describe_url",
    "find_problems",
    "is_url",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# The root group document of a Zarr v3 store (the format's METADATA; named here so that
# detecting a store does not import zarr).
_ZARR_METADATA = "zarr.json"
_PICKLE_SUFFIXES = (".pkl", ".pickle")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# The URL schemes describe_url reads.
_URL_SCHEMES = ("s3",)


@typechecked
@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible object store.

    Credentials are not options: they come from the usual AWS environment variables
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), as do the endpoint
    and region when not given here (``AWS_ENDPOINT_URL``, ``AWS_REGION``).

    Attributes:
        endpoint_url: The server of an S3-compatible store (``http://`` or ``https://``), for
            example MinIO or SeaweedFS; ``None``: AWS S3.
        region: The region of the bucket.
        anonymous: Send unsigned requests (a public bucket), without credentials.
        timeout: Seconds a request may take, retries included, before it fails.
    """

    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool = False
    # int named too: the run-time check does not take an int for a float.
    timeout: float | int = 30.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(
                f"the timeout must be a positive number of seconds, not {self.timeout}"
            )
        if self.endpoint_url is not None and urlsplit(self.endpoint_url).scheme not in (
            "http",
            "https",
        ):
            raise ValueError(f"the endpoint URL {self.endpoint_url!r} is not http:// or https://")


@typechecked
def describe_file(
    path: str | Path, key: str | None = None, progress: Progress | None = None
) -> FileDescription:
    """Describes an HDF5 or pickle storage file or a local Zarr store, or one key of it.

    Args:
        path: The file, or the directory of a Zarr store (which needs the ``zarr`` extra).
        key: A key: a path of groups like ``'a/b'`` in an HDF5 file, a record key in a pickle
            file. ``None`` describes every key.
        progress: Called with the number of nodes (HDF5) or records (pickle) described so far.

    Raises:
        FileNotFoundError: There is no file at ``path``.
        NotAStorageFileError: The file is neither HDF5 nor a file of pickle records, or it is
            truncated or damaged; or the directory is not a Zarr v3 store.
        ImportError: ``path`` is a Zarr store and zarr is not installed.
        NoDataSource: The file has no entry at ``key``.
        ValueError: ``key`` is not a valid key, or an
            :class:`~corelay.io.storage.UnreadableNodeError`: its path goes through an external
            link.
        BlockingIOError: Another process is writing the HDF5 file.

    Returns:
        The description.
    """
    file_path = Path(path)
    if key is not None:
        split_key(key)
    status = file_path.stat()
    if not stat.S_ISREG(status.st_mode) and not stat.S_ISDIR(status.st_mode):  # a FIFO hangs
        raise NotAStorageFileError(f"{str(path)!r} is not a regular file")
    report: Progress = progress if progress is not None else _no_progress
    if stat.S_ISDIR(status.st_mode):
        return _describe_directory(file_path, str(path), key, report)
    size = status.st_size
    file_format = _detect_format(file_path, size)
    if file_format == "hdf5":
        entries = describe_hdf5(file_path, key, report)
    else:
        entries = describe_pickle(file_path, key, report)
    return FileDescription(
        path=str(path), format=file_format, file_bytes=size, key=key, entries=entries
    )


@typechecked
def is_url(text: str) -> bool:
    """Tells whether ``text`` is a URL (``scheme://...``) rather than a local path.

    Args:
        text: A path or URL, as given on the command line.

    Returns:
        Whether it starts with a URL scheme and ``://``.
    """
    return _URL.match(text) is not None


@typechecked
def describe_url(
    url: str,
    key: str | None = None,
    progress: Progress | None = None,
    options: S3Options | None = None,
) -> FileDescription:
    """Describes a Zarr store on S3, read-only, as :func:`describe_file` describes a local one.

    Args:
        url: ``s3://bucket/prefix``: the store's root group is the object ``prefix/zarr.json``.
        key: A key: a path of groups like ``'a/b'``. ``None`` describes every key.
        progress: Called with the number of nodes described so far.
        options: How to reach the store; by default AWS S3, configured by the environment.

    Raises:
        ValueError: ``url`` is not an ``s3://`` URL with a bucket, or ``key`` is not a valid key.
        ImportError: zarr or obstore is not installed (the message names the extra).
        FileNotFoundError: There is no such bucket, or no object under the prefix.
        NotAStorageFileError: There are objects under the prefix, but no Zarr v3 root group.
        OSError: The endpoint cannot be reached or does not answer within the timeout, access is
            denied, or another request fails.
        NoDataSource: The store has no node at ``key``.

    Returns:
        The description; its ``path`` is ``url`` and its ``file_bytes`` the bytes of all objects
        under the prefix.
    """
    parts = urlsplit(url)
    if not is_url(url) or parts.scheme.lower() not in _URL_SCHEMES:
        known = ", ".join(f"{scheme}://" for scheme in _URL_SCHEMES)
        raise ValueError(f"unknown URL scheme {parts.scheme!r} in {url!r}: reads {known} URLs")
    if not parts.netloc:
        raise ValueError(f"no bucket in {url!r}: expected s3://bucket/prefix")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r} has a query or fragment: expected s3://bucket/prefix")
    if key is not None:
        split_key(key)
    require_zarr("Describing a Zarr store on S3")
    from corelay.io._zarr.remote import describe_s3

    entries, size = describe_s3(
        url,
        parts.netloc,
        parts.path.strip("/"),
        key,
        progress if progress is not None else _no_progress,
        options if options is not None else S3Options(),
    )
    return FileDescription(path=url, format="zarr", file_bytes=size, key=key, entries=entries)


@typechecked
def find_problems(description: FileDescription) -> list[Problem]:
    """Lists every node of a described file that the library cannot hold.

    Args:
        description: The described file.

    Returns:
        ``(path, reason)`` pairs in file order; HDF5 paths like ``/a/b``, pickle paths like
        ``key['a'][0]``.
    """
    pickle_file = description.format == "pickle"
    problems: list[Problem] = []
    for entry in description.entries:
        root = entry.name if pickle_file else "/" + entry.name.lstrip("/")
        problems.extend(_problems(entry, root, pickle_file))
    return problems


def _problems(node: "Description", path: str, pickle_file: bool) -> Iterator[Problem]:
    if node.node != "hashed" and node.problem is not None:
        yield path, node.problem
    if isinstance(node, ContainerDescription):
        for child in node.children:
            yield from _problems(child, _child_path(path, node, child, pickle_file), pickle_file)
    elif isinstance(node, HashedGroupDescription):
        for entry in node.entries:
            if entry.data is not None:
                if entry.layout == "corelay":
                    data_path = f"{path.rstrip('/')}/{entry_path(entry.name)}"
                else:
                    data_path = f"{path.rstrip('/')}/{entry.name}/data"
                yield from _problems(entry.data, data_path, pickle_file)


def _child_path(
    path: str, parent: ContainerDescription, child: "Description", pickle_file: bool
) -> str:
    if not pickle_file:
        return f"{path.rstrip('/')}/{child.name}"
    if parent.kind != "dict" or (
        isinstance(child, OtherDescription) and child.what.startswith(NON_STR_KEY)
    ):
        return f"{path}[{child.name}]"  # an index, or the repr of a key that is not a str
    return f"{path}[{child.name!r}]"


def _describe_directory(
    path: Path, given: str, key: str | None, progress: Progress
) -> FileDescription:
    if not (path / _ZARR_METADATA).is_file():
        raise NotAStorageFileError(f"{given!r} is a directory that is not a Zarr v3 store")
    require_zarr("Describing a Zarr store")
    from corelay.io._zarr.describe import describe_zarr

    entries = describe_zarr(path, key, progress)
    size = sum(
        item.stat().st_size for item in path.rglob("*") if item.is_file() and not item.is_symlink()
    )
    return FileDescription(path=given, format="zarr", file_bytes=size, key=key, entries=entries)


def _no_progress(done: int, total: int | None) -> None:
    pass


def _detect_format(path: Path, size: int) -> Literal["hdf5", "pickle"]:
    with path.open("rb") as file:
        head = file.read(8)
        if head == _HDF5_SIGNATURE:
            return "hdf5"
        if head[:1] == b"\x80":  # the PROTO opcode every pickle since protocol 2 starts with
            return "pickle"
        # An HDF5 file with a user block has its signature at 512, 1024, 2048, ... bytes.
        offset = 512
        while offset + 8 <= size:
            file.seek(offset)
            if file.read(8) == _HDF5_SIGNATURE:
                return "hdf5"
            offset *= 2
    if size == 0 and path.suffix in _PICKLE_SUFFIXES:
        return "pickle"  # a PickleStorage that was opened for writing and never written
    what = "an empty file" if size == 0 else "neither an HDF5 file nor a file of pickle records"
    raise NotAStorageFileError(f"{str(path)!r} is {what}")


# ---------------------------------------------------------------------------------- HDF5
