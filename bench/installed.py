"""Ours as the issue's figures ran it: this checkout built as a wheel and installed into a
venv of its own, called through the console script users type (`builder`).

    argv = installed.command(store, "build", ...)   # [.../venv/bin/builder, --root, store, ...]
    subprocess.run(argv, env=installed.environment())

Why not `python -m builder` from the checkout: a development venv carries an editable-install
finder and distutils' precedence hook in `.pth` files that every interpreter start imports
(25–48 ms under load, measured in stop 15), and runpy adds its own imports; a user's wheel
install has neither. The venv is made once per source tree (keyed by a digest of the files
the wheel is built from) under the temp dir, and reused by every bench script of a run. Its
dependencies are the running interpreter's site-packages, named in a `.pth` file (no network,
the same versions the tests ran with): paths a `.pth` adds are not site dirs, so the dev
venv's own `.pth` hooks are not run.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("builder", "bin", "grammar", "pyproject.toml", "setup.py")


def _source_digest() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for name in SOURCES:
        top = REPO / name
        paths = sorted(top.rglob("*")) if top.is_dir() else [top]
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check", "-q")


def build_wheel(source: Path, wheels: Path, env: dict[str, str] | None = None) -> Path:
    """This tree's wheel as `pip wheel` builds it (with the native client when a C compiler
    is there), from a copy of the sources at `source`: setuptools builds in the source
    tree, and the `build/` and `builder.egg-info` it leaves in a checkout make pip take the
    checkout (on PYTHONPATH) for an installed builder (tests/recipe/test_packaging.py)."""
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True)
        else:
            shutil.copy2(REPO / name, source / name)
    shutil.copy2(REPO / "README.md", source / "README.md")  # pyproject.toml's readme
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source],
        check=True,
        env=env,
    )
    return next(wheels.glob("*.whl"))


@functools.cache
def console_script() -> Path:
    """The installed `builder` console script, installing it first if this tree's is not."""
    venv = Path(tempfile.gettempdir()) / f"builder-bench-venv-{_source_digest()}"
    script = venv / "bin" / "builder"
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # bench scripts run one after another, but be sure
        if (venv / "complete").exists():
            return script
        shutil.rmtree(venv, ignore_errors=True)
        wheel = build_wheel(venv / "source", venv / "wheels")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        python = venv / "bin" / "python"
        purelib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # --ignore-installed: a dev checkout's own install (editable, same version) must not
        # count as this one; the dependencies' .pth comes after, for the same reason.
        subprocess.run(
            [*PIP, "--python", python, "install", "--no-deps", "--ignore-installed", wheel],
            check=True,
        )
        deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
        (Path(purelib) / "bench_dependencies.pth").write_text("\n".join(deps) + "\n")
        subprocess.run([python, "-m", "compileall", "-q", purelib], check=True)
        if not script.exists():
            raise SystemExit(f"bench: installing {wheel.name} made no {script}")
        (venv / "complete").touch()
    return script


def command(root: Path | str, *args: str | Path) -> list[str]:
    return [str(console_script()), "--root", str(root), *map(str, args)]


def environment(**extra: str) -> dict[str, str]:
    """The caller's environment without PYTHONPATH (it would put a checkout before the
    installed wheel) and without PYTHONDONTWRITEBYTECODE, plus `extra`."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    }
    return {**env, **extra}
