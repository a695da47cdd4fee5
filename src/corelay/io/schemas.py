"""JSON Schemas of the stored tree and of file descriptions, generated from the Pydantic models.

The files in the project's ``schemas/`` directory are :func:`json_schemas` as written by
:func:`write_schemas` (``corelay-io schema --out schemas``); a test checks that they are current.
"""

import inspect
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, RootModel

from corelay._typecheck import typechecked
from corelay.io.describe import FileDescription
from corelay.io.tree import Node

__all__ = ["SCHEMA_MODELS", "StoredTree", "json_schemas", "schema_text", "write_schemas"]

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class StoredTree(RootModel[Node]):
    """A stored tree, described node by node: what corelay.io.tree.validate() returns.

    Each node has a kind; leaves record their dtype and shape, dicts their children by key (in
    order), tuples and lists their items in order.
    """


#: The top-level models, by the name of their schema file.
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "stored-tree.json": StoredTree,
    "file-description.json": FileDescription,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Generates the JSON Schema (draft 2020-12) of each model in :data:`SCHEMA_MODELS`.

    Titles and descriptions come from the models' names and docstrings.

    Returns:
        The schemas, by file name.
    """
    schemas: dict[str, dict[str, Any]] = {}
    for file_name, model in SCHEMA_MODELS.items():
        generated = model.model_json_schema()
        generated["title"] = model.__name__
        generated["description"] = inspect.cleandoc(model.__doc__ or "")
        schemas[file_name] = {"$schema": _DIALECT, **generated}
    return schemas


def schema_text(schema: dict[str, Any]) -> str:
    """Formats a schema as its file holds it: indented JSON, ending with a newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


@typechecked
def write_schemas(directory: str | Path) -> list[Path]:
    """Writes each schema of :func:`json_schemas` to a file in ``directory``.

    Args:
        directory: Where to write; created if missing.

    Returns:
        The files written.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for file_name, schema in json_schemas().items():
        path = target / file_name
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written
