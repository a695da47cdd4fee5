"""The Zarr v3 format: stored trees as Zarr groups and arrays, keys replaced by a pointer switch.

Layout. Every node is an ordinary Zarr v3 group or array; the node kind and what a plain reader
cannot see (dict order, a tuple's length, the NumPy dtype) are attributes:

- a dict is a group with the attributes ``corelay.kind = 'dict'`` and ``corelay.keys`` (the keys
  in order); its members are named by the keys;
- a tuple or list is a group with ``corelay.kind`` and ``corelay.length``; members ``'0'``, ...;
- an array or NumPy scalar (0-d) is an array with ``corelay.kind`` and ``corelay.dtype`` (the
  NumPy dtype string). Numbers and booleans are stored as themselves, unicode as Zarr's
  variable-length UTF-8 strings, fixed-length bytes (``S``) as ``uint8`` with one more axis;
- a Python scalar or ``None`` is a group whose ``corelay.value`` attribute holds it (a float as
  the hexadecimal digits of its IEEE bits, bytes as base64).
- an array made by ``append`` is an array like the others, with the attribute
  ``corelay.appendable``, chunked for growth; each batch is committed by rewriting its metadata
  document, which holds its shape, after the batch's chunks (see :mod:`.append`).

Keys. An object store cannot rename, so a value is never written where readers look: the key
``a/b`` is a group (``corelay.kind = 'key'``) whose ``corelay.value`` attribute names the
member that holds the current value, ``.corelay-tmp-<random hex>``. A write puts the new value
under a fresh name, then rewrites the key's ``zarr.json`` (one object, written atomically by
every store) to point at it, and only then deletes the old value. A reader reads the pointer,
the value, and the pointer again, and reads again if it changed. Groups that only hold keys
(the store's root, ``a`` for the key ``a/b``) have ``corelay.kind = 'keys'``.

The modules: :mod:`.layout` (attributes, metadata documents, opening stores), :mod:`.read`,
:mod:`.write` (writing a tree, replacing a key), :mod:`.append` (growing an array),
:mod:`.lazy` (arrays read a slice at a time), :mod:`.describe` (what ``inspect`` and
``validate`` show) and :mod:`.storage` (:class:`~corelay.io.storage.ZarrStorage`). Only this
module imports without zarr installed: the storages call :func:`require_zarr` first.
"""

import os
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from zarr import Group
    from zarr.abc.store import Store

    ZarrStoreLike: TypeAlias = str | os.PathLike[str] | Store
    """A local directory, or any Zarr store (S3 and other object stores included)."""
    ZarrBase: TypeAlias = str | os.PathLike[str] | Store | Group
    """Where :class:`~corelay.io.storage.HashedZarr` keeps its entries: a directory, a store, or
    a Zarr group."""
else:
    # Zarr is an optional dependency: its types cannot be named at run time without it.
    ZarrStoreLike = object
    ZarrBase = object

__all__ = ["EXTRA", "ZarrBase", "ZarrStoreLike", "require_zarr"]

#: How to install what the Zarr storages need.
EXTRA = 'pip install "corelay-io-storage[zarr]"'


def require_zarr(what: str) -> None:
    """Imports the Zarr format.

    Raises:
        ImportError: zarr (or obstore) is not installed; the message names the extra.
    """
    try:
        import obstore  # noqa: F401  # pyright: ignore[reportUnusedImport]

        import corelay.io._zarr.write  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError as error:
        raise ImportError(f"{what} needs zarr and obstore: {EXTRA} ({error})") from error
