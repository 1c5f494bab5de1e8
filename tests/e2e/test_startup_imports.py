"""Start-up: what the short commands import, pinned (issue 9, "the cached path imports
almost nothing"). Each command runs through the real CLI in a fresh interpreter, and the
test names the modules that must not have been imported: a module that sneaks back onto
one of these paths costs every cached build, run or push its import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from builder.engine.context import RACY_NS
from tests.e2e.support import REPO, Builder, make_context

# Heavy, and used by none of these commands: the parser, compression, progress bars, the
# standard dataclass decorator (builder.record replaces it), and the writers of what a
# plain build does not write.
NEVER = (
    "lark",
    "tqdm",
    "zstandard",
    "dataclasses",
    "builder.recipe.syntax",
    "builder.store.cache_sync",
    "builder.store.archive",
    "builder.store.export",
)


def _imported(builder: Builder, *args: str | Path) -> set[str]:
    """The modules imported by `builder ARGS` run in a fresh interpreter (it must succeed)."""
    probe = f"""
import sys
from builder.cli.main import main
try:
    main(["--root", {str(builder.root)!r}, *{[str(a) for a in args]!r}])
except SystemExit as done:
    assert done.code == 0, done.code
print(" ".join(sorted(sys.modules)))
"""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return set(done.stdout.splitlines()[-1].split())


def test_a_cached_build_imports_only_what_it_uses(builder: Builder, tmp_path: Path) -> None:
    recipe = 'FROM busybox\nRUN echo hi > /hi\nENV A=b\nWORKDIR /app\nCOPY f /app/f\nCMD ["sh"]\n'
    context = make_context(tmp_path, recipe, {"f": "x"})
    # A file changed within RACY_NS of a walk is hashed again by the next build, which then
    # writes its context memo (and imports tempfile): let the new files age past that first.
    time.sleep(RACY_NS / 1e9 + 0.1)
    builder("build", "-t", "cached", context)
    modules = _imported(builder, "build", "-q", "-t", "cached", context)
    assert "builder.engine.engine" in modules  # the probe saw the build
    unwanted = (
        *NEVER,
        "urllib3",
        "ssl",
        "tempfile",  # nothing is written: the blobs and the tag are there already
        "concurrent.futures",
        "importlib.resources",
        "csv",
        "secrets",
        "builder.registry.client",
        "builder.engine.steps.copy_from",  # no COPY --from, no RUN --mount from=
        "builder.engine.stagecopy",
    )
    assert sorted(modules & set(unwanted)) == []


def test_run_imports_no_build_or_registry_machinery(builder: Builder) -> None:
    modules = _imported(builder, "run", "--rm", "--network", "none", "busybox", "/bin/true")
    assert "builder.runtime" in modules
    unwanted = {m for m in modules if m.startswith(("builder.recipe", "builder.engine"))}
    unwanted |= {m for m in modules if m.startswith(("builder.registry", "urllib3"))}
    unwanted |= modules & {*NEVER, "ssl", "concurrent.futures"}
    # Nor what only other paths use: tempfile (and its shutil, random, bz2, lzma) for the
    # store's scratch dirs, secrets for the container's id and name, socket and the
    # network helper for the private network, subprocess for helpers run has none of.
    unwanted |= modules & {"tempfile", "shutil", "random", "bz2", "lzma", "secrets", "socket"}
    unwanted |= modules & {"subprocess", "builder.sandbox.slirp", "builder.sandbox.publish"}
    assert sorted(unwanted) == []


def test_a_warm_servers_run_imports_nothing(builder: Builder) -> None:
    """The server's forked child (cli/zygote) runs `run --rm` with what the server
    preloaded: a module, or a codec, imported there is read from disk on every call."""
    probe = f"""
import gc, os, sys
from builder.cli import server
server.preload()
gc.collect()
gc.freeze()
from builder.cli.main import main
before = set(sys.modules)
pid = os.fork()
if pid == 0:
    try:
        main(["--root", {str(builder.root)!r}, "run", "--rm", "--network", "none",
              "busybox", "/bin/true"])
    except SystemExit as done:
        assert not done.code, done.code
    print(" ".join(sorted(set(sys.modules) - before)) or "-", flush=True)
    os._exit(0)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
"""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["-"]


def test_push_imports_no_build_machinery(builder: Builder, registry: str) -> None:
    modules = _imported(builder, "push", "-q", "busybox", f"{registry}/startup/busybox:1")
    assert "urllib3" in modules  # the probe saw the push
    unwanted = {m for m in modules if m.startswith(("builder.recipe", "builder.runtime"))}
    unwanted |= {
        m for m in modules if m.startswith("builder.engine.") and m != "builder.engine.events"
    }
    unwanted |= modules & set(NEVER)
    assert sorted(unwanted) == []


def test_the_console_script_costs_nothing_without_the_server_opt_in() -> None:
    """The console script (builder.cli.client) decides whether a warm server takes the call
    before it imports anything: without the opt-in it adds three modules of its own (not
    even `typing` or builder.errors, which come with click and main) before today's main."""
    listing = "import sys; print(' '.join(sorted(sys.modules)))"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("BUILDER_SERVER", None)
    env["BUILDER_CONFIG"] = os.devnull  # an empty config file: no [cli] server

    def modules(code: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        return set(done.stdout.split())

    probe = "import builder.cli.client as c; assert not c._wanted(); " + listing
    assert sorted(modules(probe) - modules(listing)) == [
        "builder",
        "builder.cli",
        "builder.cli.client",
    ]
