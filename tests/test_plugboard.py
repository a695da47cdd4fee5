"""Typed keyword parameters."""

from typing import Annotated

import pytest

from corelay.base import Param
from corelay.plugboard import Plugboard


class Settings(Plugboard):
    name: Annotated[str | None, Param(str)]
    size: Annotated[int, Param(int, default=3)]
    _private: Annotated[int, Param(int)]
    untracked: int = 0


class MoreSettings(Settings):
    ratio: Annotated[float, Param((int, float), default=0.5)]


def test_tracked_params_in_declaration_order() -> None:
    assert list(Settings.__tracked__) == ["name", "size"]
    assert list(MoreSettings.__tracked__) == ["name", "size", "ratio"]


def test_defaults_and_keywords() -> None:
    settings = MoreSettings(name="a", ratio=2)
    assert (settings.name, settings.size, settings.ratio) == ("a", 3, 2)


def test_type_errors() -> None:
    with pytest.raises(TypeError, match=r"Settings\.size must be int, not str \('3'\)"):
        Settings(size="3")
    with pytest.raises(TypeError, match=r"MoreSettings\.ratio must be int or float, not str"):
        MoreSettings(ratio="x")
    with pytest.raises(
        TypeError, match="Settings has no parameter 'untracked'; parameters: name, size"
    ):
        Settings(untracked=1)


def test_none_only_where_it_is_the_default() -> None:
    assert Settings(name=None).name is None
    with pytest.raises(TypeError, match="size must be int, not NoneType"):
        Settings(size=None)


def test_at_copies_and_leaves_original() -> None:
    original = Settings(name="a")
    changed = original.at(size=5)
    assert (original.size, changed.size, changed.name) == (3, 5, "a")
    assert type(changed) is Settings
    with pytest.raises(TypeError, match="no parameter 'other'"):
        original.at(other=1)
    with pytest.raises(TypeError):
        original.at(size=1, other=2)
    assert original.size == 3
