"""docker's `--env-file`: one VAR=VALUE a line, taken literally (no quotes, no expansion);
`#` comments and blank lines skipped; a bare VAR takes the host's value, or is dropped."""

from __future__ import annotations

import os
from collections.abc import Mapping

from builder.errors import RunFailed


def read_env_file(path: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise RunFailed(f"open {path}: {(err.strerror or str(err)).lower()}") from None
    except UnicodeDecodeError:
        raise RunFailed(f"{path}: not UTF-8 text") from None
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not name:
            raise RunFailed(f"{path}:{number}: no variable name")
        if any(ch.isspace() for ch in name):
            raise RunFailed(f"{path}:{number}: variable '{name}' contains whitespaces")
        if sep:
            out.append(f"{name}={value}")
        elif name in environ:
            out.append(f"{name}={environ[name]}")
    return out
