"""A warm `builder server` for the benchmarks' "with the server" rows (issue 9).

    with warm_server() as env:  # the environment a timed CLI call needs to use it
        subprocess.run(argv, env=env)

The server runs in the foreground of this context, with a socket dir of its own, so the
rows measure a server that is already warm (as Gradle's daemon or dockerd would be), and
nothing is left running after the bench.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import installed  # bench/ is not a package: its scripts run with bench/ on sys.path


@contextlib.contextmanager
def warm_server() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="builder-server-") as folder:
        env = installed.environment(BUILDER_SERVER_DIR=folder, BUILDER_SERVER="auto")
        proc = subprocess.Popen(
            [str(installed.console_script()), "server", "--idle", "3600"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while not list(Path(folder).glob("*.sock")):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("builder server did not start")
                time.sleep(0.05)
            # The compiled client's alias (a second *.sock, a symlink) follows the socket at
            # once when the wheel carries that client: the first timed call must find it.
            venv = installed.console_script().parents[1]
            if any(venv.glob("lib/python3*/site-packages/builder/cli/native_client")):
                settle = time.monotonic() + 5
                while not any(p.is_symlink() for p in Path(folder).glob("*.sock")):
                    if time.monotonic() > settle:
                        print("bench: the server made no alias for the native client")
                        break
                    time.sleep(0.01)
            yield env
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
