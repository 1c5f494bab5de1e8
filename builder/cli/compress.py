"""`--compression`, `--compression-level`, `--force-compression`: the verbs that write layers
share them; `-o type=image,compression=...` fills the same value (LayerCompression)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from builder.image.compression import LayerCompression

F = TypeVar("F", bound=Callable[..., object])


def options(func: F) -> F:
    """The three options, as the keyword arguments compression, compression_level and
    force_compression."""
    func = click.option(
        "--force-compression",
        is_flag=True,
        default=None,
        help="Recompress every layer at the asked level, even one whose blob already has the"
        " asked kind.",
    )(func)
    func = click.option(
        "--compression-level",
        type=int,
        metavar="N",
        help="The compressor's level: zstd 1-22 (default 3), gzip 0-9 (default 6).",
    )(func)
    return click.option(
        "--compression",
        type=click.Choice(["zstd", "gzip", "uncompressed"]),
        help="Every layer of the image in this compression, converting cached and base"
        " layers if need be (default: new layers zstd, reused ones as they are).",
    )(func)


def attrs(compression: str | None, level: int | None, force: bool | None) -> dict[str, str]:
    """The flags as buildx's `-o` keys, only those given."""
    # A flag left off is no request (older clicks give False for it rather than None).
    given = {
        "compression": compression,
        "compression-level": level,
        "force-compression": force or None,
    }
    return {key: str(value).lower() for key, value in given.items() if value is not None}


def requested(
    compression: str | None, level: int | None, force: bool | None
) -> LayerCompression | None:
    """What the flags ask for, None when none of them is given."""
    return LayerCompression.from_attrs(attrs(compression, level, force))
