"""A recipe's bytes to its text: the size limit and the encoding, checked before parsing.

Pure: the caller reads the file (engine/recipefile.py reads at most MAX_RECIPE_BYTES + 1
bytes, so that a device or a huge file never fills memory) and hands the bytes here.
"""

from __future__ import annotations

from builder.errors import RecipeError, SourceLocation

# Real recipes are well under 64 KiB; 4 MiB leaves room for generated ones and still parses
# in about a second. The README documents it.
MAX_RECIPE_BYTES = 4 << 20


def too_large(filename: str, size: int | None = None) -> RecipeError:
    """The error for a recipe over the limit (`size` when it is known)."""
    shown = f" is {size / (1 << 20):.1f} MiB:" if size is not None else " is"
    return RecipeError(
        f"{filename}{shown} larger than a recipe may be",
        hint=f"the limit is {MAX_RECIPE_BYTES >> 20} MiB",
    )


def recipe_text(raw: bytes, filename: str) -> str:
    """The text of a recipe file: at most MAX_RECIPE_BYTES of UTF-8.

    BuildKit reads recipes as UTF-8 text; a byte that is not UTF-8 is refused here, at its
    line and column, rather than carried as a raw byte into labels, paths and commands.
    """
    if len(raw) > MAX_RECIPE_BYTES:
        raise too_large(filename)  # the reader stops one byte past the limit
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(raw, err.start, filename) from None


def _not_utf8(raw: bytes, offset: int, filename: str) -> RecipeError:
    line_start = raw.rfind(b"\n", 0, offset) + 1
    line_end = raw.find(b"\n", offset)
    line = raw[line_start : line_end if line_end >= 0 else len(raw)]
    before = raw[line_start:offset].decode("utf-8", "replace")
    location = SourceLocation(
        filename,
        raw.count(b"\n", 0, offset) + 1,
        len(before) + 1,
        line.decode("utf-8", "replace"),
    )
    return RecipeError(
        f"invalid UTF-8: byte 0x{raw[offset]:02x}", location, "a recipe is UTF-8 text"
    )
