"""The committed JSON Schemas are current, valid, documented, and describe what they claim."""

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from corelay.cli import main
from corelay.io.describe import describe_file
from corelay.io.schemas import SCHEMA_MODELS, json_schemas, schema_text, write_schemas
from corelay.io.storage import HDF5Storage, ZarrStorage
from corelay.io.tree import validate
from tests.cases import TREE_CASES

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upstream"


def _committed(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


def test_committed_schemas_are_current() -> None:
    generated = json_schemas()
    committed = sorted(path.name for path in SCHEMAS.glob("*.json"))
    assert committed == sorted(generated), "regenerate with: corelay-io schema --out schemas"
    for name, schema in generated.items():
        text = (SCHEMAS / name).read_text(encoding="utf-8")
        assert text == schema_text(schema), (
            f"schemas/{name} is stale; regenerate with: corelay-io schema --out schemas"
        )


def test_schema_command_writes_the_committed_files(tmp_path: Path) -> None:
    assert main(["schema", "--out", str(tmp_path / "out")]) == 0
    for path in SCHEMAS.glob("*.json"):
        assert (tmp_path / "out" / path.name).read_bytes() == path.read_bytes()


def test_write_schemas_returns_the_files(tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    assert sorted(path.name for path in written) == sorted(SCHEMA_MODELS)


@pytest.mark.parametrize("name", sorted(SCHEMA_MODELS))
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = _committed(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("name", sorted(SCHEMA_MODELS))
def test_titles_and_descriptions_come_from_the_docstrings(name: str) -> None:
    model = SCHEMA_MODELS[name]
    schema = _committed(name)
    assert schema["title"] == model.__name__
    assert schema["description"] == inspect.cleandoc(model.__doc__ or "")
    for title, definition in schema.get("$defs", {}).items():
        if definition.get("type") == "object":
            assert definition["description"], f"{title} has no description"
            for field, property_schema in definition["properties"].items():
                assert property_schema.get("description") or field == "kind", (title, field)


def test_stored_tree_schema_validates_every_tree_case() -> None:
    validator: Any = Draft202012Validator(_committed("stored-tree.json"))
    for case_id, tree in TREE_CASES:
        instance = json.loads(validate(tree).model_dump_json())
        errors = [error.message for error in validator.iter_errors(instance)]
        assert not errors, (case_id, errors)


def test_stored_tree_schema_rejects_unknown_kinds() -> None:
    validator: Any = Draft202012Validator(_committed("stored-tree.json"))
    assert not validator.is_valid({"kind": "set", "items": []})
    assert not validator.is_valid({"kind": "ndarray", "dtype": "<f8"})  # no shape


@pytest.mark.parametrize("name", ["hdf5storage.h5", "hashedhdf5.h5", "picklestorage.pkl"])
def test_file_description_schema_validates_descriptions(name: str) -> None:
    validator: Any = Draft202012Validator(_committed("file-description.json"))
    instance = json.loads(describe_file(FIXTURES / name).model_dump_json())
    assert not [error.message for error in validator.iter_errors(instance)]


@pytest.mark.parametrize(
    ("storage_class", "name", "file_format"),
    [(HDF5Storage, "cases.h5", "hdf5"), (ZarrStorage, "cases.zarr", "zarr")],
)
def test_file_description_schema_validates_a_store_of_every_tree_case(
    tmp_path: Path, storage_class: type[HDF5Storage | ZarrStorage], name: str, file_format: str
) -> None:
    path = tmp_path / name
    with storage_class(path, "w") as storage:
        for case_id, tree in TREE_CASES:
            storage[case_id] = tree
    validator: Any = Draft202012Validator(_committed("file-description.json"))
    instance = json.loads(describe_file(path).model_dump_json())
    assert instance["format"] == file_format
    assert not [error.message for error in validator.iter_errors(instance)]
    assert not validator.is_valid({**instance, "format": "tiff"})
