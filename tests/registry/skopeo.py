"""skopeo, the reference client the registry tests compare against, run as a subprocess.

`Access` says how skopeo reaches one registry (TLS verification, a CA dir, credentials); the
registry fixtures hand one out (`tls_registry.access()`, `token_registry.access()`, `PLAIN`).
skopeo never reads the user's own credentials here: without `creds` it goes anonymous.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Access:
    tls_verify: bool = True
    cert_dir: Path | None = None
    creds: str | None = None  # "USER:PASSWORD"; None for anonymous

    def flags(self, side: str = "") -> list[str]:
        """The flags for one side of a copy ("src" or "dest"), or for inspect ("")."""
        prefix = f"--{side}-" if side else "--"
        out = [f"{prefix}tls-verify={'true' if self.tls_verify else 'false'}"]
        if self.cert_dir is not None:
            out.append(f"{prefix}cert-dir={self.cert_dir}")
        out.append(f"{prefix}creds={self.creds}" if self.creds else f"{prefix}no-creds")
        return out


PLAIN = Access(tls_verify=False)  # the plain HTTP registry (and the fault proxy in front of it)


@dataclass(frozen=True)
class Result:
    status: int
    stdout: str
    stderr: str


def run(*args: str | Path, check: bool = True, timeout: float = 120) -> Result:
    """`skopeo ARGS`; with `check`, a failure is an AssertionError that shows skopeo's stderr."""
    proc = subprocess.run(
        ["skopeo", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"skopeo {args} exited {proc.returncode}:\n{proc.stderr}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def copy(
    source: str,
    dest: str,
    *,
    src: Access | None = None,
    dst: Access | None = None,
    all_images: bool = False,
    format: str | None = None,  # skopeo's --format: "oci" or "v2s2"
    check: bool = True,
) -> Result:
    """`skopeo copy SOURCE DEST`: `src`/`dst` say how to reach a docker:// side.

    A source or dest is any skopeo transport: `oci:DIR:TAG`, `oci-archive:FILE`,
    `docker-archive:FILE`, `docker://ADDRESS/REPO:TAG`.
    """
    args: list[str | Path] = ["copy", "-q"]
    if src is not None:
        args += src.flags("src")
    if dst is not None:
        args += dst.flags("dest")
    if all_images:
        args.append("--all")
    if format is not None:
        args += ["--format", format]
    return run(*args, source, dest, check=check)


def inspect(
    ref: str, access: Access | None = None, *, raw: bool = False, config: bool = False
) -> Any:
    """`skopeo inspect` as JSON: the summary (Digest, Layers, …), or with `raw` the manifest
    as stored, or with `config` the image config."""
    args: list[str | Path] = ["inspect", *(access.flags() if access else [])]
    if raw:
        args.append("--raw")
    if config:
        args.append("--config")
    return json.loads(run(*args, ref).stdout)


def push(source: str, address: str, repository: str, access: Access, **kwargs: Any) -> str:
    """Copy `source` to `docker://ADDRESS/REPOSITORY` and return that reference."""
    dest = f"docker://{address}/{repository}"
    copy(source, dest, dst=access, **kwargs)
    return dest
