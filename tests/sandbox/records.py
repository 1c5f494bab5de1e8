"""What a sandbox's forks would each make again unless their parent made it first: the record
classes (builder/record.py) whose __init__ is not compiled yet, the libc functions not
looked up yet (builder/sandbox/syscalls.py)."""

from __future__ import annotations

from collections.abc import Iterable


def lazy_records(classes: Iterable[type]) -> list[str]:
    """The names of `classes` whose __init__ is still the lazy one (compiled on first use)."""
    return [
        cls.__qualname__
        for cls in classes
        if getattr(cls.__dict__.get("__init__"), "compile_init", None) is not None
    ]


def unresolved_libc() -> list[str]:
    """The libc functions of syscalls.py that this process has not looked up (ctypes keeps
    each it made as an attribute of the library)."""
    from builder.sandbox import syscalls

    made = vars(syscalls._libc()) if syscalls._libc.cache_info().currsize else {}
    return [name for name in syscalls._FUNCTIONS if name not in made]
