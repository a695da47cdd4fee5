"""Slots, plugs and plugboards: the parameters that configure processors and storages."""

from __future__ import annotations

from collections import OrderedDict
from types import FunctionType
from typing import Annotated, Any

import numpy as np
import pytest

from corelay.base import Param
from corelay.plugboard import Plug, Plugboard, Slot, SlotDefaults, SlotValueError

NOTHING: Any = None


def wrong(value: object) -> Any:
    """Returns ``value`` typed Any: the calls below pass wrong types on purpose."""
    return value


class Settings(Plugboard):
    name: Annotated[str, Param(str)]
    size: Annotated[int, Param(int, default=3, identifier=True)]
    untracked: int = 0

    def method(self) -> int:
        return self.size


class MoreSettings(Settings):
    ratio: Annotated[float, Param((int, float), default=0.5, positional=True)]


class Assigned(Plugboard):
    # The assignment form: the descriptor's own typing gives instances an int.
    count = Param(int, 7)


def test_tracked_attributes_in_declaration_order() -> None:
    own = [name for name in Settings.__tracked__ if name not in Plugboard.__tracked__]
    assert own == ["untracked", "method", "name", "size"]
    assert list(MoreSettings.collect(Param)) == ["name", "size", "ratio"]
    assert Settings.__tracked__["untracked"] == 0
    assert "collect" in Plugboard.__tracked__
    assert not any(name.startswith("__") for name in MoreSettings.__tracked__)


def test_annotated_declarations_become_class_attributes() -> None:
    slot: Param[int] = vars(Settings)["size"]
    assert type(slot) is Param
    assert getattr(Settings, "size") is slot  # noqa: B009 - the checkers see an int here
    assert slot.__name__ == "size"
    assert (slot.dtype, slot.default, slot.is_identifier, slot.is_positional) == (
        (int,),
        3,
        True,
        False,
    )
    assert MoreSettings.collect(Param)["ratio"].is_positional


def test_future_annotations_declare_slots_too() -> None:
    # This module uses ``from __future__ import annotations``: every annotation is a string.
    assert isinstance(Settings.__dict__["name"], Param)


def test_keywords_defaults_and_none() -> None:
    settings = MoreSettings(name="a", ratio=2)
    assert (settings.name, settings.size, settings.ratio) == ("a", 3, 2)
    assert MoreSettings(name="a", size=None).size == 3  # None keeps the default
    assert Assigned().count == 7
    assert Assigned(count=1).count == 1


def test_unset_mandatory_is_type_error() -> None:
    settings = Settings()
    with pytest.raises(TypeError, match=r"Settings\.name is not set and has no default"):
        _ = settings.name
    with pytest.raises(SlotValueError, match=r"Settings\.name is not set"):
        settings.name = NOTHING


def test_type_errors_name_class_slot_and_value() -> None:
    with pytest.raises(TypeError, match=r"Settings\.size must be int, not str \('3'\)"):
        Settings(size="3")
    with pytest.raises(TypeError, match=r"MoreSettings\.ratio must be int or float, not str"):
        MoreSettings(ratio="x")
    settings = Settings(name="a")
    with pytest.raises(TypeError, match=r"Settings\.size must be int"):
        settings.size = wrong("4")
    assert settings.size == 3  # a refused value changes nothing


def test_unknown_keywords() -> None:
    with pytest.raises(
        TypeError, match="Settings has no parameter 'untracked'; parameters: name, size"
    ):
        Settings(untracked=1)
    with pytest.raises(TypeError):
        Plugboard(*[1])


def test_unknown_keywords_go_to_the_next_class() -> None:
    class Base:
        def __init__(self, extra: int = 0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.extra = extra

    class Mixed(Plugboard, Base):
        size: Annotated[int, Param(int, 1)]

    mixed = Mixed(size=2, extra=5)
    assert (mixed.size, mixed.extra) == (2, 5)
    with pytest.raises(TypeError):
        Mixed(other=1)


def test_delete_goes_back_to_defaults() -> None:
    settings = Settings(size=9)
    del settings.size
    assert settings.size == 3
    named = Settings(name="a")
    with pytest.raises(TypeError, match="name is not set"):
        del named.name
    assert named.name == "a"


def test_instance_defaults() -> None:
    settings = Settings(name="a")
    other = Settings(name="b")
    assert isinstance(settings.default, SlotDefaults)
    assert settings.default.size == 3
    settings.default.size = 5
    assert (settings.size, other.size, vars(Settings)["size"].default) == (5, 3, 3)
    settings.size = 6
    settings.default.size = 8  # the value, once set, wins over the defaults
    assert settings.size == 6
    del settings.size
    assert settings.size == 8
    settings.reset_defaults()
    assert settings.size == 3
    settings.update_defaults(size=4)
    assert settings.size == 4
    settings.default = {"size": 11}
    assert settings.size == 11
    assert sorted(dir(settings.default)) == ["name", "size"]


def test_instance_default_errors() -> None:
    settings = Settings(name="a")
    with pytest.raises(TypeError, match=r"Settings\.size default must be int"):
        settings.default.size = "x"
    with pytest.raises(AttributeError, match="Settings has no slot 'untracked'"):
        settings.update_defaults(untracked=1)
    with pytest.raises(AttributeError):
        del settings.default.method
    with pytest.raises(AttributeError):
        _ = settings.default.missing
    with pytest.raises(TypeError, match="mapping"):
        settings.default = wrong(3)
    assert settings.default.name is None  # no default anywhere


def test_a_mandatory_default_makes_it_optional() -> None:
    settings = Settings()
    settings.default.name = "fallback"
    assert settings.name == "fallback"
    settings.reset_defaults()
    with pytest.raises(TypeError):
        _ = settings.name


def test_collect_and_collect_attr() -> None:
    settings = MoreSettings(ratio=1.5)
    assert settings.collect_attr(Param) == OrderedDict(name=None, size=3, ratio=1.5)
    assert list(MoreSettings.collect(int)) == ["untracked"]
    assert settings.get_attr("size") == 3
    with pytest.raises(AttributeError):
        settings.get_attr("nothing")


def test_at_copies_plugs_and_leaves_original() -> None:
    original = Settings(name="a")
    original.default.size = 4
    changed = original.at(size=5)
    assert (original.size, changed.size, changed.name) == (4, 5, "a")
    changed.name = "b"
    assert original.name == "a"
    assert type(changed) is Settings
    with pytest.raises(TypeError, match="no parameter 'other'"):
        original.at(other=1)
    with pytest.raises(TypeError):
        original.at(size=1, other=2)
    with pytest.raises(TypeError, match=r"Settings\.size must be int"):
        original.at(size="1")
    assert original.size == 4


def test_slot_declaration_checks() -> None:
    with pytest.raises(TypeError, match="dtype must be a type"):
        Param(wrong("monkey"))
    with pytest.raises(TypeError, match="dtype must be a type"):
        Param(())
    five: Any = 5
    with pytest.raises(TypeError, match="default must be str, not int"):
        Slot(str, five)
    with pytest.raises(TypeError):
        Slot(**{"monkey": wrong("banana")})
    assert Param(int, 5, mandatory=True).default is None
    assert Param(int, 5, mandatory=True).is_mandatory


def test_slot_dtype_and_default_changes_stay_consistent() -> None:
    slot: Slot[object] = Slot(object, 15)
    slot.dtype = int
    assert slot.dtype == (int,)
    with pytest.raises(TypeError):
        slot.dtype = str
    assert slot.dtype == (int,)
    with pytest.raises(TypeError):
        slot.default = "x"
    assert slot.default == 15
    del slot.default
    assert not slot.optional


def test_function_slots_accept_every_kind_of_function() -> None:
    class Functions(Plugboard):
        function: Annotated[FunctionType, Param(FunctionType, np.sum)]

    board = Functions()
    assert board.function is np.sum

    def identity(value: object) -> object:
        return value

    functions: list[object] = [len, np.add, "".join, identity, (lambda: 0), board.collect]
    for function in functions:
        board.function = wrong(function)
        assert board.function is function
    with pytest.raises(TypeError):
        board.function = wrong(3)


def test_plug_values_fall_back_in_order() -> None:
    slot = Slot(str, "fallback")
    plug = Plug(slot, obj="obj", default="default")
    assert (plug.obj, plug.default, plug.fallback, plug.dtype) == (
        "obj",
        "default",
        "fallback",
        str,
    )
    del plug.obj
    assert plug.obj == "default"
    del plug.default
    assert plug.obj == "fallback"
    assert Plug(Slot((int, str)), obj=1).dtype == (int, str)


def test_plug_stays_consistent() -> None:
    one: Any = 1
    with pytest.raises(TypeError, match="is not set and has no default"):
        Plug(Slot(int))
    with pytest.raises(TypeError, match="default must be str, not int"):
        Plug(Slot(str), obj="x", default=one)
    plug = Plug(Slot(str), obj="obj")
    assert not plug.optional
    with pytest.raises(TypeError):
        del plug.obj
    assert plug.obj == "obj"
    widening: Plug[object] = Plug(Slot(object), obj="value")
    widening.slot = Slot(str)
    with pytest.raises(TypeError):
        widening.slot = Slot(int)
    assert widening.slot.dtype == (str,)


def test_calling_a_slot_makes_a_plug() -> None:
    slot: Slot[int] = vars(Settings)["size"]
    plug = slot(obj=4)
    assert plug.slot is slot
    assert plug.obj == 4
    assert slot(default=6).obj == 6


def test_repr_is_a_sphinx_reference() -> None:
    assert repr(Param(int)) == "~corelay.base.Param"
    assert repr(Slot()) == "~corelay.plugboard.Slot"


class Step(Plugboard):
    scale: Annotated[int, Param(int, 1, identifier=True)]


class StepPlug(Plug[Step]):
    """Converts ints to steps, through the base class's property setter, as corelay's TaskPlug."""

    def __init__(self, slot: Slot[Step], obj: Step | int | None = None) -> None:
        super().__init__(slot, obj=Step(scale=obj) if isinstance(obj, int) else obj)

    @property
    def obj(self) -> Step:
        step: Step = super().obj
        return step

    @obj.setter
    def obj(self, value: Step | int | None) -> None:
        vars(Plug)["obj"].fset(self, Step(scale=value) if isinstance(value, int) else value)

    @obj.deleter
    def obj(self) -> None:
        vars(Plug)["obj"].fset(self, None)


class StepSlot(Slot[Step]):
    """Overrides the default property and sets ``_default`` itself, as corelay's Task does."""

    def __init__(self, default: Step | int) -> None:
        super().__init__(Step, Step(scale=default) if isinstance(default, int) else default)

    @property
    def default(self) -> Step | None:
        step: Step | None = super().default
        return step

    @default.setter
    def default(self, value: Step | int | None) -> None:
        self._default = Step(scale=value) if isinstance(value, int) else value
        self._consistent()

    @default.deleter
    def default(self) -> None:
        self._default = None

    def __call__(self, obj: Step | int | None = None, default: Step | None = None) -> StepPlug:
        return StepPlug(self, obj=obj)


class Chain(Plugboard):
    first: Annotated[Step, StepSlot(default=2)]


def test_subclasses_built_as_corelays_tasks_work() -> None:
    chain = Chain()
    assert chain.first.scale == 2
    chain.first = wrong(5)  # converted, as corelay converts callables to processors
    assert chain.first.scale == 5
    del chain.first
    assert chain.first.scale == 2
    assert isinstance(vars(chain)["first"], StepPlug)
    slot: StepSlot = vars(Chain)["first"]
    slot.default = 7
    assert Chain().first.scale == 7
    with pytest.raises(TypeError):
        slot.default = wrong("x")
    assert list(chain.collect_attr(StepSlot)) == ["first"]  # as pipelines collect their tasks


def test_at_takes_slot_values_by_name_only() -> None:
    class Board(Plugboard):
        size: Annotated[int, Slot(int, 1)]

    board = Board()
    with pytest.raises(TypeError, match=r"Board\.at\(\) takes slot values by name only"):
        board.at(2)
    assert board.at(size=2).size == 2
    assert board.size == 1
