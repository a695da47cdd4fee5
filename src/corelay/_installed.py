"""Which implementation of ``corelay.io.storage`` is installed: this package's or corelay's.

This package and corelay 1.0.0 both install files under ``corelay/`` (``__init__.py``,
``base.py``, ``plugboard.py``, ``io/__init__.py``, ``io/storage.py``, ``io/hashing.py``); the one
installed last owns them. The file's content tells which, compared with the hashes the two
distributions recorded when they were installed. Only the standard library is used, and nothing
under ``corelay`` is imported: the report works whichever package owns the files.
"""

import base64
import hashlib
import importlib.util
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

__all__ = ["DISTRIBUTION", "SHARED_FILES", "Installation", "installation", "report"]

#: The name of this package's distribution.
DISTRIBUTION = "corelay-io-storage"
#: corelay 1.0.0's distribution, whose files this package replaces.
UPSTREAM = "corelay"
#: The files both distributions install, relative to site-packages.
SHARED_FILES = (
    "corelay/__init__.py",
    "corelay/base.py",
    "corelay/plugboard.py",
    "corelay/io/__init__.py",
    "corelay/io/storage.py",
    "corelay/io/hashing.py",
)
_STORAGE = "corelay/io/storage.py"

Owner = Literal["this package", "corelay", "unknown"]


@dataclass(frozen=True)
class Installation:
    """What is installed, and which distribution's ``corelay.io.storage`` is the one in use.

    Attributes:
        version: This package's installed version, or ``None`` if it is not installed.
        upstream_version: corelay's installed version, or ``None`` if it is not installed.
        storage_file: The file ``corelay.io.storage`` is imported from.
        owner: Whose content that file has: this package's, corelay's, or neither's recorded
            content (a modified file, or a source checkout).
        editable: This package is installed in editable mode (its files are not copied).
    """

    version: str | None
    upstream_version: str | None
    storage_file: Path | None
    owner: Owner
    editable: bool


def _distribution(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def recorded_hash(distribution: metadata.Distribution | None, file: str) -> str | None:
    """Returns the sha256 a distribution's RECORD lists for ``file``, or ``None``."""
    if distribution is None:
        return None
    for path in distribution.files or ():
        if path.as_posix() == file and path.hash is not None and path.hash.mode == "sha256":
            return path.hash.value
    return None


def file_hash(path: Path) -> str:
    """Returns the sha256 of a file in the form RECORD files use (urlsafe base64, unpadded)."""
    digest = hashlib.sha256(path.read_bytes()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def judge(actual: str | None, ours: str | None, upstream: str | None, editable: bool) -> Owner:
    """Decides whose content a file has from its hash and the two recorded hashes.

    Args:
        actual: The file's hash, or ``None`` if there is no file.
        ours: This package's recorded hash of it, or ``None``.
        upstream: corelay's recorded hash of it, or ``None``.
        editable: This package is installed in editable mode (it records no hash: its file is
            the one in the source checkout).
    """
    if actual is None:
        return "unknown"
    if upstream is not None and actual == upstream:
        return "corelay"
    if actual == ours or (ours is None and editable):
        return "this package"
    return "unknown"


def _storage_file() -> Path | None:
    # The package's location, found without importing it (corelay.io imports the storage).
    spec = importlib.util.find_spec("corelay")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "io" / "storage.py"
        if candidate.is_file():
            return candidate
    return None


def installation() -> Installation:
    """Returns what is installed in the running interpreter's environment."""
    ours = _distribution(DISTRIBUTION)
    upstream = _distribution(UPSTREAM)
    editable = ours is not None and recorded_hash(ours, _STORAGE) is None
    storage_file = _storage_file()
    actual = file_hash(storage_file) if storage_file is not None else None
    owner = judge(
        actual, recorded_hash(ours, _STORAGE), recorded_hash(upstream, _STORAGE), editable
    )
    return Installation(
        version=ours.version if ours is not None else None,
        upstream_version=upstream.version if upstream is not None else None,
        storage_file=storage_file,
        owner=owner,
        editable=editable,
    )


def report(found: Installation) -> list[str]:
    """Returns the lines ``corelay-io --version`` prints for an installation."""
    version = found.version or "(not installed)"
    lines = [f"{DISTRIBUTION} {version}{' (editable)' if found.editable else ''}"]
    where = str(found.storage_file) if found.storage_file is not None else "(not found)"
    owners = {
        "this package": f"{DISTRIBUTION}'s",
        "corelay": f"corelay {found.upstream_version}'s",
        "unknown": "neither installed distribution's (a modified file?)",
    }
    lines.append(f"corelay.io.storage: {owners[found.owner]}, {where}")
    if found.upstream_version is None:
        lines.append("corelay: not installed")
    elif found.owner == "this package":
        lines.append(
            f"corelay {found.upstream_version}: installed too; this package replaced its "
            f"{', '.join(SHARED_FILES)} (corelay's processors and pipelines run on this storage)"
        )
    elif found.owner == "corelay":
        lines.append(
            f"corelay {found.upstream_version}: installed after this package, its files replaced "
            f"this package's; repair: reinstall {DISTRIBUTION} (pip install --force-reinstall "
            f"--no-deps {DISTRIBUTION}, or the path it was installed from)"
        )
    return lines
