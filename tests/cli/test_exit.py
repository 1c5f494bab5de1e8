"""How the `builder` process ends (cli/main.py): the console script skips the interpreter's
teardown (os._exit) but first writes its buffered output; an in-process call still gets
SystemExit, and a process with a thread alive still exits normally (the thread is joined)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cli.main import main
from tests.e2e.support import REPO


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(REPO)
    env["BUILDER_ROOT"] = str(tmp_path / "store")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


def test_the_console_script_writes_its_buffered_output_and_status(tmp_path: Path) -> None:
    # stdout is a pipe: block-buffered, nothing is written until a flush.
    done = _python(
        "import sys; from builder.cli.main import main;"
        "print('x' * 100); sys.argv = ['builder', 'rm', 'no-such-container']; main()",
        tmp_path,
    )
    assert done.stdout == "x" * 100 + "\n"
    assert done.returncode == 1 and done.stderr.startswith("error: ")


def test_an_in_process_call_gets_system_exit(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--root", str(tmp_path / "store"), "--version"])
    assert done.value.code == 0


def test_a_live_thread_is_joined_before_the_process_ends(tmp_path: Path) -> None:
    marker = tmp_path / "joined"
    done = _python(
        "import sys, threading, time; from builder.cli.main import main;"
        f"threading.Thread(target=lambda: (time.sleep(0.5), open({str(marker)!r}, 'w'))).start();"
        "sys.argv = ['builder', '--version']; main()",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert marker.exists()
