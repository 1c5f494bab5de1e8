"""builder.record behaves as the standard dataclasses module for everything it supports.

The oracle is the standard module itself: each class is defined twice from one body, once
with each decorator, and every observable (init signature, defaults, factories, repr,
equality, hash, frozenness, replace, asdict, fields, match) is compared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import subprocess
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from builder import record


def _pair(make: Callable[[Any, Any], type]) -> tuple[type, type]:
    """The class `make` defines, with the standard decorator and with ours."""
    return make(dataclasses.dataclass, dataclasses.field), make(record.dataclass, record.field)


def _frozen(dc: Any, field: Any) -> type:
    @dc(frozen=True)
    class Point:
        """A doc."""

        x: int
        y: int = 2
        tags: tuple[str, ...] = ()
        seen: list[int] = field(default_factory=list, compare=False)
        note: str = field(default="n", repr=False)
        LIMIT: ClassVar[int] = 9

    return Point


def _mutable(dc: Any, field: Any) -> type:
    @dc(kw_only=True)
    class Options:
        name: str
        jobs: int = 1
        extra: dict[str, str] = field(default_factory=dict)

        def __post_init__(self) -> None:
            self.jobs = max(self.jobs, 1)

    return Options


def _inherited(dc: Any, field: Any) -> tuple[type, type]:
    @dc(frozen=True)
    class Base:
        line: int
        flags: tuple[str, ...] = ()

    @dc(frozen=True)
    class Child(Base):
        image: str = "scratch"
        line: int = 7  # a base field redefined keeps its place

    return Base, Child


def _slotted(dc: Any, field: Any) -> type:
    @dc(slots=True)
    class Visit:
        name: bytes
        depth: int
        after: bool = False

        @property
        def deep(self) -> bool:
            return self.depth > 1

    return Visit


def _parameters(cls: type) -> list[tuple[str, Any, Any]]:
    """Names, kinds and plain defaults of __init__ (a factory's marker differs by design).

    Ours compiles its __init__ on the first call, so one call (even a failing one) comes
    first."""
    with contextlib.suppress(TypeError):
        cls()
    params = inspect.signature(cls).parameters.values()
    return [
        (p.name, p.kind, p.default if isinstance(p.default, int | str | tuple) else "-")
        for p in params
    ]


@pytest.mark.parametrize("maker", [_frozen, _mutable, _slotted])
def test_init_signature_and_repr_agree(maker: Callable[[Any, Any], type]) -> None:
    std, ours = _pair(maker)
    assert _parameters(ours) == _parameters(std)
    assert [f.name for f in record.fields(ours)] == [f.name for f in dataclasses.fields(std)]
    assert ours.__match_args__ == std.__match_args__  # type: ignore[attr-defined]


def test_frozen_class_agrees() -> None:
    std, ours = _pair(_frozen)
    for cls in (std, ours):
        a, b, c = cls(1), cls(1, seen=[5]), cls(1, 3)
        assert a == b and a != c and hash(a) == hash(b)
        assert a.seen == [] and a.seen is not cls(1).seen  # a fresh list each time
        assert cls.LIMIT == 9
        with pytest.raises(AttributeError):
            a.x = 5
        with pytest.raises(AttributeError):
            del a.x
        assert a.__eq__(object()) is NotImplemented
    assert repr(ours(1, 2, ("a",))).replace("test_record._frozen.<locals>.", "") == repr(
        std(1, 2, ("a",))
    ).replace("test_record._frozen.<locals>.", "")
    assert [f.name for f in record.fields(ours)] == [f.name for f in dataclasses.fields(std)]
    assert record.replace(ours(1), y=5) == ours(1, 5)
    assert dataclasses.replace(ours(1), y=5) == ours(1, 5)  # the standard one works too
    assert record.asdict(ours(1, tags=("t",))) == dataclasses.asdict(std(1, tags=("t",)))
    with pytest.raises(TypeError):
        ours()


def test_mutable_kw_only_class_agrees() -> None:
    std, ours = _pair(_mutable)
    for cls in (std, ours):
        a = cls(name="x", jobs=0)
        assert a.jobs == 1  # __post_init__ ran
        a.jobs = 4
        assert a == cls(name="x", jobs=4)
        assert cls.__hash__ is None  # eq without frozen: unhashable, as the standard rule
        with pytest.raises(TypeError):
            cls("x")  # keyword-only
    assert record.asdict(ours(name="a", extra={"k": "v"})) == {
        "name": "a",
        "jobs": 1,
        "extra": {"k": "v"},
    }


def test_inheritance_agrees() -> None:
    (_, sc), (ob, oc) = (
        _inherited(dataclasses.dataclass, dataclasses.field),
        _inherited(record.dataclass, record.field),
    )
    assert _parameters(oc) == _parameters(sc)
    assert oc() == oc(7, (), "scratch") and oc() != ob(7)
    assert record.is_dataclass(oc()) and record.is_dataclass(oc)
    assert not record.is_dataclass(object())
    match oc(3, ("f",), "busybox"):
        case ob(line, flags):
            assert (line, flags) == (3, ("f",))
        case _:
            pytest.fail("positional class pattern")


def test_slots_agree() -> None:
    std, ours = _pair(_slotted)
    for cls in (std, ours):
        v = cls(b"n", 2)
        assert v.deep and not hasattr(v, "__dict__")
        v.depth = 0
        assert not v.deep
        with pytest.raises(AttributeError):
            v.other = 1


def test_explicit_methods_win() -> None:
    @record.dataclass(frozen=True)
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __hash__(self) -> int:
            return 42

    assert repr(Named("a")) == "<a>" and hash(Named("a")) == 42


def test_defining_classes_does_not_import_dataclasses() -> None:
    """The point of the module: no `dataclasses` (and its `inspect`) at start-up."""
    code = (
        "import sys\n"
        "from builder.record import dataclass, field\n"
        "@dataclass(frozen=True)\n"
        "class A:\n"
        "    x: int = field(default=1)\n"
        "assert A() == A(1)\n"
        "print(sorted(m for m in ('dataclasses', 'inspect') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
