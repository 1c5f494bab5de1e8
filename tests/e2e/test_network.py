"""Through the CLI: the network modes of `build` (and RUN --network) and `run`, --add-host,
`run -p`, and no slirp4netns left behind, even when the CLI is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import RunFailed, SandboxError, UsageError
from builder.sandbox.hosts import host_address
from tests.e2e.support import Builder, make_context
from tests.sandbox.test_network import GREETING, tcp_server


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


def _helpers(marker: str) -> list[int]:
    """The slirp4netns processes (zombies too) started by a CLI run with MARKER in its
    environment, which they inherit."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            comm = Path(f"/proc/{name}/comm").read_text().strip()
            if comm != "slirp4netns":
                continue
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if f"H8NET_MARKER={marker}".encode() in environ.split(b"\0") or not environ:
            found.append(int(name))  # (a zombie's environ reads empty: count it)
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """A tag for the CLI's environment; the test fails if a helper of that CLI outlives it."""
    mark = uuid.uuid4().hex
    yield mark
    deadline = time.monotonic() + 5
    while _helpers(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _helpers(mark) == [], "a slirp4netns was left behind"


def _cli(builder: Builder, marker: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "builder", "--root", str(builder.root), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "H8NET_MARKER": marker},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_network_modes(builder: Builder, marker: str) -> None:
    env = {"H8NET_MARKER": marker}
    for flags, expected in (
        ((), ["eth0", "lo"]),  # docker's default, the bridge: a private network
        (("--network", "bridge"), ["eth0", "lo"]),
        (("--network", "default"), ["eth0", "lo"]),
        (("--network", "none"), ["lo"]),
        (("--network", "host"), sorted(os.listdir("/sys/class/net"))),
    ):
        out = builder("run", "--rm", *flags, "busybox", "ls", "/sys/class/net", env=env).stdout
        assert sorted(out.split()) == expected, flags


def test_build_network_modes_per_build_and_per_run(
    builder: Builder, tmp_path: Path, marker: str
) -> None:
    recipe = (
        "FROM busybox\n"
        "RUN ls /sys/class/net > /default\n"
        "RUN --network=none ls /sys/class/net > /none\n"
        "RUN --network=host ls /sys/class/net > /host\n"
        "RUN --network=default ls /sys/class/net > /again\n"
    )
    context = make_context(tmp_path, recipe)
    env = {"H8NET_MARKER": marker}
    host = " ".join(sorted(os.listdir("/sys/class/net")))
    for build_flag, default in (("default", "eth0 lo"), ("none", "lo"), ("host", host)):
        tag = f"modes-{build_flag}"
        flags = ("--network", build_flag, "--allow", "network.host", "-t", tag)
        builder("build", *flags, context, env=env)
        show = "for f in default none host again; do echo $(cat /$f); done"
        out = builder("run", "--rm", tag, "sh", "-c", show).stdout.splitlines()
        assert out == [default, "lo", host, default], build_flag


def test_a_run_step_cannot_reach_the_hosts_loopback(
    builder: Builder, tmp_path: Path, marker: str
) -> None:
    with tcp_server("127.0.0.1") as (port, served):
        # Through the gateway (the helper's way to the host) and the host's own address.
        probe = f"nc -w 3 10.0.2.2 {port}; nc -w 3 {host_address()} {port}; true"
        context = make_context(tmp_path, f"FROM busybox\nRUN ({probe}) > /got\n")
        builder("build", "-t", "probe", context, env={"H8NET_MARKER": marker})
        got = builder("run", "--rm", "--network", "none", "probe", "cat", "/got").stdout
        assert got == "" and served == [], got
        # The control: the same probe on the host's network does reach it.
        host = make_context(tmp_path / "host", f"FROM busybox\nRUN nc -w 3 127.0.0.1 {port}\n")
        out = builder("build", "--network", "host", "--progress", "plain", host).stderr
        assert GREETING in out and served == ["127.0.0.1"], out


def test_add_host_on_build_and_run(builder: Builder, tmp_path: Path, marker: str) -> None:
    env = {"H8NET_MARKER": marker}
    context = make_context(tmp_path, "FROM busybox\nRUN grep db /etc/hosts > /seen\n")
    builder("build", "--add-host", "db:192.0.2.10", "-t", "hosts", context, env=env)
    assert builder("run", "--rm", "hosts", "cat", "/seen").stdout == "192.0.2.10\tdb\n"
    # Another address is another step (BuildKit keys a step by its extra hosts too).
    builder("build", "--add-host", "db:192.0.2.12", "-t", "hosts", context, env=env)
    assert builder("run", "--rm", "hosts", "cat", "/seen").stdout == "192.0.2.12\tdb\n"
    out = builder(
        "run", "--rm", "--add-host", "db=192.0.2.11", "--add-host", "gw:host-gateway",
        "busybox", "cat", "/etc/hosts", env=env,
    ).stdout  # fmt: skip
    assert "192.0.2.11\tdb" in out.splitlines(), out
    assert f"{host_address()}\tgw" in out.splitlines(), out
    for bad in ("nocolon", "db:not-an-ip", ":192.0.2.1"):
        result = builder("run", "--rm", "--add-host", bad, "busybox", "true", check=False)
        assert result.status == RunFailed.exit_code, result.stderr  # docker run's 125
        result = builder("build", "--add-host", bad, context, check=False)
        assert result.status == UsageError.exit_code, result.stderr
        assert f"--add-host {bad}" in _error_line(result.stderr)


def test_publish_reaches_a_server_in_the_container(builder: Builder, marker: str) -> None:
    port, loopback_port = _free_port(), _free_port()
    server = _cli(
        builder, marker,
        "run", "--rm", "-p", f"{port}:80", "-p", f"127.0.0.1:{loopback_port}:81/tcp", "busybox",
        "sh", "-c", "echo one | nc -l -p 80 & echo two | nc -l -p 81; wait",
    )  # fmt: skip
    try:
        assert _read_from(port) == "one\n"
        assert _read_from(loopback_port) == "two\n"
        _, err = server.communicate(timeout=30)
        assert server.returncode == 0, err
    finally:
        server.kill()
        server.communicate()


def _read_from(port: int, timeout: float = 20) -> str:
    """Connect until the container's server answers: the CLI needs a moment to publish
    the port, and the server to listen (until then, slirp4netns accepts and closes)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                data = conn.makefile().read()
        except ConnectionRefusedError:  # the CLI has not published it yet
            data = ""
        if data or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def test_publish_a_port_in_use_is_one_error(builder: Builder, marker: str) -> None:
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        result = builder(
            "run", "--rm", "-p", f"{port}:80", "busybox", "true",
            check=False, env={"H8NET_MARKER": marker},
        )  # fmt: skip
    assert result.status == 125, result.stderr  # docker run's "could not start"
    line = _error_line(result.stderr)
    assert f"-p 0.0.0.0:{port}:80/tcp" in line and "in use" in line, line
    assert list((builder.root / "containers").iterdir()) == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("-p", "80"), "HOSTPORT:CTRPORT"),
        (("-p", "8080:80/sctp"), "unknown protocol"),
        (("-p", "99999:80"), "not a port number"),
        (("-p", "::1:8080:80"), "HOSTPORT:CTRPORT"),
        (("--network", "none", "-p", "8080:80"), "bridge network"),
    ],
)
def test_bad_publish_flags(builder: Builder, flags: tuple[str, ...], message: str) -> None:
    result = builder("run", "--rm", *flags, "busybox", "true", check=False)
    assert result.status == RunFailed.exit_code, result.stderr  # docker run's 125
    assert message in _error_line(result.stderr)


@pytest.mark.parametrize("verb", ["run", "build"])
def test_no_helper_outlives_a_killed_cli(
    builder: Builder, tmp_path: Path, marker: str, verb: str
) -> None:
    if verb == "run":
        cli = _cli(builder, marker, "run", "--rm", "busybox", "sleep", "60")
    else:
        context = make_context(tmp_path, "FROM busybox\nRUN sleep 60\n")
        cli = _cli(builder, marker, "build", str(context))
    try:
        deadline = time.monotonic() + 30
        while not _helpers(marker):
            assert cli.poll() is None and time.monotonic() < deadline, cli.communicate()
            time.sleep(0.05)
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
    finally:
        cli.kill()
        cli.communicate()
    # The marker fixture waits for the helper to go, and fails if it does not.


def test_dns_through_the_helpers_forwarder(builder: Builder, marker: str) -> None:
    # What a host with systemd-resolved ends up using: slirp4netns' forwarder, which asks
    # the host's own resolver.
    host = _apt_host()
    out = builder(
        "run", "--rm", "busybox", "nslookup", host, "10.0.2.3", env={"H8NET_MARKER": marker}
    ).stdout
    assert f"Name:\t{host}" in out, out


def test_a_loopback_resolver_becomes_the_forwarder(
    builder: Builder, tmp_path: Path, marker: str
) -> None:
    # The host's resolv.conf as systemd-resolved writes it, in a mount namespace of the
    # CLI's own: the host's file is never touched.
    fake = tmp_path / "resolv.conf"
    fake.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n")
    cli = f"{sys.executable} -m builder --root {builder.root} run --rm busybox cat /etc/resolv.conf"
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind {fake} /etc/resolv.conf && {cli}"],
        capture_output=True,
        text=True,
        env={**os.environ, "H8NET_MARKER": marker},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "nameserver 10.0.2.3\noptions edns0 trust-ad\nsearch example.org\n"


def _apt_host() -> str:
    from tests.e2e.test_network_debian import apt_mirror

    return apt_mirror()[0].split("/")[2]


@pytest.mark.parametrize("verb", ["run", "build"])
def test_a_missing_helper_is_one_error_naming_the_package(
    builder: Builder, tmp_path: Path, verb: str
) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN true\n")
    args = ("run", "--rm", "busybox", "true") if verb == "run" else ("build", str(context))
    result = builder(*args, check=False, env={"PATH": str(tmp_path / "empty")})
    # docker run's 125; a build's sandbox failure is SandboxError's
    assert result.status == (125 if verb == "run" else SandboxError.exit_code), result.stderr
    line = _error_line(result.stderr)
    assert "slirp4netns" in line and "install the Debian package slirp4netns" in line, line
    for part in ("containers", "tmp"):
        where = builder.root / part
        assert not where.exists() or list(where.iterdir()) == [], part
