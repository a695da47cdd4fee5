"""The exceptions of the storage layer."""

__all__ = ["CacheWarning", "NoDataSource", "NoDataTarget", "UnreadableNodeError"]


class NoDataSource(Exception):  # noqa: N818 - the reference's name
    """Raised when the requested data is not available: no storage, or no entry at the key."""

    def __init__(self, message: str = "No Data Source available.") -> None:
        """Initializes the exception.

        Args:
            message: What is missing; defaults to ``"No Data Source available."``.
        """
        super().__init__(message)


class NoDataTarget(Exception):  # noqa: N818 - the reference's name
    """Raised when data cannot be written: no storage, or a storage opened read-only."""

    def __init__(self, message: str = "No Data Target available.") -> None:
        """Initializes the exception.

        Args:
            message: Why nothing can be written; defaults to ``"No Data Target available."``.
        """
        super().__init__(message)


class CacheWarning(UserWarning):
    """Warned when a computed result is returned without being cached, with the reason.

    :func:`~corelay.io.memoize.memoize` returns the result it computed even if the storage
    cannot hold it (an unsupported type, a full disk, a closed file): the result is right, only
    the next call computes it again.
    """


class UnreadableNodeError(ValueError):
    """A stored node that the library does not read; the message names its path.

    What a file or store written elsewhere may hold and a read refuses: in HDF5, an external
    link, a virtual dataset or one stored in other files (unless followed on purpose), a soft
    link to nothing or in a loop, a group reached twice (a group containing itself, or shared
    structure), a named datatype, a member name that is not UTF-8; in a Zarr store, a symbolic
    link or a file that is not a regular file, a member name that is not a name (``'..'``,
    ``'a/b'``); in both, an unknown ``corelay.kind``, data of a type the library does not hold,
    containers nested deeper than :data:`~corelay.io.tree.MAX_DEPTH`, or more declared data
    than the read may allocate.
    """
