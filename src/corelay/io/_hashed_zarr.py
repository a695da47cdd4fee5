"""HashedZarr: pipeline outputs cached in a Zarr store, keyed by exact hashes of their inputs.

The entries have HashedHDF5's names and attribute, in the Zarr format's key layout (see
:mod:`corelay.io._zarr`)::

    <base>/<first 2 digits of the name>/<entry name>    a key: its value is the output; its
                                                         attribute corelay.hashed_entry, in
                                                         the metadata document written last,
                                                         marks it complete
    <base>/.corelay-meta/<ext_hash(meta)>               a key: the metadata tree

Every object is written once under a fresh name, and a metadata document switches to it: any
number of processes or machines may write and read one store, without locks.
"""

import os
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from corelay._typecheck import typechecked
from corelay.io._hashed import ENTRY_ATTR, META_GROUP, entry_path, parse_entry_attr
from corelay.io._zarr import ZarrBase, require_zarr
from corelay.io.errors import NoDataSource, NoDataTarget
from corelay.io.hashing import ext_hash
from corelay.io.tree import TreeInput, validate

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from corelay.io._zarr.layout import Location

__all__ = ["HashedZarr"]


@typechecked
class HashedZarr:
    """A cache of pipeline outputs in a Zarr store, keyed by their input and metadata.

    :class:`~corelay.io.storage.HashedHDF5`'s contract (the same entry names, any stored tree as
    output, exact hashes), for any number of concurrent writers and readers, in processes or on
    machines, without locks: an entry is complete or absent, a replaced entry is the old or the
    new one, and a reader never sees a partial one. See the "Many processes, many machines" page
    of the documentation.
    """

    def __init__(self, store: ZarrBase) -> None:
        """Uses ``store`` for the entries.

        Args:
            store: A directory (created if missing), a Zarr store (``zarr.storage.LocalStore``,
                ``zarr.storage.ObjectStore`` for S3 and other object stores, ...), or a Zarr
                group. A read-only store or group can be read; writing raises
                :class:`NoDataTarget`.

        Raises:
            ImportError: zarr is not installed (``pip install "corelay-io-storage[zarr]"``).
            FileExistsError: ``store`` holds something that is not a Zarr v3 group.
        """
        require_zarr("HashedZarr")
        from zarr import Group
        from zarr.abc.store import Store

        from corelay.io._zarr.layout import open_location

        opened: str | os.PathLike[str] | Store
        if isinstance(store, Group):
            opened, prefix = store.store, store.path
        else:
            opened, prefix = store, ""
        if isinstance(opened, Store):
            mode: Literal["r", "a"] = "r" if opened.read_only else "a"
            self._location: Location = open_location(opened, mode, prefix, "hashed")
        else:
            self._location = open_location(Path(opened), "a", root_kind="hashed")
        self._known_groups: set[str] = set()

    @property
    def store(self) -> "Store":
        """The Zarr store that holds the entries."""
        return self._location.store

    def entry_name(self, data_in: Any, meta: Any) -> str:
        """Returns the name of the entry for ``data_in`` and ``meta``, as HashedHDF5 names it.

        Raises:
            TypeError: ``data_in`` or ``meta`` holds a value ``ext_hash`` does not accept.
        """
        return ext_hash((ext_hash(data_in), ext_hash(meta)))

    def read(self, data_in: Any, meta: Any) -> Any:
        """Returns the output stored for ``data_in`` and ``meta``.

        Raises:
            NoDataSource: No complete entry is stored for them; the message names the entry.
            TypeError: ``data_in`` or ``meta`` holds a value ``ext_hash`` does not accept.
        """
        from corelay.io._zarr.layout import run
        from corelay.io._zarr.read import read_key

        name = self.entry_name(data_in, meta)
        path = self._location.path(entry_path(name))
        try:
            return run(read_key(self._location.store, path, ENTRY_ATTR))
        except KeyError as error:
            raise NoDataSource(
                f"no entry {name} for this input and meta in {self._location.where}"
            ) from error

    def write(self, data_out: TreeInput, data_in: Any, meta: Any) -> None:
        """Stores ``data_out`` as the output produced from ``data_in`` with ``meta``.

        An entry that holds the same output already is left as it is; one holding another
        output is replaced, atomically. The entry is complete when this returns.

        Args:
            data_out: The output: any stored tree (arrays, tuples of arrays, ...).
            data_in: The input: any value :func:`~corelay.io.hashing.ext_hash` accepts.
            meta: Identifying metadata: any stored tree; stored once per distinct value.

        Raises:
            NoDataTarget: The store is read-only.
            TypeError: ``data_out`` or ``meta`` holds a value that cannot be stored, or
                ``data_in`` one that cannot be hashed; the message names its path. Nothing is
                written.
            ValueError: A dict key of ``data_out`` or ``meta`` is invalid. Nothing is written.
        """
        from corelay.io._zarr.layout import run

        location = self._location
        if location.store.read_only:
            raise NoDataTarget(f"Zarr store {location.where} is read-only")
        node = validate(data_out)
        try:
            meta_hash = ext_hash(meta)
        except TypeError:
            validate(meta, "meta")  # raises, naming the path from "meta"
            raise
        input_hash = ext_hash(data_in)
        marker = f"input={input_hash} output={ext_hash(data_out)} meta={meta_hash}"
        name = ext_hash((input_hash, meta_hash))
        run(self._write(name, marker, data_out, node, meta, meta_hash))

    async def _write(
        self, name: str, marker: str, data_out: Any, node: Any, meta: Any, meta_hash: str
    ) -> None:
        from corelay.io._zarr.layout import get_doc, put_group
        from corelay.io._zarr.write import replacing

        location, store = self._location, self._location.store
        path = location.path(entry_path(name))
        meta_path = location.path(META_GROUP, meta_hash)
        entry = await get_doc(store, path)
        if entry is not None:
            found = parse_entry_attr(entry.get("attributes", {}).get(ENTRY_ATTR))
            if found is not None and found == parse_entry_attr(marker):
                return  # this output is stored already
        stored_meta = await get_doc(store, meta_path)
        meta_node = validate(meta, "meta") if stored_meta is None else None
        if meta_node is not None:
            await replacing(store, meta_path, meta, meta_node, "zstd", sweep=False)
        await replacing(
            store, path, data_out, node, "zstd", {ENTRY_ATTR: marker}, sweep=False, old=entry
        )
        # Plain groups on the way, for readers that walk the store: written once.
        groups = [location.path(META_GROUP), location.path(entry_path(name).rpartition("/")[0])]
        missing: list[Awaitable[None]] = []
        for group in groups:
            if group not in self._known_groups:
                if await get_doc(store, group) is None:
                    missing.append(put_group(store, group, {}))
                self._known_groups.add(group)
        for awaitable in missing:
            await awaitable
