"""Instruction flags (`--from=build`, `--link`): which each instruction accepts, and their
values as strings, booleans and lists, checked as BuildKit's frontend checks them."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from builder.recipe.suggest import closest
from builder.record import dataclass


class FlagKind(enum.Enum):
    STRING = "string"
    BOOL = "bool"
    LIST = "list"  # repeatable string flag (--mount, --exclude)


class FlagError(ValueError):
    """A flag problem; `word` is the offending flag word, for the caret."""

    def __init__(self, message: str, word: str) -> None:
        super().__init__(message)
        self.word = word


@dataclass(frozen=True)
class ParsedFlags:
    strings: Mapping[str, str]
    bools: Mapping[str, bool]
    lists: Mapping[str, tuple[str, ...]]

    def string(self, name: str) -> str | None:
        return self.strings.get(name)

    def flag(self, name: str) -> bool:
        return self.bools.get(name, False)

    def many(self, name: str) -> tuple[str, ...]:
        return self.lists.get(name, ())


_S, _B, _L = FlagKind.STRING, FlagKind.BOOL, FlagKind.LIST

# Which flags each instruction accepts (BuildKit's dockerfile frontend, stable + labs).
ALLOWED: Mapping[str, Mapping[str, FlagKind]] = {
    "FROM": {"platform": _S},
    "RUN": {"mount": _L, "network": _S, "security": _S},
    "COPY": {"from": _S, "chown": _S, "chmod": _S, "link": _B, "parents": _B, "exclude": _L},
    "ADD": {
        "chown": _S,
        "chmod": _S,
        "link": _B,
        "checksum": _S,
        "keep-git-dir": _B,
        "exclude": _L,
        "unpack": _B,
    },
    "HEALTHCHECK": {
        "interval": _S,
        "timeout": _S,
        "start-period": _S,
        "start-interval": _S,
        "retries": _S,
    },
}


def parse_flags(keyword: str, words: tuple[str, ...]) -> ParsedFlags:
    """Validate `words` (e.g. "--from=build", "--link") for instruction `keyword`."""
    allowed = ALLOWED.get(keyword, {})
    strings: dict[str, str] = {}
    bools: dict[str, bool] = {}
    lists: dict[str, list[str]] = {}
    for word in words:
        if not word.startswith("--"):
            raise FlagError(f"invalid flag syntax: {word!r}", word)
        name, has_value, value = word[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            close = closest(name, allowed, case_sensitive=True)
            hint = f" (did you mean {close}?)" if close else ""  # BuildKit's bflag words
            raise FlagError(f"unknown flag: --{name}{hint}", word)
        if kind is FlagKind.BOOL:
            if name in bools:
                raise FlagError(f"duplicate flag specified: --{name}", word)
            if not has_value or value.lower() == "true":
                bools[name] = True
            elif value.lower() == "false":
                bools[name] = False
            else:
                raise FlagError(f"expecting boolean value for flag {name}, not: {value}", word)
            continue
        if not has_value:
            raise FlagError(f"missing a value on flag: --{name}", word)
        if kind is FlagKind.LIST:
            lists.setdefault(name, []).append(value)
        elif name in strings:
            raise FlagError(f"duplicate flag specified: --{name}", word)
        else:
            strings[name] = value
    return ParsedFlags(strings, bools, {k: tuple(v) for k, v in lists.items()})
