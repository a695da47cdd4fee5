"""Sphinx configuration of the corelay.io.storage documentation."""

import re
import sys
from pathlib import Path

from sphinx.application import Sphinx

# The package is documented from the source tree, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

project = "corelay.io.storage"
author = "the corelay.io.storage authors"
copyright = "the corelay.io.storage authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "exclude-members": "model_config",
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Pydantic's discriminated unions print as ``Annotated[A | B | ..., FieldInfo(...)]``: show the
# names of the aliases instead.
_UNIONS = re.compile(
    r"~?(?:types\.|typing\.)?Annotated\[[\w .~|]+, FieldInfo\([^()]*discriminator='(kind|node)'\)\]"
)
_UNION_NAMES = {"kind": "~corelay.io.tree.Node", "node": "~corelay.io.describe.Description"}


def _short_unions(text: str | None) -> str | None:
    if text is None:
        return None
    return _UNIONS.sub(lambda match: _UNION_NAMES[match.group(1)], text)


def _process_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    return _short_unions(signature), _short_unions(return_annotation)


def setup(app: Sphinx) -> None:
    """Registers the signature rewriting."""
    app.connect("autodoc-process-signature", _process_signature)
