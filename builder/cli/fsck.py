"""`builder fsck [--repair] [--json]`: check every blob, image, unpacked layer and cache
record of the store (store/fsck.py says what each check is).

One line per problem on stdout (`KIND NAME: PROBLEM`), a summary on stderr. Exit 0 when the
store is sound; 6 (a store error) when a problem is found and left. With --repair, what is
broken is removed and the store checked again: exit 0 when that second check is clean.
"""

from __future__ import annotations

import json
import sys

import click

from builder.cli.common import open_store
from builder.errors import StoreError

_NOUNS = {
    "blob": "blobs",
    "image": "images",
    "layer": "unpacked layers",
    "cache": "cache records",
    "variant": "variant records",
}


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Remove what is broken: corrupt blobs, the names of images that need them, broken"
    " unpacked layers (unpacked again on next use) and broken cache records.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout, for CI.")
@click.pass_context
def fsck(ctx: click.Context, repair: bool, as_json: bool) -> None:
    """Verify every blob, image, unpacked layer and cache record against its digest."""
    store = open_store(ctx)
    found = store.fsck(repair=repair)
    left = store.fsck() if repair and found.problems else found
    if as_json:
        click.echo(
            json.dumps(
                {
                    "checked": found.checked,
                    "problems": [p.to_json() for p in found.problems],
                    "repaired": repair,
                    "left": [p.to_json() for p in left.problems],
                },
                indent=2,
            )
        )
    else:
        for problem in found.problems:
            click.echo(problem.line() + (" (removed)" if repair else ""))
        checked = ", ".join(f"{n} {_NOUNS[kind]}" for kind, n in found.checked.items())
        click.echo(f"checked {checked}: {len(found.problems)} problems", err=True)
        for problem in left.problems if repair else ():
            click.echo(f"left: {problem.line()}")
    if left.problems:
        sys.exit(StoreError.exit_code)
