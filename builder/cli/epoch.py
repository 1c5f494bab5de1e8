"""`--source-date-epoch` and $SOURCE_DATE_EPOCH, for the verbs that write images."""

from __future__ import annotations

import os

import click

from builder.errors import UsageError
from builder.image.epoch import parse_epoch

ENV = "SOURCE_DATE_EPOCH"

option = click.option(
    "--source-date-epoch",
    "source_date_epoch",
    metavar="SECONDS",
    help="Reproducible output: `created` is SECONDS since 1970 and no layer mtime is later"
    f" (default: ${ENV}).",
)


def source_date_epoch(flag: str | None) -> int | None:
    """The flag's value, else the environment's; None when neither is set.

    An empty variable counts as unset, as buildx has it (CI templates often export it
    empty); anything else that is not whole seconds is an error, not a silent clock time.
    """
    if flag is not None:
        where, text = "--source-date-epoch", flag
    else:
        where, text = f"${ENV}", os.environ.get(ENV, "")
        if not text:
            return None
    try:
        return parse_epoch(text)
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None
