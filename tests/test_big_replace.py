"""Replacing a big value writes its array once: the journal holds metadata, not array data."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from corelay.io import journal
from corelay.io._hdf5.files import free_sections
from corelay.io.storage import HDF5Storage


def _journal_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    real = journal.journal_pieces

    def spy(operations: list[journal.Operation], inode: int = 0, size: int = 0) -> list[bytes]:
        pieces = real(operations, inode, size)
        sizes.append(sum(len(piece) for piece in pieces))
        return pieces

    monkeypatch.setattr(journal, "journal_pieces", spy)
    return sizes


def test_replacing_keeps_array_data_out_of_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _journal_sizes(monkeypatch)
    path = tmp_path / "replace.h5"
    values = [np.full(1 << 20, float(index)) for index in range(6)]  # 8 MiB each
    with HDF5Storage(path, "w") as storage:
        for value in values:
            storage["big"] = {"a": value, "label": "x"}
        assert sizes, "replacements commit through the journal"
        assert max(sizes) < 64 * 1024  # metadata only, whatever the array size
    with HDF5Storage(path, "r") as storage:
        np.testing.assert_array_equal(storage["big"]["a"], values[-1])
    # The file does not grow with each replacement: freed space is reused.
    assert path.stat().st_size < 3 * values[0].nbytes


def test_the_journal_stays_bounded_whatever_the_array_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _journal_sizes(monkeypatch)
    with HDF5Storage(tmp_path / "sizes.h5", "w") as storage:
        for count in (1 << 16, 1 << 18, 1 << 20, 1 << 18, 1 << 20):
            storage["big"] = np.ones(count)
    assert max(sizes) < 64 * 1024


def test_free_sections_are_space_the_committed_file_does_not_use(tmp_path: Path) -> None:
    with HDF5Storage(tmp_path / "free.h5", "w") as storage:
        storage["a"] = np.ones(1 << 17)
        storage["b"] = np.ones(1 << 17)
        dataset = storage.io["a"]
        assert isinstance(dataset, h5py.Dataset)
        offset = dataset.id.get_offset()
        assert offset is not None
        dataset.id.close()  # an open dataset keeps its space
        storage["a"] = 1  # the old array's space is freed
        sections = free_sections(storage.io)
        assert any(start <= offset < start + length for start, length in sections)
