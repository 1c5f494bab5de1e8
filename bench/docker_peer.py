"""Docker as a live peer of `make bench`: Debian's docker.io 20.10, its built-in BuildKit,
a warm daemon, as ../shared/bench/README.md measured it.

../shared/bench/docker-peer.sh starts a dockerd of the bench's own (its socket, its data
root, no bridge, no iptables; it installs docker.io when dockerd is missing). Images come
from our own store, never from Docker Hub: `builder save --format docker | docker load`
gives the busybox base the workloads' `FROM $BASE` names. Builds run with `--network none`,
a cold one after `docker builder prune -af` and `docker image rm`.

`DockerPeer.start()` returns None, printing why, when docker cannot be had: the bench then
goes on without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "bench"
SCRIPT = SHARED / "docker-peer.sh"
SOCKET = "unix:///run/bench-docker.sock"
DOCKER = "/usr/bin/docker"  # Debian's client: /usr/local/bin may hold another one


class DockerPeer:
    def __init__(self, started: bool) -> None:
        self._started = started  # stop the daemon at the end only if we started it
        self.env = {**os.environ, "DOCKER_HOST": SOCKET, "DOCKER_BUILDKIT": "1"}

    @classmethod
    def start(cls) -> DockerPeer | None:
        if not SCRIPT.exists():
            print(f"docker peer skipped: {SCRIPT} is missing")
            return None
        if os.geteuid() != 0:
            print("docker peer skipped: dockerd needs root")
            return None
        was_running = _script("status").startswith("running")
        started = _script("start")
        if not Path(DOCKER).exists() or not shutil.which("dockerd"):
            print(f"docker peer skipped: docker.io could not be installed ({started.strip()})")
            return None
        peer = cls(started=not was_running)
        if subprocess.run([DOCKER, "version"], env=peer.env, capture_output=True).returncode:
            print(f"docker peer skipped: dockerd did not start ({started.strip()})")
            return None
        return peer

    def stop(self) -> None:
        if self._started:
            _script("stop")

    def docker(self, *args: str | Path, check: bool = True) -> float:
        """Run the docker client; its wall time in seconds."""
        start = time.perf_counter()
        done = subprocess.run(
            [DOCKER, *map(str, args)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - start
        if check and done.returncode != 0:
            raise SystemExit(f"docker {' '.join(map(str, args))} failed:\n{done.stderr}")
        return elapsed

    def load(self, save: Sequence[str]) -> None:
        """`docker load` what the `save` command (ours, --format docker) writes."""
        saver = subprocess.Popen(save, stdout=subprocess.PIPE)
        loaded = subprocess.run(
            [DOCKER, "load", "-q"], stdin=saver.stdout, env=self.env, capture_output=True
        )
        if saver.wait() != 0 or loaded.returncode != 0:
            raise SystemExit(f"docker load failed: {loaded.stderr.decode(errors='replace')}")

    def clear(self, tag: str) -> None:
        """What a cold build must not find: the build cache and the previous image."""
        self.docker("builder", "prune", "-af")
        self.docker("image", "rm", "-f", tag, check=False)

    def build(self, recipe: Path, context: Path, tag: str, base: str) -> float:
        os.sync()  # as bench/run.py does for ours: no cell pays for another's writeback
        return self.docker(
            "build",
            "-q",
            "--network",
            "none",
            "-f",
            recipe,
            "--build-arg",
            f"BASE={base}",
            "-t",
            tag,
            context,
        )

    def run_true_argv(self, image: str) -> list[str]:
        """`docker run` of /bin/true (the bench's daemon has no bridge: --network none),
        for a caller that times it (with `self.env`)."""
        return [DOCKER, "run", "--rm", "--network", "none", image, "/bin/true"]


def _script(verb: str) -> str:
    done = subprocess.run(["bash", str(SCRIPT), verb], capture_output=True, text=True)
    return done.stdout + done.stderr
