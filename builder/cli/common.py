"""Helpers the verbs share: opening the store from the group's --root."""

from __future__ import annotations

import os
from pathlib import Path

import click

from builder.store import Store

# The verbs that write to the store: each removes, when it opens the store, what killed
# commands left in its tmp/ (their owner process is gone). Read-only verbs leave it.
SWEEPING_VERBS = frozenset(
    {"build", "run", "import", "load", "rmi", "save", "export", "prune", "rm"}
)


def open_store(ctx: click.Context) -> Store:
    root = ctx.find_root().obj
    assert isinstance(root, Path)
    if os.geteuid() != 0:  # rootless: the store is only ever touched from our user namespace
        from builder.sandbox.rootless import enter

        enter()
    store = Store.open(root)
    if ctx.info_name in SWEEPING_VERBS:
        store.sweep_scratch()
    return store
