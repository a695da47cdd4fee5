"""The ``corelay-io`` command."""

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from corelay.io.storage import HDF5Storage

__all__ = ["main"]


def _demo(path: Path) -> None:
    rng = np.random.default_rng(0)
    result = {
        "attribution": rng.standard_normal((4, 8, 8)).astype(np.float32),
        "labels": np.array(["cat", "dog", "cat", "ship"]),
        "embedding": (np.eye(4), rng.standard_normal(4)),
        "params": {"n_clusters": 3, "method": "spectral", "seed": None},
    }
    with HDF5Storage(path, "w") as storage:
        storage["analysis"] = result
    with HDF5Storage(path, "r") as storage:
        print(f"keys in {path}: {list(storage.keys())}")
        read = storage["analysis"]
    for name, value in read.items():
        print(f"  {name}: {_summary(value)}")


def _summary(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray {value.dtype} {value.shape}"
    if isinstance(value, tuple | list):
        inner = ", ".join(_summary(item) for item in value)  # pyright: ignore[reportUnknownVariableType]
        return f"{type(value).__name__}({inner})"
    return repr(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``corelay-io`` command.

    Args:
        argv: The arguments, without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="corelay-io", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="write a result tree to an HDF5 file and read it back")
    demo.add_argument("--path", type=Path, help="the HDF5 file (default: a temporary file)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.path is not None:
            _demo(args.path)
        else:
            with tempfile.TemporaryDirectory() as directory:
                _demo(Path(directory) / "demo.h5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
