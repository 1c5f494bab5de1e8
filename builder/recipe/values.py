"""Flag values parsed into what the engine uses, and what we reject, in one place.

A value written literally is parsed when the recipe is typed (typed.py); one that holds a
variable (`--chmod=$MODE`) can only be parsed once `resolve()` has expanded it. Both call
the functions here and raise `InvalidValue` at the same word, so `builder lint` and
`builder build` reject a recipe with the same message, wherever the value came from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from builder.errors import RecipeError, SourceLocation
from builder.image.duration import DurationError, parse_duration
from builder.image.platform import Platform
from builder.recipe import chmod
from builder.record import replace

_RETRIES = re.compile(r"[+-]?[0-9]+")
# Expansion leaves a word without `$`, quotes or escape characters as it is.
_LITERAL = re.compile(r"[^$\"'\\`]*")
_MIN_HEALTHCHECK_NS = 1_000_000  # docker's container.MinimumDuration: 1ms


class InvalidValue(RecipeError):
    """A flag's value is not valid, or asks for what we do not support."""


class Problem(ValueError):
    """What is wrong with a value, before it is placed: the caller knows where it is."""

    def __init__(self, message: str, hint: str | None = None, word: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.word = word  # the word of the instruction to put the caret on


def is_literal(text: str) -> bool:
    """True when expanding `text` cannot change it (no variable, quote or escape)."""
    return _LITERAL.fullmatch(text) is not None


def at_word(location: SourceLocation, word: str | None) -> SourceLocation:
    """`location` moved to where `word` starts on the instruction's first line, if it is there."""
    if word is None or location.source_line is None:
        return location
    column = location.source_line.find(word)
    return location if column < 0 else replace(location, column=column + 1)


def invalid(problem: Problem, location: SourceLocation) -> InvalidValue:
    """The problem as a recipe error at its word, whichever side found it."""
    return InvalidValue(problem.message, at_word(location, problem.word), problem.hint)


def no_nul(keyword: str, texts: Iterable[str]) -> None:
    """A NUL byte in a word of an instruction: no command, argument, variable, name or
    path can hold one (the kernel ends a string there). Typing checks the words as written,
    resolve() the expanded ones, with this one message; the caret goes on the NUL when it
    is on the instruction's line."""
    if any("\0" in text for text in texts):
        raise Problem(
            f"{keyword}: a NUL byte cannot be part of an instruction",
            "no command, argument, variable, name or path can hold one;"
            " only a COPY or ADD heredoc body may",
            "\0",
        )


def parse_chmod(text: str | None) -> int | None:
    """--chmod: octal permission bits (755, 0640, 4755), or a symbolic mode (go-w,
    u=rwx,g=rx), which is checked here and applied per file by the engine (recipe/chmod);
    the octal bits, None for a symbolic mode."""
    if not text:
        return None
    try:
        return chmod.parse(text).octal
    except chmod.ChmodError as err:
        raise Problem(
            str(err), "for example --chmod=755, --chmod=0644 or --chmod=u=rwx,go=rx", "--chmod"
        ) from None


def parse_platform(text: str | None) -> Platform | None:
    """FROM --platform: only this host's platform (nothing can run another's binaries)."""
    if not text:
        return None
    try:
        wanted = Platform.parse(text)
    except ValueError as err:
        raise Problem(f"invalid --platform={text}", str(err), "--platform") from None
    host = Platform.host()
    if (wanted.os, wanted.architecture, wanted.variant) != (
        host.os,
        host.architecture,
        host.variant,
    ):
        raise Problem(
            f"FROM --platform={text}: cross-platform builds are not supported",
            f"this machine builds {host}",
            "--platform",
        )
    return wanted


def healthcheck_duration(flag: str, text: str | None) -> int:
    """A HEALTHCHECK duration in nanoseconds: 0 (unset) or at least 1ms, as docker wants."""
    if text is None:
        return 0
    try:
        ns = parse_duration(text)
    except DurationError as err:
        raise Problem(
            f"invalid duration --{flag}={text}", f"{err}; e.g. 30s, 1m30s, 500ms", f"--{flag}"
        ) from None
    if ns != 0 and ns < _MIN_HEALTHCHECK_NS:
        raise Problem(
            f"--{flag}={text} is shorter than 1ms", "0 (the default) or at least 1ms", f"--{flag}"
        )
    return ns


def healthcheck_retries(text: str | None) -> int:
    """--retries: a 32-bit integer >= 0 (docker's strconv.ParseInt(s, 10, 32))."""
    if text is None:
        return 0
    if not _RETRIES.fullmatch(text) or not 0 <= int(text) < 1 << 31:
        raise Problem(f"invalid --retries={text}", "a whole number >= 0", "--retries")
    return int(text)


def _is_remote(source: str) -> bool:
    return "://" in source or source.startswith("git@")


def add_sources(sources: Sequence[str], checksum: str | None, keep_git_dir: bool) -> None:
    """ADD: local files and archives only (a URL or git source is not fetched yet).

    --checksum is refused on a local source in BuildKit's words (convert_copy.go);
    --keep-git-dir is ignored there, as BuildKit uses it only for a git source."""
    del keep_git_dir
    remote = next((s for s in sources if _is_remote(s)), None)
    if remote is not None:
        raise Problem("ADD from a URL or git repository is not supported yet", word=remote)
    if checksum:
        if len(sources) != 1:
            raise Problem("checksum can't be specified for multiple sources", word="--checksum")
        raise Problem("checksum requires HTTP(S) or Git sources", word="--checksum")


# moby/sys/signal's SignalMap for Linux: the names STOPSIGNAL takes, without "SIG".
_SIGNAL_NAMES = (
    "ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV"
    " STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX"
)
_SIGNALS = frozenset(
    _SIGNAL_NAMES.split()
    + [f"RTMIN+{n}" for n in range(1, 16)]
    + [f"RTMAX-{n}" for n in range(1, 15)]
)
_GO_INT = re.compile(r"[+-]?[0-9]+")


def check_signal(text: str) -> None:
    """STOPSIGNAL: moby's ParseSignal, as BuildKit's dispatchStopSignal calls it: a non-zero
    number, or a signal name with or without SIG in any case."""
    if _GO_INT.fullmatch(text):
        if int(text) != 0:
            return
    elif text.upper().removeprefix("SIG") in _SIGNALS:
        return
    raise Problem(f"invalid signal: {text}", "for example SIGTERM, TERM or 15")


def expose_ports(raw: str) -> list[str]:
    """One EXPOSE word as the config's keys, `80`, `80/UDP`, `8000-8002/tcp` or
    `[ip:]host:container/proto`, by BuildKit's parsePort (the container side only), with its
    error words."""
    parts = raw.split(":")
    container = parts[-1]
    ip = ":".join(parts[:-2]) if len(parts) > 2 else ""
    host = parts[-2] if len(parts) > 1 else ""
    port, _, proto = container.partition("/")
    if not port:
        raise Problem(f'invalid port: "{raw}": no port specified')
    if proto.lower() not in ("", "tcp", "udp", "sctp"):
        raise Problem(f'invalid port: "{raw}": invalid proto: {proto}')
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip and not _is_ip(ip):
        raise Problem(f"invalid IP address: {ip}")
    span = _port_range(port)
    if span is None:
        raise Problem(f"invalid containerPort: {port}")
    if host:
        host_span = _port_range(host)
        if host_span is None:
            raise Problem(f"invalid hostPort: {host}")
        if span[1] - span[0] != host_span[1] - host_span[0] and span[0] != span[1]:
            raise Problem(
                f"invalid ranges specified for container and host Ports: {port} and {host}"
            )
    name = (proto or "tcp").lower()
    return [f"{n}/{name}" for n in range(span[0], span[1] + 1)]


def _port_range(text: str) -> tuple[int, int] | None:
    start, dash, end = text.partition("-")
    if not _GO_INT.fullmatch(start) or not 0 <= int(start) <= 65535:
        return None
    if not dash or start == end:
        return int(start), int(start)
    if not _GO_INT.fullmatch(end) or not int(start) <= int(end) <= 65535:
        return None
    return int(start), int(end)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
