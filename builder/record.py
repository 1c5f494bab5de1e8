"""`dataclass`, `field`, `replace`, `asdict`, `fields`, `is_dataclass`: the part of the
standard `dataclasses` API this code uses, made cheap to define.

Why: every command pays for its class definitions at start-up, and the standard decorator
costs about 1 ms a class (it compiles each method in its own `exec` and imports `inspect`),
which was 0.14 s of a fully cached build's 95 classes. Here one `exec` compiles all of a
class's methods, and nothing heavy is imported.

The semantics are the standard ones for what is supported: `frozen`, `kw_only`, `slots`,
`eq`, `init`, `repr`; `field(default, default_factory, init, repr, compare, kw_only)`;
`__post_init__`; inheritance of fields; a method the class defines itself wins; `__hash__`
as the standard rules give it; `__match_args__`. `tests/test_record.py` compares each with
the standard module. Type checkers see the standard module (the `TYPE_CHECKING` branch), so
mypy checks every class as the dataclass it behaves as. The standard `dataclasses.replace`
also works on these classes.
"""

from __future__ import annotations

from operator import attrgetter as _attrgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataclasses import asdict as asdict
    from dataclasses import dataclass as dataclass
    from dataclasses import field as field
    from dataclasses import fields as fields
    from dataclasses import is_dataclass as is_dataclass
    from dataclasses import replace as replace
    from types import ModuleType

    def compile_now(cls: type) -> None: ...
    def compile_classes(module: ModuleType) -> None: ...
else:
    _FIELDS = "__dataclass_fields__"  # the standard name: dataclasses.replace() finds it

    class _Missing:
        def __repr__(self) -> str:
            return "MISSING"

    MISSING = _Missing()

    class FrozenInstanceError(AttributeError):
        """Assignment to a field of a frozen instance."""

    class Field:
        __slots__ = (
            "_field_type",
            "compare",
            "default",
            "default_factory",
            "init",
            "kw_only",
            "name",
            "repr",
            "type",
        )

        def __init__(self, default, default_factory, init, repr, compare, kw_only):
            if default is not MISSING and default_factory is not MISSING:
                raise ValueError("cannot specify both default and default_factory")
            self.name = None
            self.type = None
            self.default = default
            self.default_factory = default_factory
            self.init = init
            self.repr = repr
            self.compare = compare
            self.kw_only = kw_only
            self._field_type = None  # dataclasses.replace() reads it (not a ClassVar)

        def __repr__(self) -> str:
            return f"Field(name={self.name!r},default={self.default!r})"

    def field(
        *,
        default=MISSING,
        default_factory=MISSING,
        init=True,
        repr=True,
        compare=True,
        kw_only=MISSING,
    ):
        return Field(default, default_factory, init, repr, compare, kw_only)

    def _is_classvar(annotation) -> bool:
        text = annotation if isinstance(annotation, str) else repr(annotation)
        return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))

    def _collect(cls, kw_only: bool) -> dict[str, Field]:
        found: dict[str, Field] = {}
        for base in cls.__mro__[-1:0:-1]:
            found.update(getattr(base, _FIELDS, None) or {})
        # inspect.get_annotations would import inspect, which is what this module avoids.
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
            if _is_classvar(annotation):
                continue
            value = cls.__dict__.get(name, MISSING)
            spec = (
                value
                if isinstance(value, Field)
                else Field(value, MISSING, True, True, True, MISSING)
            )
            spec.name = name
            spec.type = annotation
            if spec.kw_only is MISSING:
                spec.kw_only = kw_only
            if isinstance(value, Field):
                if spec.default is MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, spec.default)
            elif isinstance(value, list | dict | set):
                raise ValueError(f"mutable default {type(value)} for field {name} is not allowed")
            found[name] = spec
        return found

    def _init_source(specs: list[Field], frozen: bool, post_init: bool, env: dict) -> str:
        params, kw_params, body = [], [], []
        for spec in specs:
            target = params if not spec.kw_only else kw_params
            if spec.default_factory is not MISSING:
                env[f"_factory_{spec.name}"] = spec.default_factory
                if spec.init:
                    target.append(f"{spec.name}=_HAS_FACTORY")
                    value = (
                        f"_factory_{spec.name}() if {spec.name} is _HAS_FACTORY else {spec.name}"
                    )
                else:
                    value = f"_factory_{spec.name}()"
            elif not spec.init:
                continue  # the class attribute is its default
            elif spec.default is not MISSING:
                env[f"_default_{spec.name}"] = spec.default
                target.append(f"{spec.name}=_default_{spec.name}")
                value = spec.name
            else:
                target.append(spec.name)
                value = spec.name
            if frozen:
                body.append(f"  _setattr(self, {spec.name!r}, {value})")
            else:
                body.append(f"  self.{spec.name} = {value}")
        if post_init:
            body.append("  self.__post_init__()")
        signature = ", ".join(["self", *params, *(["*", *kw_params] if kw_params else [])])
        return f"def __init__({signature}):\n" + ("\n".join(body) or "  pass") + "\n"

    def _lazy_init(cls, ordered: list[Field], frozen: bool):
        """An __init__ that compiles the real one on the first call and puts it in its
        place: a class never instantiated in a process never pays for the compile."""

        def compile_init():
            env = {"_setattr": object.__setattr__, "_HAS_FACTORY": MISSING}
            source = _init_source(ordered, frozen, hasattr(cls, "__post_init__"), env)
            methods: dict[str, Any] = {}
            exec(source, env, methods)  # code generated from the field names only
            real = methods["__init__"]
            real.__qualname__ = f"{cls.__qualname__}.__init__"
            cls.__init__ = real
            return real

        def __init__(self, *args, **kwargs):
            compile_init()(self, *args, **kwargs)

        __init__.compile_init = compile_init
        return __init__

    def compile_now(cls) -> None:
        """Compile a class's lazy __init__ now: a warm server does it before it forks, so
        that no call pays for it again."""
        compile_init = getattr(cls.__dict__.get("__init__"), "compile_init", None)
        if compile_init is not None:
            compile_init()

    def compile_classes(module) -> None:
        """compile_now for every class `module` defines: a process that forks the same
        code many times (a warm server, the sandbox launcher) pays for each once."""
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == module.__name__:
                compile_now(value)

    def _process(cls, frozen, kw_only, slots, eq, init, repr):
        specs = _collect(cls, kw_only)
        ordered = list(specs.values())
        own = dict(cls.__dict__)
        if slots:
            body = {k: v for k, v in own.items() if k not in specs and k != "__dict__"}
            body.pop("__weakref__", None)
            body["__slots__"] = tuple(specs)
            cls = type(cls)(cls.__name__, cls.__bases__, body)
        # No compile here but __init__'s, deferred to its first call: the methods are
        # closures over the field names.
        methods: dict[str, Any] = {}
        if init and "__init__" not in own:
            methods["__init__"] = _lazy_init(cls, ordered, frozen)
        if repr and "__repr__" not in own:
            shown = tuple(s.name for s in ordered if s.repr)

            def __repr__(self):
                inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
                return f"{self.__class__.__qualname__}({inner})"

            methods["__repr__"] = __repr__
        compared = tuple(s.name for s in ordered if s.compare)
        key = _attrgetter(*compared) if compared else _no_fields
        if eq and "__eq__" not in own:

            def __eq__(self, other):
                if other.__class__ is self.__class__:
                    return key(self) == key(other)
                return NotImplemented

            methods["__eq__"] = __eq__
        # The standard rules for __hash__ (unsafe_hash unsupported): an explicit one stays;
        # eq and frozen hash the compared fields; eq alone makes instances unhashable.
        class_hash = own.get("__hash__", MISSING)
        explicit = not (class_hash is MISSING or (class_hash is None and "__eq__" in own))
        if eq and not explicit:
            if frozen:

                def __hash__(self):
                    return hash(key(self))

                methods["__hash__"] = __hash__
            else:
                cls.__hash__ = None
        if frozen:
            names = frozenset(specs)

            def __setattr__(self, name, value):
                if type(self) is cls or name in names:
                    raise FrozenInstanceError(f"cannot assign to field {name!r}")
                super(cls, self).__setattr__(name, value)

            def __delattr__(self, name):
                if type(self) is cls or name in names:
                    raise FrozenInstanceError(f"cannot delete field {name!r}")
                super(cls, self).__delattr__(name)

            methods["__setattr__"] = __setattr__
            methods["__delattr__"] = __delattr__
        for name, method in methods.items():
            method.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, method)
        setattr(cls, _FIELDS, specs)
        if "__match_args__" not in own:
            cls.__match_args__ = tuple(s.name for s in ordered if s.init and not s.kw_only)
        return cls

    def _no_fields(obj):
        return ()

    def dataclass(
        cls=None,
        /,
        *,
        frozen=False,
        kw_only=False,
        slots=False,
        eq=True,
        init=True,
        repr=True,
    ):
        def wrap(cls):
            return _process(cls, frozen, kw_only, slots, eq, init, repr)

        return wrap if cls is None else wrap(cls)

    def is_dataclass(obj) -> bool:
        cls = obj if isinstance(obj, type) else type(obj)
        return hasattr(cls, _FIELDS)

    def fields(obj) -> tuple[Field, ...]:
        try:
            return tuple(getattr(obj, _FIELDS).values())
        except AttributeError:
            raise TypeError("must be called with a dataclass type or instance") from None

    def replace(obj, /, **changes):
        for spec in fields(obj):
            if not spec.init:
                if spec.name in changes:
                    raise ValueError(f"field {spec.name} is declared with init=False")
            elif spec.name not in changes:
                changes[spec.name] = getattr(obj, spec.name)
        return obj.__class__(**changes)

    def asdict(obj, *, dict_factory=dict):
        if not is_dataclass(obj) or isinstance(obj, type):
            raise TypeError("asdict() should be called on dataclass instances")
        return _asdict(obj, dict_factory)

    def _asdict(obj, dict_factory):
        if is_dataclass(obj) and not isinstance(obj, type):
            return dict_factory(
                [(f.name, _asdict(getattr(obj, f.name), dict_factory)) for f in fields(obj)]
            )
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*[_asdict(v, dict_factory) for v in obj])
        if isinstance(obj, list | tuple):
            return type(obj)(_asdict(v, dict_factory) for v in obj)
        if isinstance(obj, dict):
            return type(obj)(
                (_asdict(k, dict_factory), _asdict(v, dict_factory)) for k, v in obj.items()
            )
        import copy

        return copy.deepcopy(obj)
