"""The grammar ships inside the wheel, and the installed package parses with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GRAMMAR = REPO / "grammar" / "recipe.lark"


# What a build of the copy needs; the rest (venvs, caches, old build output) is left behind.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def _build_wheel(outdir: Path, workdir: Path) -> Path:
    """The wheel, built from a copy of the tree so that the checkout gets no `build/` or
    `*.egg-info` (a stale `build/lib` could ship a deleted module in a later wheel)."""
    source = workdir / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=_NOT_SOURCE)
    base = [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(source)]
    done = subprocess.run(base, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:  # offline: build with what the venv has
        fallback = [*base, "--no-isolation", "--skip-dependency-check"]
        done = subprocess.run(fallback, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = outdir.glob("builder-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    before = _build_output_in_checkout()
    built = _build_wheel(tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("copy"))
    assert _build_output_in_checkout() == before  # nothing written into the checkout
    return built


def _build_output_in_checkout() -> set[str]:
    return {
        p.name for p in REPO.iterdir() if p.name in ("build", "dist") or p.suffix == ".egg-info"
    }


def test_grammar_is_a_real_file_in_the_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("builder/recipe/recipe.lark")
        # A symlink would be stored with the S_IFLNK mode bits; it must be a regular file.
        assert (info.external_attr >> 16) & 0o170000 in (0, 0o100000)
        assert zf.read(info) == GRAMMAR.read_bytes()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (without its dependencies: offline)."""
    env_dir = tmp_path_factory.mktemp("installed") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip"]
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        timeout=300,
    )
    return env_dir


def test_installed_wheel_parses(installed: Path, tmp_path: Path) -> None:
    env_dir = installed
    python = env_dir / "bin" / "python"
    script = (
        "import builder.recipe.syntax as s, builder.recipe.dump as d\n"
        "print(s.__file__)\n"
        "print(d.dump(s.parse_syntax('FROM a\\nRUN <<EOF\\nx\\nEOF\\n')), end='')\n"
    )
    # lark comes from the project's venv; the package itself only from the fresh one.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    done = subprocess.run(
        [str(python), "-I", "-c", f"import sys; sys.path.append({env['PYTHONPATH']!r})\n{script}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    location, *dumped = done.stdout.splitlines()
    assert location.startswith(str(env_dir))
    assert dumped == ['(from "a")', '(run "<<EOF")']


def test_the_seccomp_profile_ships_in_the_wheel(wheel: Path) -> None:
    # Every RUN loads it: a wheel without it could confine nothing.
    profile = REPO / "builder" / "sandbox" / "seccomp_default.json"
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("builder/sandbox/seccomp_default.json") == profile.read_bytes()


def test_the_installed_command_imports_only_the_thin_client(installed: Path) -> None:
    """bin/builder is a script file, not an entry point: the wrapper pip writes for an entry
    point imports `re` (~13 ms, issue 9) before the client's first line."""
    command = installed / "bin" / "builder"
    assert command.read_text().splitlines()[0] == f"#!{installed / 'bin' / 'python'}"
    # An invalid opt-in ends the client before it imports anything of the CLI (exit 2), so
    # the command runs without the wheel's dependencies; -X importtime lists every import.
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "BUILDER_SERVER": "bogus"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(command)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "builder.cli.client" in imported
    assert not imported & {"re", "enum", "functools", "click", "builder.cli.main"}, imported
