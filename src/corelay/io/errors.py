"""The exceptions of the storage layer."""

__all__ = ["CacheWarning", "NoDataSource", "NoDataTarget"]


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
