"""The Zarr format's layout: attribute names, metadata documents, and opening stores."""

import asyncio
import errno
import json
import os
import secrets
import shutil
import stat
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar, cast

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.core.sync import sync
from zarr.storage import LocalStore

from corelay.io._keys import TEMP_PREFIX
from corelay.io.errors import UnreadableNodeError

__all__ = [
    "APPENDABLE_ATTR",
    "DTYPE_ATTR",
    "KEYS_ATTR",
    "KIND_ATTR",
    "LENGTH_ATTR",
    "METADATA",
    "PROTOTYPE",
    "PYTHON_SCALARS",
    "VALUE_ATTR",
    "Compression",
    "LocalDirectoryStore",
    "Location",
    "attributes_of",
    "get_doc",
    "join",
    "new_version",
    "open_location",
    "put_group",
    "run",
]

#: Attribute holding the node kind.
KIND_ATTR = "corelay.kind"
#: Attribute of a dict: its keys, in order.
KEYS_ATTR = "corelay.keys"
#: Attribute of a tuple or list: its length.
LENGTH_ATTR = "corelay.length"
#: Attribute of an array: its NumPy dtype string.
DTYPE_ATTR = "corelay.dtype"
#: Attribute of a Python scalar (its value) and of a key (the member holding its value).
VALUE_ATTR = "corelay.value"
#: Attribute of an array made by ``append``: it grows along its first axis.
APPENDABLE_ATTR = "corelay.appendable"
#: The metadata document of every node.
METADATA = "zarr.json"
#: The kinds of Python scalars, stored as a group's attribute.
PYTHON_SCALARS = ("bool", "int", "float", "complex", "str", "bytes", "none")
#: Zarr's buffers in host memory.
PROTOTYPE = default_buffer_prototype()

Compression: TypeAlias = Literal["zstd", "gzip"] | None
"""How arrays are compressed: Zarr's zstd or gzip codec, or not at all."""

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs ``coroutine`` on Zarr's event loop and returns its result."""
    return sync(coroutine)


def join(*parts: str) -> str:
    """The store path of ``parts``, empty parts left out."""
    return "/".join(part for part in parts if part)


def new_version() -> str:
    """A fresh member name for a value: never used before, never a user's name."""
    return TEMP_PREFIX + secrets.token_hex(8)


# ---------------------------------------------------------------------------------------------
# Opening stores


class LocalDirectoryStore(LocalStore):
    """zarr's ``LocalStore``, following no symbolic link and reading only regular files.

    A store's directory may come from anywhere: a symbolic link in it would make a read return
    another file's bytes and a write or delete reach outside the store, and a FIFO would block a
    read for ever. Links and other special files inside the store raise
    :class:`~corelay.io.errors.UnreadableNodeError`; the store's directory itself may be a link.
    """

    def _refuse_links(self, key: str) -> None:
        # Every directory between the root and the key's object, as far as it exists.
        parts = key.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            try:
                mode = os.lstat(self.root.joinpath(*parts[:depth])).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return
            if stat.S_ISLNK(mode):
                where = "/".join(parts[:depth])
                raise UnreadableNodeError(
                    f"{where}: a symbolic link in the Zarr store {str(self.root)!r}: not followed"
                )

    def _read(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None
    ) -> Buffer | None:
        path = self.root / key
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnreadableNodeError(
                    f"{key}: a symbolic link in the Zarr store {str(self.root)!r}: not followed"
                ) from None
            raise
        with open(descriptor, "rb", closefd=True) as file:
            mode = os.fstat(descriptor).st_mode
            if stat.S_ISDIR(mode):
                return None
            if not stat.S_ISREG(mode):
                raise UnreadableNodeError(
                    f"{key}: not a regular file in the Zarr store {str(self.root)!r}"
                )
            self._refuse_links(key)
            if isinstance(byte_range, RangeByteRequest):
                file.seek(byte_range.start)
                data = file.read(max(0, byte_range.end - byte_range.start))
            elif isinstance(byte_range, OffsetByteRequest):
                file.seek(byte_range.offset)
                data = file.read()
            elif isinstance(byte_range, SuffixByteRequest):
                size = file.seek(0, os.SEEK_END)
                file.seek(max(0, size - byte_range.suffix))
                data = file.read()
            else:
                data = file.read()
        return prototype.buffer.from_bytes(data)

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """Reads the object at ``key`` (or the part ``byte_range`` asks for); ``None`` if absent."""
        if not self._is_open:
            await self._open()
        if key.endswith(METADATA):
            # A metadata document is a few hundred bytes: read at once, it costs less than the
            # hand-over to a worker thread (a third of a small read or a lazy slice).
            return self._read(key, prototype or default_buffer_prototype(), byte_range)
        return await asyncio.to_thread(
            self._read, key, prototype or default_buffer_prototype(), byte_range
        )

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """Reads parts of several objects."""
        return list(
            await asyncio.gather(*(self.get(key, prototype, part) for key, part in key_ranges))
        )

    async def _set(self, key: str, value: Buffer, exclusive: bool = False) -> None:
        self._refuse_links(key)
        await super()._set(key, value, exclusive)

    async def delete(self, key: str) -> None:
        """Deletes the object at ``key``."""
        self._refuse_links(key)
        await super().delete(key)

    async def delete_dir(self, prefix: str) -> None:
        """Deletes every object below ``prefix``."""
        self._refuse_links(join(prefix, "x"))
        if os.path.islink(self.root / prefix):
            raise UnreadableNodeError(
                f"{prefix}: a symbolic link in the Zarr store {str(self.root)!r}: not followed"
            )
        await super().delete_dir(prefix)


@dataclass
class Location:
    """An open Zarr store and the prefix of the group used in it."""

    store: Store
    prefix: str
    where: str
    """How to name it in messages."""
    owned: bool
    """Whether the store was opened here (and is closed here)."""

    def path(self, *parts: str) -> str:
        """The store path of ``parts`` below the prefix."""
        return join(self.prefix, *parts)


def open_location(
    store: str | os.PathLike[str] | Store,
    mode: Literal["r", "w", "a"],
    prefix: str = "",
    root_kind: str = "keys",
) -> Location:
    """Opens a local directory or a store for reading (``'r'``) or writing.

    ``'w'`` empties it first; ``'w'`` and ``'a'`` create the root group if there is none. A
    directory is created whole (its root group written in a sibling, renamed into place), so
    that a directory always holds a root group.

    Raises:
        FileNotFoundError: ``mode`` is ``'r'`` and there is no Zarr v3 group.
        FileExistsError: The path or store holds something that is not a Zarr v3 group.
    """
    if isinstance(store, Store):
        where = f"{store} (prefix {prefix!r})" if prefix else str(store)
        opened = store.with_read_only(True) if mode == "r" and not store.read_only else store
        location = Location(opened, prefix, where, owned=False)
        run(_prepare(location, mode, root_kind))
        return location
    path = Path(store)
    where = repr(str(path))
    if mode == "r":
        if not (path / METADATA).is_file():
            raise FileNotFoundError(f"no Zarr store at {where}")
        return Location(LocalDirectoryStore(path, read_only=True), "", where, owned=True)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{where} is a file, not a Zarr store directory")
    if path.is_dir() and not (path / METADATA).is_file() and _has_content(path):
        raise FileExistsError(f"{where} is a directory that is not a Zarr store: not using it")
    if mode == "w" and path.exists():
        # Moved aside first: the path is then absent or a whole new store, never half-cleared.
        aside = path.with_name(f"{TEMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
        path.rename(aside)
        shutil.rmtree(aside)
    if not (path / METADATA).is_file():
        _create_directory(path, root_kind)
    return Location(LocalDirectoryStore(path), "", where, owned=True)


def _has_content(path: Path) -> bool:
    # Files a killed write left behind (LocalStore's '*.partial') are no content.
    return any(not name.endswith(".partial") for name in os.listdir(path))


def _create_directory(path: Path, root_kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f"{TEMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        document = GroupMetadata(attributes={KIND_ATTR: root_kind}).to_buffer_dict(PROTOTYPE)
        (staging / METADATA).write_bytes(document[METADATA].to_bytes())
        try:
            os.rename(staging, path)  # replaces an empty directory, atomically
        except OSError:
            if not (path / METADATA).is_file():  # not another process creating it
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def _prepare(location: Location, mode: str, root_kind: str) -> None:
    root = await get_doc(location.store, location.prefix)
    if mode == "r":
        if root is None:
            raise FileNotFoundError(f"no Zarr v3 group at {location.where}")
        return
    if root is None:
        names = [name async for name in location.store.list_dir(location.prefix)]
        if any(not name.endswith(".partial") for name in names):
            # Another writer may have created the store since it was looked for.
            root = await get_doc(location.store, location.prefix)
            if root is None:
                raise FileExistsError(f"{location.where} holds objects but no Zarr v3 group")
    if root is not None and mode == "w":
        if location.prefix:
            await location.store.delete_dir(location.prefix)
        else:
            await location.store.clear()
        root = None
    if root is None:
        await put_group(location.store, location.prefix, {KIND_ATTR: root_kind})


# ---------------------------------------------------------------------------------------------
# Metadata documents


async def get_doc(store: Store, path: str) -> dict[str, Any] | None:
    """The metadata document of the node at ``path``, or ``None`` if there is none.

    Raises:
        ValueError: The document is not Zarr v3 metadata.
    """
    buffer = await store.get(join(path, METADATA), prototype=PROTOTYPE)
    if buffer is None:
        return None
    try:
        document: object = json.loads(buffer.to_bytes())
    except ValueError as error:
        raise UnreadableNodeError(f"{join(path, METADATA)}: not JSON: {error}") from None
    if not isinstance(document, dict):
        raise UnreadableNodeError(f"{join(path, METADATA)}: not Zarr v3 metadata")
    checked = cast(dict[str, Any], document)
    if checked.get("zarr_format") != 3:
        raise UnreadableNodeError(f"{join(path, METADATA)}: not Zarr v3 metadata")
    return checked


def attributes_of(document: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a metadata document; none if it has none."""
    attributes: object = document.get("attributes")
    return cast(dict[str, Any], attributes) if isinstance(attributes, dict) else {}


async def put_group(store: Store, path: str, attributes: dict[str, Any]) -> None:
    """Writes the metadata document of a group at ``path``, replacing any."""
    document = GroupMetadata(attributes=attributes).to_buffer_dict(PROTOTYPE)
    await store.set(join(path, METADATA), document[METADATA])
