"""Sphinx configuration of the corelay.io.storage documentation."""

import ast
import inspect
import re
import sys
import textwrap
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

# The theme of NumPy, SciPy, pandas and most of the scientific Python stack.
html_theme = "pydata_sphinx_theme"
html_title = "corelay.io.storage"
html_static_path = ["_static"]
html_css_files = ["wrap.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # Every page is in the header; the search is an icon, so that the header fits in one line.
    "header_links_before_dropdown": 3,
    "navbar_align": "left",
    "navbar_persistent": [],
    "navbar_end": ["search-button", "theme-switcher"],
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# The pages have no subpages: the left sidebar would stay empty, so the text gets its width.
html_sidebars: dict[str, list[str]] = {"**": []}
# Long signatures put one parameter per line instead of running off the page.
maximum_signature_line_length = 88
toc_object_entries_show_parents = "hide"

_FILE_BASES = ("IOBase", "_IOBase", "RawIOBase", "_RawIOBase")
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {
    "members": True,
    # Every public class lists what it inherits from the library's own bases (a storage shows
    # read, write, exists and [] of its base class), but not the members of Pydantic models,
    # exceptions and files that every such class has. (Autodoc skips a member inherited from a
    # class named here only if that class defines it: the classes that define them are named.)
    "inherited-members": ",".join(
        [*("BaseModel", "RootModel", "BaseException", "tuple", "object"), *_FILE_BASES]
    ),
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


def _source_annotations(obj: object) -> dict[str, str]:
    """The annotations of ``obj``'s parameters as its source code spells them, by name."""
    if not callable(obj):
        return {}
    try:
        source = textwrap.dedent(inspect.getsource(inspect.unwrap(obj)))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    definition = tree.body[0] if tree.body else None
    if not isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef):
        return {}
    arguments = definition.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    every += [arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
    return {arg.arg: ast.unparse(arg.annotation) for arg in every if arg.annotation is not None}


# Aliases that are ``object`` at run time (so that beartype leaves the checks of trees to
# validate()) but precise for type checkers: signatures show the alias, as type checkers see it.
_RUNTIME_OBJECT_ALIASES = {"TreeInput": "~corelay.io.tree.TreeInput"}


def _typed_aliases(obj: object, signature: str | None) -> str | None:
    if signature is None or ": object" not in signature:
        return signature
    for name, spelled in _source_annotations(obj).items():
        alias = _RUNTIME_OBJECT_ALIASES.get(spelled.strip("'\""))
        if alias is not None:
            signature = re.sub(rf"\b{re.escape(name)}: object\b", f"{name}: {alias}", signature)
    return signature


def _process_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    return _short_unions(_typed_aliases(obj, signature)), _short_unions(return_annotation)


def _public_bases(app: Sphinx, name: str, obj: object, options: object, bases: list[type]) -> None:
    # A private base class is an implementation detail: show the public classes it stands on.
    index = 0
    while index < len(bases):
        base = bases[index]
        if base.__name__.startswith("_") and base.__module__.startswith("corelay"):
            bases[index : index + 1] = [b for b in base.__bases__ if b not in bases]
        else:
            index += 1


def setup(app: Sphinx) -> None:
    """Registers the signature and base class rewriting."""
    app.connect("autodoc-process-signature", _process_signature)
    app.connect("autodoc-process-bases", _public_bases)
