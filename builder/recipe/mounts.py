"""RUN --mount values as BuildKit reads them, parsed into RunMount values.

Pure: the engine turns a RunMount into a sandbox mount (engine/runmounts.py). A spec is
parsed when the recipe is typed if it is literal, else once `resolve()` has expanded it;
both call `parse_mount`, so `builder lint` and `builder build` reject the same specs with
the same message.
"""

from __future__ import annotations

import posixpath
import re

from builder.recipe.gostr import go_quote
from builder.recipe.suggest import closest
from builder.record import dataclass

_TRUE = {"", "true", "1"}
_FALSE = {"false", "0"}
# In BuildKit's order (commands_runmount.go): a mistyped key is told the first closest one.
_KEYS = (
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
)
_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING = ("shared", "private", "locked")
# docker/go-units RAMInBytes: a number, then an optional binary unit (k = 1024).
_RAM = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kmgtp])?(?:i?b)?", re.IGNORECASE)
_RAM_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# from= is never expanded (the plan needs it before any ARG has a value): BuildKit's words.
FROM_NOT_EXPANDED = "'from' doesn't support variable expansion, define alias stage instead"


class MountError(ValueError):
    """A --mount value that is not valid (or not supported yet); the caller adds where."""


@dataclass(frozen=True)
class RunMount:
    type: str
    target: str
    source: str | None = None
    from_: str | None = None
    readonly: bool = True
    id: str | None = None
    sharing: str = "shared"
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    required: bool = False
    env: str | None = None  # type=secret: also (or, without target=, only) this variable
    size: int | None = None  # type=tmpfs: its size limit in bytes


def _flag(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise MountError(f"--mount {key}={value}: expected true or false")


def mount_from(spec: str) -> str | None:
    """The `from=` of a --mount value as written (BuildKit never expands it): the stage
    or image the mount reads, which the plan must build first."""
    for part in spec.split(","):
        key, _eq, value = part.partition("=")
        if key.strip().lower() == "from" and value:
            return value
    return None


def _suggest(message: str, value: str, options: tuple[str, ...]) -> str:
    """BuildKit's suggest.WrapError: the message, then `(did you mean X?)` when one is close."""
    close = closest(value, options, case_sensitive=True)
    return f"{message} (did you mean {close}?)" if close else message


def ram_in_bytes(text: str) -> int | None:
    """docker/go-units RAMInBytes (`128m`, `1g`, `512KiB`, `1024`), else None."""
    match = _RAM.fullmatch(text)
    if match is None:
        return None
    return int(float(match[1]) * _RAM_UNITS[(match[2] or "").lower()])


def parse_mount(spec: str) -> RunMount:
    values: dict[str, str] = {}
    for part in spec.split(","):
        key, _eq, value = part.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise MountError(_suggest(f"unexpected key '{key}' in '{part}'", key, _KEYS))
        values[key] = value
    kind = (values.pop("type", "bind") or "bind").lower()
    if kind not in _TYPES:
        raise MountError(_suggest(f"unsupported mount type {go_quote(kind)}", kind, _TYPES))
    if kind == "ssh":
        raise MountError("--mount type=ssh is not supported yet")
    target = (
        values.pop("target", None) or values.pop("dst", None) or values.pop("destination", None)
    )
    readonly = kind in ("bind", "secret")
    for key in ("readonly", "ro"):
        if key in values:
            readonly = _flag(key, values.pop(key))
    for key in ("rw", "readwrite"):
        if key in values:
            readonly = not _flag(key, values.pop(key))
    ident = values.pop("id", None)
    env = values.pop("env", None) if kind == "secret" else None
    if env is not None and not _ENV_NAME.fullmatch(env):
        raise MountError(f"--mount env={env}: not a variable name")
    if kind == "secret" and target is None and env is not None:
        if not ident:
            raise MountError("--mount type=secret,env= needs id=")
        target = ""  # BuildKit: env= without target= gives the variable only, no file
    elif kind == "secret" and target is None:
        name = ident or ""
        if not name:
            raise MountError("--mount type=secret needs id= or target=")
        target = f"/run/secrets/{name}"
    if not target and env is None:
        raise MountError(f"--mount type={kind} needs target=")
    if target and not target.startswith("/"):
        raise MountError(f"--mount target={target}: must be an absolute path")
    sharing = values.pop("sharing", "shared").lower()
    if sharing not in _SHARING:
        message = f"unsupported sharing value {go_quote(sharing)}"
        raise MountError(_suggest(message, sharing, _SHARING))
    size = None
    if "size" in values:
        text = values.pop("size")
        if kind != "tmpfs":
            raise MountError(f"unexpected key 'size' for mount type '{kind}'")
        size = ram_in_bytes(text)
        if size is None:
            raise MountError(f"invalid value for size: {text}")
    try:
        mode = int(values.pop("mode"), 8) if "mode" in values else None
        uid = int(values.pop("uid", "0") or 0)
        gid = int(values.pop("gid", "0") or 0)
    except ValueError as err:
        raise MountError(f"--mount: {err}") from None
    required = _flag("required", values.pop("required")) if "required" in values else False
    source = values.pop("source", None) or values.pop("src", None)
    from_ = values.pop("from", None) or None
    if from_ is not None:
        if "$" in from_:
            raise MountError(FROM_NOT_EXPANDED)
        if kind not in ("bind", "cache"):
            raise MountError(f"--mount type={kind} does not take from=")
    if "env" in values:
        raise MountError(f"--mount {', '.join(values)} is not supported yet")
    return RunMount(
        kind,
        posixpath.normpath(target) if target else "",
        source,
        from_,
        readonly,
        ident or (target if kind == "cache" else None),
        sharing,
        mode,
        uid,
        gid,
        required,
        env,
        size,
    )
