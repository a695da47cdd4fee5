"""Public signatures are enforced at run time; violations are TypeErrors."""

from pathlib import Path
from typing import Any

import pytest

from corelay._typecheck import HintViolation
from corelay.io.storage import HDF5Storage


def test_wrong_argument_types_are_type_errors(tmp_path: Path) -> None:
    bad_path: Any = 3
    with pytest.raises(HintViolation) as error:
        HDF5Storage(bad_path, "w")
    assert isinstance(error.value, TypeError)
    assert not any(tmp_path.iterdir())
    with HDF5Storage(tmp_path / "f.h5", "w") as storage:
        bad_key: Any = ("a",)
        with pytest.raises(TypeError):
            storage[bad_key] = 1
        with pytest.raises(TypeError):
            storage.at(data_key=b"a")  # type: ignore[arg-type]  # the mistake under test
