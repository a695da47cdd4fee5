"""Rules for storage keys and the names of dict entries."""

import re
from typing import NamedTuple

# Lone surrogates (from ``os.fsdecode`` of undecodable bytes, say) have no UTF-8 encoding, which
# HDF5 names and the text of every format need.
_SURROGATE = re.compile("[\ud800-\udfff]")

#: Prefix of the names entries are written under before they are swapped into place. Names
#: starting with it are never user data: readers skip them, writers may delete them.
TEMP_PREFIX = ".corelay-tmp-"


def name_problem(name: str) -> str | None:
    """Tells why ``name`` cannot name an entry in a group, or ``None`` if it can."""
    if not name:
        return "empty name"
    if "/" in name:
        return f"name {name!r} contains '/'"
    if "\x00" in name:
        return f"name {name!r} contains a NUL character"
    if not name.isascii() and _SURROGATE.search(name):
        return f"name {name!r} contains a lone surrogate, which has no UTF-8 encoding"
    if name in (".", ".."):
        return f"name {name!r} is reserved"
    if name.startswith(TEMP_PREFIX):
        return f"name {name!r} starts with the reserved prefix {TEMP_PREFIX!r}"
    return None


class Key(NamedTuple):
    """A checked storage key, with its names."""

    text: str
    """The key as given, like ``'a/b'``."""
    names: list[str]
    """Its names, like ``['a', 'b']``."""


def split_key(key: str) -> list[str]:
    """Splits a storage key like ``'a/b'`` into its names.

    Raises:
        ValueError: The key has an empty segment, a leading or trailing ``/``, ``.`` or ``..``,
            a NUL character or a lone surrogate, or a segment with the reserved prefix.
    """
    names = key.split("/")
    for name in names:
        problem = name_problem(name)
        if problem is not None:
            raise ValueError(
                f"invalid key {key!r}: {problem}; a key is names joined by '/', "
                "each non-empty, not '.' or '..', without NUL characters or lone surrogates"
            )
    return names


def text_problem(text: str) -> str | None:
    """Tells why HDF5 cannot store ``text`` as a string, or ``None`` if it can.

    HDF5 strings end at a NUL character and are UTF-8, which has no lone surrogates.
    """
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii() and _SURROGATE.search(text):
        return "contains a lone surrogate, which has no UTF-8 encoding"
    return None
