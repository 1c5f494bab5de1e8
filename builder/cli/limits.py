"""`--memory`, `--memory-swap`, `--cpus`, `--pids-limit`, `--cgroup-parent`: resource limits
as docker spells them, shared by `build` (for every RUN step) and `run`.

A build gets a pids limit even without the flag (DEFAULT_BUILD_PIDS_LIMIT, or the config
file's `[build] pids-limit`), so that a fork bomb in a RUN ends the step, not the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from builder.errors import UsageError
from builder.sandbox.limits import (
    DEFAULT_BUILD_PIDS_LIMIT,
    Limits,
    parse_bytes,
    parse_cpus,
    parse_memory_swap,
    parse_pids,
)

F = TypeVar("F", bound=Callable[..., object])


def options(func: F) -> F:
    """The options, as the keyword arguments memory, memory_swap, cpus, pids_limit and
    cgroup_parent."""
    for decorator in reversed(
        [
            click.option("-m", "--memory", metavar="BYTES", help="Memory limit (e.g. 64m, 1g)."),
            click.option(
                "--memory-swap",
                metavar="BYTES",
                help="Memory plus swap (-1: unlimited swap; default: twice --memory).",
            ),
            click.option("--cpus", metavar="N", help="CPU time, in CPUs (e.g. 1.5)."),
            click.option(
                "--pids-limit", type=int, metavar="N", help="Most processes at once (-1: none)."
            ),
            click.option(
                "--cgroup-parent",
                metavar="PATH",
                help="The cgroup the container's cgroup is made under (default /builder).",
            ),
        ]
    ):
        func = decorator(func)
    return func


def limits(
    memory: str | None,
    memory_swap: str | None,
    cpus: str | None,
    pids_limit: int | None,
    cgroup_parent: str | None,
    *,
    default_pids: int | None = None,
) -> Limits:
    """The flags as a Limits value. DEFAULT_PIDS applies (best effort) when --pids-limit is
    not given."""
    pids = parse_pids(pids_limit) if pids_limit is not None else default_pids
    parent = cgroup_parent if cgroup_parent is not None else "/builder"
    if not parent.startswith("/") or ".." in parent.split("/"):
        raise UsageError(f"--cgroup-parent {parent}: want an absolute path without '..'")
    asked = any(v is not None for v in (memory, memory_swap, cpus, pids_limit))
    return Limits(
        memory=parse_bytes(memory, "--memory") if memory is not None else None,
        memory_swap=parse_memory_swap(memory_swap) if memory_swap is not None else None,
        cpus=parse_cpus(cpus) if cpus is not None else None,
        pids=pids,
        parent=parent,
        best_effort=not asked,
    )


def build_pids_default() -> int | None:
    """The build's default pids limit: the config file's `[build] pids-limit`, else
    DEFAULT_BUILD_PIDS_LIMIT; 0 or -1 there turns it off."""
    from builder.config import load_document, table

    document, path = load_document()
    value: Any = table(document, "build", path).get("pids-limit", DEFAULT_BUILD_PIDS_LIMIT)
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"config file {path}: [build] pids-limit must be an integer")
    return parse_pids(value)
