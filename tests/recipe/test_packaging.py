"""The grammar ships inside the wheel, and the installed package parses with it."""

from __future__ import annotations

import os
import shutil
import signal
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
    `*.egg-info` (a stale `build/lib` could ship a deleted module in a later wheel); as pip
    builds one from PyPI, from the sdist (which `build` makes first, into `outdir` too)."""
    source = workdir / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=_NOT_SOURCE)
    base = [sys.executable, "-m", "build", "--outdir", str(outdir), str(source)]
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
    # Not the checkout on PYTHONPATH: with a `builder.egg-info` in it (an in-tree build),
    # pip would take it for an installed builder and install nothing.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        timeout=300,
        env=env,
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


def test_the_sdist_carries_the_native_clients_source_and_its_wheel_the_binary(
    wheel: Path,
) -> None:
    """The wheel above is built from the sdist: without the C source in the sdist
    (MANIFEST.in), it would be a pure wheel, and every call would start Python."""
    import tarfile

    (sdist,) = wheel.parent.glob("builder-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {name.partition("/")[2] for name in tf.getnames()}
    assert "builder/cli/native_client.c" in names
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    if shutil.which(sysconfig.get_config_var("CC") or "cc") is None:
        pytest.skip("no C compiler: the wheel is pure by design")
    assert "builder/cli/native_client" in names
    assert "builder/cli/native_client.c" not in names  # source in the sdist only


def test_the_installed_command_imports_only_the_thin_client(installed: Path) -> None:
    """bin/builder is a script file, not an entry point: the wrapper pip writes for an entry
    point imports `re` (~13 ms, issue 9) before the client's first line."""
    command = installed / "bin" / "builder"
    assert command.read_text().splitlines()[0] == "#!/bin/sh"  # see test_the_launcher_*
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
    # Nor site (the launcher's -S) and os (the client uses posix): ~5 ms on every call.
    unwanted = {"re", "enum", "functools", "click", "builder.cli.main", "site", "os"}
    assert not imported & unwanted, imported


# bin/builder, the launcher: a shell and Python polyglot that execs the interpreter beside
# it with -S (issue 9). A stand-in builder.cli.client, first on PYTHONPATH, shows what the
# launcher did: which interpreter, with or without site, in which process.
_STAND_IN = """
import os, signal, sys, time

def main(site_pending=False):
    how = sys.argv[1] if len(sys.argv) > 1 else ""
    if how == "exit":
        sys.exit(int(sys.argv[2]))
    if how == "sleep":
        print("ready", flush=True)
        time.sleep(60)
    print(os.getpid(), sys.executable, site_pending, "site" in sys.modules, flush=True)
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> dict[str, str]:
    """An environment whose PYTHONPATH holds a stand-in builder.cli.client."""
    package = tmp_path / "stand-in" / "builder" / "cli"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "client.py").write_text(_STAND_IN)
    return {**os.environ, "PYTHONPATH": str(package.parents[1])}


def _launch(command: Path | str, env: dict[str, str], *args: str) -> list[str]:
    proc = subprocess.Popen(
        [str(command), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    pid, executable, site_pending, site_loaded = out.split()
    assert int(pid) == proc.pid  # exec all the way: no shell left between
    return [executable, site_pending, site_loaded]


def test_the_launcher_runs_the_interpreter_beside_it_without_site(
    installed: Path, stand_in: dict[str, str]
) -> None:
    """PYTHONPATH is honoured (the stand-in, not the installed client, ran) and site was
    not (the client is told to complete it on its one-shot path)."""
    command = installed / "bin" / "builder"
    python3 = str(installed / "bin" / "python3")
    assert _launch(command, stand_in) == [python3, "True", "False"]


def test_the_launcher_through_a_link_finds_the_interpreter_beside_its_target(
    installed: Path, stand_in: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "builder"
    link.symlink_to(installed / "bin" / "builder")
    python3 = str(installed / "bin" / "python3")
    assert _launch(link, stand_in) == [python3, "True", "False"]


def test_the_launcher_without_an_interpreter_beside_it_runs_python3_on_path(
    installed: Path, stand_in: dict[str, str], tmp_path: Path
) -> None:
    """A copy elsewhere (a --user or system install): PATH's python3, with its site."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "path").mkdir()
    copy = tmp_path / "bin" / "builder"
    shutil.copy2(installed / "bin" / "builder", copy)
    (tmp_path / "path" / "python3").symlink_to(installed / "bin" / "python3")
    env = {**stand_in, "PATH": f"{tmp_path / 'path'}:/usr/bin:/bin"}
    python3 = str(tmp_path / "path" / "python3")
    assert _launch(copy, env) == [python3, "False", "True"]
    # No python3 anywhere: the shell's own "not found", and its status.
    env["PATH"] = str(tmp_path / "bin")
    done = subprocess.run([str(copy)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 127 and "python3" in done.stderr, done


def test_the_launcher_passes_exit_statuses_and_signals_through(
    installed: Path, stand_in: dict[str, str]
) -> None:
    command = str(installed / "bin" / "builder")
    done = subprocess.run([command, "exit", "3"], env=stand_in, timeout=60)
    assert done.returncode == 3
    proc = subprocess.Popen([command, "sleep"], stdout=subprocess.PIPE, text=True, env=stand_in)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)  # the interpreter itself: the shell exec'd it
    assert proc.wait(timeout=60) == -signal.SIGTERM
    proc.stdout.close()


def test_the_launchers_one_shot_path_completes_site(installed: Path, tmp_path: Path) -> None:
    """Without a server the client runs the whole CLI in-process, whose dependencies only
    site's setup finds: here through a .pth file naming the project's site-packages, as
    site processes them (the installed wheel has no dependencies of its own: offline)."""
    purelib = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = Path(purelib) / "test_dependencies.pth"
    deps.write_text(sysconfig.get_paths()["purelib"] + "\n")
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BUILDER_SERVER")}
        env["BUILDER_CONFIG"] = os.devnull
        done = subprocess.run(
            [str(installed / "bin" / "builder"), "--version"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        deps.unlink()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("builder, version ")
