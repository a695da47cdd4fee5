"""The corelay-io command: inspect and validate storage files, write the schemas, run a demo."""

import argparse
import json
import os
import pickle
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from pydantic import JsonValue

from corelay import _installed
from corelay._cli_s3 import add_s3_options, given_s3_flags, s3_options
from corelay.io.describe import (
    ContainerDescription,
    Description,
    FileDescription,
    HashedEntryDescription,
    HashedGroupDescription,
    LeafDescription,
    NotAStorageFileError,
    describe_file,
    describe_url,
    find_problems,
    is_url,
)
from corelay.io.errors import NoDataSource
from corelay.io.schemas import write_schemas

__all__ = ["format_description", "main"]

PROG = "corelay-io"
#: The name of the cache file ``corelay-io demo`` writes in a temporary directory, unless given
#: ``--path``.
DEMO_FILE_NAME = "corelay-demo.h5"
#: Seconds an operation runs before it shows progress on a terminal.
PROGRESS_DELAY = 0.5
_PROGRESS_INTERVAL = 0.1
_NAME_WIDTH = 36
_HASH_DIGITS = 12
_FOREIGN = "*"
# Values, attributes and metadata longer than this are cut short in a line of inspect.
_VALUE_CHARS = 60
_META_CHARS = 120
_DEMO_WIDTH = 88


class TerminalProgress:
    """Shows ``what: done/total`` on stderr while a long operation runs, if stderr is a terminal.

    Quiet when stderr is not a terminal, and during the first :data:`PROGRESS_DELAY` seconds.
    """

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self.what = what
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty()
        self.start = time.monotonic()
        self.shown_at: float | None = None

    def __call__(self, done: int, total: int | None) -> None:
        """Reports that ``done`` of ``total`` (``None``: unknown) items are done."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < PROGRESS_DELAY:
            return
        if self.shown_at is not None and now - self.shown_at < _PROGRESS_INTERVAL:
            return
        self.shown_at = now
        count = f"{done}" if total is None else f"{done}/{total}"
        self.stream.write(f"\r{self.what}: {count}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        """Clears the progress line."""
        if self.shown_at is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown_at = None


def _describe(path: Path, key: str | None) -> FileDescription:
    progress = TerminalProgress(f"reading {path}")
    try:
        return describe_file(path, key, progress)
    finally:
        progress.close()


def _describe_target(args: argparse.Namespace, key: str | None) -> FileDescription:
    """Describes the local file or store, or the ``s3://`` URL, that ``args.file`` names."""
    if not is_url(args.file):
        given = given_s3_flags(args)
        if given:
            raise ValueError(f"{', '.join(given)}: only for s3:// URLs, not the path {args.file!r}")
        return _describe(Path(args.file), key)
    progress = TerminalProgress(f"reading {args.file}")
    try:
        return describe_url(args.file, key, progress, s3_options(args))
    finally:
        progress.close()


# ---------------------------------------------------------------------------------- inspect


def _size(count: int | None) -> str:
    if count is None:
        return ""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _leaf_details(leaf: LeafDescription) -> str:
    parts: list[str] = []
    if leaf.dtype is not None and leaf.kind != "none":
        parts.append(leaf.dtype)
    if leaf.shape is not None and leaf.kind in ("ndarray", "generic"):
        parts.append(str(leaf.shape))
    if leaf.string_info is not None:
        encoding, length = leaf.string_info
        parts.append(f"{encoding}, " + ("variable length" if length is None else f"{length} bytes"))
    if leaf.kind == "none" and leaf.dtype is not None:
        parts.append(f"empty dataset of {leaf.dtype}")
    if leaf.nbytes is not None and leaf.kind not in ("bool", "int", "float", "complex"):
        parts.append(_size(leaf.nbytes))
    if leaf.chunks is not None:
        layout = f"chunks {leaf.chunks}"
        if leaf.maxshape is not None:
            limits = ", ".join("any" if n is None else str(n) for n in leaf.maxshape)
            layout += f", grows to ({limits})"
        if leaf.compression is not None:
            layout += f", {leaf.compression}"
        parts.append(layout)
    if leaf.stored_bytes is not None and leaf.nbytes and leaf.stored_bytes != leaf.nbytes:
        share = leaf.stored_bytes / leaf.nbytes
        parts.append(f"{_size(leaf.stored_bytes)} stored ({share:.0%})")
    return "  ".join(parts)


def _kind(kind: str, recorded: bool) -> str:
    return kind if recorded else kind + _FOREIGN


def _entry_line(entry: HashedEntryDescription) -> str:
    data = entry.data
    if data is None:
        shown = "no data"
    elif isinstance(data, LeafDescription):
        shown = f"{_kind(data.kind, data.recorded)} {_leaf_details(data)}"
    elif isinstance(data, ContainerDescription):
        shown = f"{_kind(data.kind, data.recorded)} ({_plural(len(data.children), 'item')})"
    else:
        shown = data.node
    parts = [shown]
    if entry.input_hash is not None:
        parts.append(f"in {_short_hash(entry.input_hash)}")
    if entry.output_hash is not None:
        parts.append(f"out {_short_hash(entry.output_hash)}")
    parts.append(f"meta {_json_line(entry.meta, _META_CHARS)}")
    if entry.layout == "corelay-1.0.0":
        parts.append("[corelay 1.0.0]")
    if not entry.complete:
        parts.append("[incomplete: reads as absent]")
    return "  ".join(parts)


def _short(text: str) -> str:
    return text if len(text) <= _HASH_DIGITS + 1 else text[:_HASH_DIGITS] + "…"


def _short_hash(value: JsonValue) -> str:
    # corelay 1.0.0 records a list of hashes for a tuple.
    return _short(value) if isinstance(value, str) else _json_line(value, _HASH_DIGITS + 1)


def _json_line(value: JsonValue, limit: int) -> str:
    """``value`` as one line of JSON, cut short to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _attr_rows(attrs: dict[str, JsonValue], depth: int) -> Iterator["_Row"]:
    for name, value in attrs.items():
        yield _Row(depth, f"@{name}", _json_line(value, _VALUE_CHARS))


class _Row(NamedTuple):
    depth: int
    name: str
    text: str
    problem: str | None = None
    foreign: bool = False


def _rows(node: Description, depth: int) -> Iterator[_Row]:
    """Yields a row for ``node`` and for everything below it."""
    if isinstance(node, LeafDescription):
        details = [_leaf_details(node)] if _leaf_details(node) else []
        if node.value is not None:
            details.append(f"= {_json_line(node.value, _VALUE_CHARS)}")
        text = f"{_kind(node.kind, node.recorded):<10} {'  '.join(details)}".rstrip()
        yield _Row(depth, node.name, text, node.problem, not node.recorded)
        yield from _attr_rows(node.attrs, depth + 1)
    elif isinstance(node, ContainerDescription):
        text = f"{_kind(node.kind, node.recorded):<10} {_plural(len(node.children), 'item')}"
        yield _Row(depth, node.name + "/", text, node.problem, not node.recorded)
        yield from _attr_rows(node.attrs, depth + 1)
        for child in node.children:
            yield from _rows(child, depth + 1)
    elif isinstance(node, HashedGroupDescription):
        count = len(node.entries)
        text = f"{'hashed':<10} HashedHDF5 cache, {count} entr{'y' if count == 1 else 'ies'}"
        yield _Row(depth, node.name.rstrip("/") + "/", text)
        for entry in node.entries:
            data = entry.data
            foreign = isinstance(data, LeafDescription | ContainerDescription) and not data.recorded
            yield _Row(depth + 1, _short(entry.name), _entry_line(entry), foreign=foreign)
            if data is not None:
                # Only where an entry's data is invalid: the entry's line describes it.
                yield from (row for row in _rows(data, depth + 2) if row.problem is not None)
    else:
        yield _Row(depth, node.name, f"{'other':<10} {node.what}", node.problem)


def format_description(description: FileDescription) -> list[str]:
    """Formats a file description as ``corelay-io inspect`` prints it.

    Args:
        description: The described file.

    Returns:
        The lines: a header, then one line per node, indented by depth.
    """
    file_format = {"hdf5": "HDF5 file", "pickle": "pickle file", "zarr": "Zarr store"}[
        description.format
    ]
    what = "records" if description.format == "pickle" else "keys"
    count = len(description.entries)
    header = f"{description.path}: {file_format}, {_size(description.file_bytes)}"
    if description.key is None:
        header += f", {count} {what[:-1] if count == 1 else what}"
    lines = [header]
    rows = [row for entry in description.entries for row in _rows(entry, 0)]
    width = min(max((2 * row.depth + len(row.name) for row in rows), default=0), _NAME_WIDTH)
    for row in rows:
        label = "  " * row.depth + row.name
        line = f"  {label:<{width}}  {row.text}"
        if row.problem is not None:
            line += f"  !! {row.problem}"
        lines.append(line.rstrip())
    if any(row.foreign for row in rows):
        lines.append(
            f"({_FOREIGN}: no kind recorded, as in files of corelay 1.0.0 or plain h5py; "
            "shown as reading returns it)"
        )
    return lines


def _inspect(args: argparse.Namespace) -> int:
    description = _describe_target(args, args.key)
    if args.json:
        print(description.model_dump_json(indent=2))
    else:
        print("\n".join(format_description(description)))
    return 0


# ---------------------------------------------------------------------------------- validate


def _count(node: Description) -> int:
    if isinstance(node, ContainerDescription):
        return 1 + sum(_count(child) for child in node.children)
    if isinstance(node, HashedGroupDescription):
        return 1 + sum(_count(entry.data) for entry in node.entries if entry.data is not None)
    return 1


def _validate(args: argparse.Namespace) -> int:
    description = _describe_target(args, None)
    problems = find_problems(description)
    if not problems:
        nodes = sum(_count(entry) for entry in description.entries)
        print(f"{args.file}: valid: all {_plural(nodes, 'node')} hold stored trees")
        return 0
    print(f"{args.file}: {_plural(len(problems), 'node')} the library cannot hold:")
    for path, reason in problems:
        print(f"  {path}: {reason}")
    return 1


# ---------------------------------------------------------------------------------- schema


def _schema(args: argparse.Namespace) -> int:
    for path in write_schemas(args.out):
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    if args.path is not None:
        return _run_demo(args.path, temporary=False)
    # Nothing is left behind: the file lives as long as the command.
    with tempfile.TemporaryDirectory(prefix="corelay-demo-") as directory:
        return _run_demo(Path(directory) / DEMO_FILE_NAME, temporary=True)


def _run_demo(path: Path, temporary: bool) -> int:
    from corelay._demo import check_cache_file, run_demo  # only the demo needs them

    if temporary:
        where = (
            "in a temporary directory, removed at the end; with --path FILE the cache is kept, "
            "and the next run on FILE reuses it"
        )
    elif check_cache_file(path):
        where = "the cache file of an earlier demo: its cached steps are reused, not recomputed"
    else:
        where = "a new file, kept: the next run with this --path reuses the cache"
    intro = (
        f"{PROG} demo: a four-step NumPy pipeline (synthetic images -> attribution maps -> "
        "spectral embedding -> k-means clusters), each step cached with memoize and HashedHDF5 "
        f"in {path} ({where})."
    )
    print(textwrap.fill(intro, width=_DEMO_WIDTH, break_on_hyphens=False))
    print()
    run_demo(path, sys.stdout)
    print()
    print(f"$ {PROG} inspect {path}")
    print("\n".join(format_description(_describe(path, None))))
    return 0


# ---------------------------------------------------------------------------------- main


class _VersionAction(argparse.Action):
    """``--version``: the version, and which ``corelay.io.storage`` is the one in use."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        print("\n".join(_installed.report(_installed.installation())))
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and validate corelay storage files (HDF5 or pickle) and Zarr "
        "stores (local or on S3), write the "
        "JSON Schemas of the stored tree, and run a demo.",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        nargs=0,
        help="print the version, which corelay.io.storage is in use, and whether corelay 1.0.0 "
        "is installed too, then exit",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser(
        "inspect",
        help="print the tree of an HDF5 or pickle storage file or a Zarr store",
        description="Print the tree of an HDF5 or pickle storage file or a Zarr store (a "
        "directory or s3://bucket/prefix): names, node kinds, "
        "dtypes, shapes, sizes and string encodings, and one line per entry of a HashedHDF5 "
        "cache. HDF5 datasets are described from their metadata, without reading them.",
    )
    inspect.add_argument(
        "file", help="the storage file, a Zarr store's directory, or s3://bucket/prefix"
    )
    inspect.add_argument("key", nargs="?", help="describe only this key (for example 'a/b')")
    inspect.add_argument(
        "--json", action="store_true", help="print the description as JSON (see the schemas)"
    )
    add_s3_options(inspect)
    inspect.set_defaults(handler=_inspect)

    validate = commands.add_parser(
        "validate",
        help="check that every node of a file is a stored tree",
        description="Exit 0 if the library can hold every node of the file; otherwise list "
        "each offending path with the reason and exit 1.",
    )
    validate.add_argument(
        "file", help="the storage file, a Zarr store's directory, or s3://bucket/prefix"
    )
    add_s3_options(validate)
    validate.set_defaults(handler=_validate)

    schema = commands.add_parser(
        "schema",
        help="write the JSON Schemas of the stored tree and of file descriptions",
        description="Write the JSON Schemas (draft 2020-12) generated from the models: "
        "stored-tree.json and file-description.json.",
    )
    schema.add_argument("--out", type=Path, required=True, help="the directory to write to")
    schema.set_defaults(handler=_schema)

    demo = commands.add_parser(
        "demo",
        help="run a small cached pipeline twice and inspect its cache file",
        description="Run a four-step NumPy pipeline twice, caching each step in an HDF5 file: "
        "the first run computes (or, on the cache file of an earlier demo, reads the cached "
        "steps), the second finds every step in the cache. Then inspect the file.",
    )
    demo.add_argument(
        "--path",
        type=Path,
        help="the cache file, kept and reused by later runs (default: a file in a temporary "
        "directory, removed at the end)",
    )
    demo.set_defaults(handler=_demo)
    return parser


def _error_message(error: BaseException) -> str:
    if isinstance(error, BlockingIOError):
        return error.strerror or str(error)
    if isinstance(error, FileExistsError):
        return str(error)
    if isinstance(error, OSError) and error.filename is not None:
        reasons: dict[type[OSError], str] = {
            FileNotFoundError: "no such file",
            IsADirectoryError: "is a directory",
            PermissionError: "permission denied",
        }
        reason = reasons.get(type(error), error.strerror or str(error))
        return f"{error.filename}: {reason}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``corelay-io`` command.

    Bad input (a missing, damaged, crafted or foreign file, a bad key, an S3 store that cannot be
    reached or read, zarr not installed) prints one line to stderr and returns 2, never a
    traceback.

    Args:
        argv: The arguments, without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 when ``validate`` finds problems, 2 on bad input.
    """
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = handler(args)
        except (
            OSError,
            ValueError,
            NoDataSource,
            NotAStorageFileError,
            pickle.UnpicklingError,
            ImportError,  # the zarr extra, for Zarr stores
        ) as error:
            _print_warnings(caught)
            if isinstance(error, BrokenPipeError):
                return _broken_pipe()
            print(f"{PROG}: error: {_error_message(error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except Exception as error:  # a crafted file can fail in ways no list foresees
            _print_warnings(caught)
            print(f"{PROG}: error: {type(error).__name__}: {error}", file=sys.stderr)
            return 2
    _print_warnings(caught)
    return status


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for warning in caught:
        print(f"{PROG}: warning: {warning.message}", file=sys.stderr)


def _broken_pipe() -> int:
    # The reader of stdout went away (``corelay-io inspect big.h5 | head``): stop quietly.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


if __name__ == "__main__":
    sys.exit(main())
