"""Helpers the verbs share: opening the store from the group's --root."""

from __future__ import annotations

from pathlib import Path

import click

from builder.store import Store


def open_store(ctx: click.Context) -> Store:
    root = ctx.find_root().obj
    assert isinstance(root, Path)
    return Store.open(root)
