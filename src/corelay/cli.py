"""The ``corelay-io`` command."""

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from corelay.io.storage import HDF5Storage, TreeInput

__all__ = ["main"]


def _demo(path: Path) -> None:
    rng = np.random.default_rng(0)
    result: dict[str, TreeInput] = {
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
        array: np.ndarray[Any, Any] = cast(Any, value)
        return f"ndarray {array.dtype} {array.shape}"
    if isinstance(value, tuple):
        items: tuple[object, ...] = cast(Any, value)
        return f"tuple({', '.join(_summary(item) for item in items)})"
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
