"""What the end-to-end tests share: paths, the CLI runner, the busybox rootfs maker."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def busybox_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "busybox_rootfs", REPO / "scripts" / "busybox_rootfs.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


@dataclass
class Builder:
    """The real CLI, run as a subprocess against one store."""

    root: Path

    def __call__(
        self,
        *args: str | Path,
        check: bool = True,
        timeout: float = 300,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,  # added to (or overriding) our environment
    ) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "builder", "--root", str(self.root), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **env} if env is not None else None,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"builder {args} exited {proc.returncode}:\n{proc.stderr}")
        return result


def make_context(tmp_path: Path, recipe: str | None, files: dict[str, str] | None = None) -> Path:
    """A build context dir with a Dockerfile (unless recipe is None) and the given files."""
    context = tmp_path / "ctx"
    context.mkdir(parents=True)
    if recipe is not None:
        (context / "Dockerfile").write_text(recipe)
    for name, content in (files or {}).items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(content)
    return context
