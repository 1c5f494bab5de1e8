"""docker run's `-v`, `--mount` and `--tmpfs`, as the sandbox's Mount values.

Only host paths and tmpfs: there are no named volumes here, and each refusal says so. The
messages are docker's where docker has one (`bind source path does not exist: ...`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from builder.errors import RunFailed
from builder.sandbox.spec import Mount

_SIZE = re.compile(r"(\d+)([kmgtp]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
# --tmpfs options passed to the kernel as mount data; the flags are handled apart.
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks")
# Flags the sandbox's tmpfs has anyway (nosuid, nodev, exec): accepted, changing nothing.
_TMPFS_DEFAULT_FLAGS = ("nosuid", "nodev", "exec", "rw")


def _truthy(key: str, value: str | None) -> bool:
    if value is None or value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise RunFailed(f"invalid value for {key}: {value} (want true or false)")


def _absolute_target(text: str, spec: str) -> str:
    if not text.startswith("/"):
        raise RunFailed(f"invalid mount config: mount path must be absolute: {spec}")
    return text


def parse_volume(spec: str) -> Mount:
    """`-v HOST:CTR[:OPTS]`. docker creates a missing host dir; so do we (mkdir -p)."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise RunFailed(
            f"invalid volume specification: '{spec}' (want HOST:CONTAINER[:ro]; anonymous"
            " volumes are not supported)"
        )
    source, target = parts[0], parts[1]
    if not source.startswith("/"):
        raise RunFailed(
            f'"{source}" includes invalid characters for a local volume name, only host paths'
            " (absolute) can be mounted: named volumes are not supported"
        )
    readonly = False
    for opt in parts[2].split(",") if len(parts) == 3 else ():
        if opt in ("ro", "rw"):
            readonly = opt == "ro"
        elif opt not in ("z", "Z", "consistent", "cached", "delegated", "rprivate", "private"):
            raise RunFailed(f"invalid mode: {opt} (in -v {spec})")
    try:
        os.makedirs(source, exist_ok=True)
    except OSError as err:
        raise RunFailed(
            f"error while creating mount source path '{source}': {err.strerror}"
        ) from None
    return Mount(_absolute_target(target, spec), "bind", Path(source), readonly=readonly)


def parse_mount(spec: str) -> Mount:
    """`--mount type=bind|tmpfs,source=...,target=...[,readonly][,tmpfs-size=][,tmpfs-mode=]`."""
    fields: dict[str, str | None] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        fields[key.strip().lower()] = value if sep else None
    kind = fields.pop("type", None) or "volume"
    if kind not in ("bind", "tmpfs"):
        raise RunFailed(f"--mount type={kind}: only bind and tmpfs are supported")
    source = next((fields.pop(k) for k in ("source", "src") if k in fields), None)
    target = next((fields.pop(k) for k in ("target", "dst", "destination") if k in fields), None)
    readonly = False
    for key in ("readonly", "ro"):
        if key in fields:
            readonly = _truthy(key, fields.pop(key))
    where = f'invalid mount config for type "{kind}"'
    if not target:
        raise RunFailed(f"{where}: field Target must not be empty")
    options = []
    if "tmpfs-size" in fields:
        options.append(f"size={_bytes(fields.pop('tmpfs-size') or '')}")
    if "tmpfs-mode" in fields:
        options.append(f"mode={_mode(fields.pop('tmpfs-mode') or '')}")
    if fields:
        key = next(iter(fields))
        raise RunFailed(f"--mount: unknown or unsupported key {key!r}")
    if kind == "tmpfs":
        if source:
            raise RunFailed(f"{where}: field Source must not be specified")
        return Mount(
            _absolute_target(target, spec), "tmpfs", readonly=readonly, options=",".join(options)
        )
    if options:
        raise RunFailed(f"{where}: tmpfs options are for type=tmpfs")
    if not source:
        raise RunFailed(f"{where}: field Source must not be empty")
    if not os.path.exists(source):
        raise RunFailed(f"{where}: bind source path does not exist: {source}")
    path = Path(os.path.abspath(source))
    return Mount(_absolute_target(target, spec), "bind", path, readonly=readonly)


def parse_tmpfs(spec: str) -> Mount:
    """`--tmpfs PATH[:size=64m,mode=1770,ro,...]`."""
    target, _, opts = spec.partition(":")
    readonly = False
    data = []
    for opt in opts.split(",") if opts else ():
        key, sep, value = opt.partition("=")
        if opt == "ro":
            readonly = True
        elif opt in _TMPFS_DEFAULT_FLAGS:
            continue
        elif sep and key in _TMPFS_DATA and re.fullmatch(r"[0-9]+[kmgKMG%]?", value):
            data.append(opt)
        else:
            raise RunFailed(f"--tmpfs {spec}: unsupported option {opt!r}")
    return Mount(_absolute_target(target, spec), "tmpfs", readonly=readonly, options=",".join(data))


def _bytes(text: str) -> int:
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise RunFailed(f"invalid size: {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _mode(text: str) -> str:
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise RunFailed(f"invalid tmpfs-mode: {text!r} (want octal)")
    return text
