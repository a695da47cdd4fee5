"""Rules for storage keys and the names of dict entries."""

#: Prefix of the names entries are written under before they are swapped into place. Names
#: starting with it are never user data: readers skip them, writers may delete them.
TEMP_PREFIX = ".corelay-tmp-"


def name_problem(name: str) -> str | None:
    """Tells why ``name`` cannot name an entry in a group, or ``None`` if it can."""
    if not name:
        return "empty name"
    if "/" in name:
        return f"name {name!r} contains '/'"
    if name in (".", ".."):
        return f"name {name!r} is reserved"
    if name.startswith(TEMP_PREFIX):
        return f"name {name!r} starts with the reserved prefix {TEMP_PREFIX!r}"
    return None


def split_key(key: str) -> list[str]:
    """Splits a storage key like ``'a/b'`` into its names.

    Raises:
        ValueError: The key has an empty segment, a leading or trailing ``/``, ``.`` or ``..``,
            or a segment with the reserved prefix.
    """
    names = key.split("/")
    for name in names:
        problem = name_problem(name)
        if problem is not None:
            raise ValueError(
                f"invalid key {key!r}: {problem}; a key is names joined by '/', "
                "each non-empty and not '.' or '..'"
            )
    return names
