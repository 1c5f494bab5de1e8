"""The config file: where it is and its TOML document. Each feature reads its own tables
(`[registry."HOST"]` in registry/settings, `[build]` in the CLI); other tables are ignored.

The file is $BUILDER_CONFIG, else /etc/builder/builder.toml as root, else
$XDG_CONFIG_HOME/builder/builder.toml or ~/.config/builder/builder.toml.
"""

from __future__ import annotations

# The /proc files below and the sandbox's are read and written as ascii: a warm server
# (which imports every module) holds the codec, so its forked child does not import it
# on every call (a file read: ~0.5 ms, 14 ms while another process loads the disk).
import encodings.ascii  # noqa: F401
import os
from pathlib import Path
from typing import Any

from builder.errors import UsageError

SYSTEM_CONFIG = Path("/etc/builder/builder.toml")


def config_path(euid: int | None = None) -> tuple[Path, bool]:
    """The config file's path, and whether the user named it ($BUILDER_CONFIG)."""
    named = os.environ.get("BUILDER_CONFIG")
    if named:
        return Path(named), True
    if (_host_euid() if euid is None else euid) == 0:
        return SYSTEM_CONFIG, False
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and is to be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "builder" / "builder.toml", False


def _host_euid() -> int:
    """Our uid on the host: a rootless builder is uid 0 of its own user namespace, and
    its config is still the user's."""
    euid = os.geteuid()
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            for line in f:
                inside, outside, count = map(int, line.split())
                if inside <= euid < inside + count:
                    return outside + euid - inside
    except (OSError, ValueError):
        pass
    return euid


def load_document(path: Path | None = None) -> tuple[dict[str, Any], Path]:
    """The config file's TOML document (empty if there is none at a default place), and
    the path it was looked for at.

    A missing file that was named (`path` or $BUILDER_CONFIG), bad TOML or an unreadable
    file is a UsageError.
    """
    named = path is not None
    if path is None:
        path, named = config_path()
    try:
        text = path.read_bytes().decode()
    except FileNotFoundError:
        if named:
            raise UsageError(f"config file {path} does not exist") from None
        return {}, path
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8"
        raise UsageError(f"cannot read config file {path}: {reason}") from None
    if not text.strip():  # an empty document: no parser to import (start-up)
        return {}, path
    import tomllib  # only when there is a file: most runs have none

    try:
        return tomllib.loads(text), path
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"config file {path} is not valid TOML: {err}") from None


def table(document: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """The document's table NAME ({} if absent); a non-table is a UsageError."""
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise UsageError(f"config file {path}: [{name}] must be a table")
    return value
