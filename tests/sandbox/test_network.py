"""The private network (docker's default): a namespace of its own with outbound access
through slirp4netns, DNS from the host's resolv.conf, --add-host lines, no way to the host's
127.0.0.1, and no helper process left once the sandbox is done."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import DEVNULL, OverlayRoot, SandboxSpec, run, slirp
from builder.sandbox.hosts import HostEntry, host_address, resolv_conf
from builder.sandbox.publish import PortMapping
from builder.sandbox.slirp import DNS_FORWARDER
from builder.sandbox.spec import ProcessStartError

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]
GREETING = "hello from the host"


@contextmanager
def tcp_server(address: str) -> Iterator[tuple[int, list[str]]]:
    """A TCP server on ADDRESS (an ephemeral port) that greets each client; yields the
    port and the list of the peers it served."""
    listener = socket.create_server((address, 0))
    port = listener.getsockname()[1]
    served: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            with conn:
                served.append(peer[0])
                conn.sendall(f"{GREETING}\n".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, served
    finally:
        stop.set()
        thread.join()
        listener.close()


def slirp_children() -> list[int]:
    """Our children that run slirp4netns (zombies too: an unreaped one is a leak)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if comm == "slirp4netns" and ppid == os.getpid():
            found.append(int(name))
    return found


@pytest.fixture
def private(overlay: Callable[..., OverlayRoot]) -> Iterator[SandboxSpec]:
    yield SandboxSpec(overlay(), (), network="private")
    assert slirp_children() == [], "a slirp4netns was left behind"


def test_private_network_has_an_interface_and_reaches_the_host(
    private: SandboxSpec, sh: ShRunner
) -> None:
    host = host_address()
    with tcp_server("0.0.0.0") as (port, served):
        status, out, err = sh(
            private, f"ls /sys/class/net; ip -4 -o addr show eth0; nc -w 5 {host} {port}"
        )
    assert status == 0, err
    names, addr, greeting = out.splitlines()[:2], out.splitlines()[2], out.splitlines()[-1]
    assert names == ["eth0", "lo"], out
    assert "10.0.2.100/24" in addr, out
    assert greeting == GREETING and len(served) == 1, (out, err)


def test_private_network_cannot_reach_the_hosts_loopback(
    private: SandboxSpec, sh: ShRunner
) -> None:
    # slirp4netns' gateway 10.0.2.2 leads to the host's 127.0.0.1 unless told not to; the
    # host's own address does not reach a listener bound to 127.0.0.1 either.
    host = host_address()
    with tcp_server("127.0.0.1") as (port, served):
        status, out, err = sh(
            private,
            f"nc -w 3 10.0.2.2 {port}; echo gateway=$?; nc -w 3 {host} {port}; echo host=$?",
        )
    assert status == 0, err
    assert GREETING not in out and served == [], (out, err)
    assert "gateway=1" in out and "host=1" in out, (out, err)


def test_private_resolv_conf_is_the_hosts_without_loopback(
    private: SandboxSpec, sh: ShRunner
) -> None:
    status, out, err = sh(private, "cat /etc/resolv.conf")
    assert status == 0, err
    try:
        host_text = Path("/etc/resolv.conf").read_text()
    except FileNotFoundError:
        host_text = ""
    assert out == resolv_conf(host_text, DNS_FORWARDER)
    assert "nameserver 127." not in out and "nameserver ::1" not in out


@pytest.mark.parametrize(
    ("host_text", "expected"),
    [
        # systemd-resolved's stub: the forwarder takes its place; search/options stay.
        (
            "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.com\n",
            "nameserver 10.0.2.3\noptions edns0 trust-ad\nsearch example.com\n",
        ),
        # A reachable resolver is kept; loopback ones become one forwarder line.
        (
            "nameserver 127.0.0.1\nnameserver 192.0.2.53\nnameserver ::1\n",
            "nameserver 10.0.2.3\nnameserver 192.0.2.53\n",
        ),
        # IPv6 resolvers: no IPv6 route in the namespace; nothing left: the forwarder.
        ("nameserver 2001:db8::53\n", "nameserver 10.0.2.3\n"),
        ("", "nameserver 10.0.2.3\n"),
    ],
)
def test_resolv_conf_rewrite(host_text: str, expected: str) -> None:
    assert resolv_conf(host_text, "10.0.2.3") == expected


def test_add_host_lines_reach_etc_hosts(private: SandboxSpec, sh: ShRunner) -> None:
    spec = replace(
        private,
        extra_hosts=(
            HostEntry.parse("db:192.0.2.10"),
            HostEntry.parse("v6=[2001:db8::1]"),
            HostEntry.parse("gw:host-gateway"),
        ),
    )
    status, out, err = sh(spec, "cat /etc/hosts")
    assert status == 0, err
    lines = out.splitlines()
    assert "192.0.2.10\tdb" in lines and "2001:db8::1\tv6" in lines, out
    assert f"{host_address()}\tgw" in lines, out


def test_none_and_host_networks_start_no_helper(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    for network in ("none", "host"):
        spec = SandboxSpec(overlay(), (), network=network)  # type: ignore[arg-type]
        status, out, err = sh(spec, "ls /sys/class/net")
        assert status == 0, err
        expected = ["lo"] if network == "none" else sorted(os.listdir("/sys/class/net"))
        assert sorted(out.split()) == expected
        assert slirp_children() == []


def test_a_missing_helper_names_the_package(
    private: SandboxSpec, sh: ShRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no slirp4netns on it
    with pytest.raises(SandboxError, match=r"install the Debian package slirp4netns"):
        sh(private, "true")


def test_the_helper_goes_when_the_step_fails(private: SandboxSpec, sh: ShRunner) -> None:
    status, _, _ = sh(private, "exit 3")
    assert status == 3  # and the fixture finds no slirp4netns of ours


def test_a_start_error_before_the_network_is_up_is_the_error(
    private: SandboxSpec, sh: ShRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pid 1 fails (an unknown user) and the sandbox ends before the caller opens the gate
    (a slow helper start, as under load): the user's error, not the gate's broken pipe."""
    start = slirp.Slirp.start

    def late(executable: str, target_pid: int, api_socket: str | None = None) -> slirp.Slirp:
        helper = start(executable, target_pid, api_socket)
        os.waitid(os.P_PID, target_pid, os.WEXITED | os.WNOWAIT)  # the supervisor has ended
        return helper

    monkeypatch.setattr(slirp.Slirp, "start", staticmethod(late))
    with pytest.raises(ProcessStartError, match="nosuchuser"):
        sh(replace(private, user="nosuchuser"), "true")


# A UDP echo of one datagram, in Python: the host's root (read-only, under an overlay) has
# it, busybox's nc has no UDP.
UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
data, peer = s.recvfrom(100)
s.sendto(data.upper(), peer)
"""


def test_a_published_udp_port_reaches_the_container(tmp_path: Path) -> None:
    # From the host's own address: a client on the host's 127.0.0.1 would reach the
    # container, but slirp4netns sends its answer to the gateway 10.0.2.2, which
    # --disable-host-loopback drops (TCP is unaffected: its answers use the connection).
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]
    spec = SandboxSpec(
        OverlayRoot((Path("/"),), upper, work),
        (sys.executable, "-c", UDP_ECHO),
        network="private",
        ports=(PortMapping(port, 5353, "udp"),),
        stdin=DEVNULL,
    )
    status: list[int] = []
    container = threading.Thread(target=lambda: status.append(run(spec)))
    container.start()
    reply = b""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(0.2)
        deadline = time.monotonic() + 30
        while not reply and container.is_alive() and time.monotonic() < deadline:
            client.sendto(b"ping", (host_address(), port))
            with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                reply = client.recv(100)
    container.join(timeout=30)
    assert reply == b"PING" and status == [0], (reply, status)
    assert slirp_children() == []


def test_a_port_in_use_fails_the_run_and_leaves_nothing(private: SandboxSpec, sh: ShRunner) -> None:
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        spec = replace(private, ports=(PortMapping(port, 80),))
        with pytest.raises(SandboxError, match=rf"-p 0.0.0.0:{port}:80/tcp: .*in use"):
            sh(spec, "touch /ran")
    # The command never ran, and the supervisor took its mount stubs (files) back out of
    # the upper dir (it is not killed: pid 1 ends at its shut gate). The copied-up /etc
    # stays, as after any run (the layer writer prunes it).
    assert isinstance(private.root, OverlayRoot)
    assert [p for p in private.root.upper.rglob("*") if not p.is_dir()] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080:80", PortMapping(8080, 80, "tcp", "0.0.0.0")),
        ("8080:80/tcp", PortMapping(8080, 80, "tcp", "0.0.0.0")),
        ("127.0.0.1:5353:53/udp", PortMapping(5353, 53, "udp", "127.0.0.1")),
    ],
)
def test_publish_formats(text: str, expected: PortMapping) -> None:
    assert PortMapping.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("db:192.0.2.10", HostEntry("db", "192.0.2.10")),
        ("db=192.0.2.10", HostEntry("db", "192.0.2.10")),
        ("v6:2001:db8::1", HostEntry("v6", "2001:db8::1")),  # docker splits at the first ':'
        ("v6=[2001:db8::1]", HostEntry("v6", "2001:db8::1")),
        ("gw:host-gateway", HostEntry("gw", "host-gateway")),
    ],
)
def test_add_host_formats(text: str, expected: HostEntry) -> None:
    assert HostEntry.parse(text) == expected


def test_a_build_does_not_wait_for_the_helpers_exit_and_settles_it(
    private: SandboxSpec, sh: ShRunner
) -> None:
    """Its exit takes 15-20 ms after the kill (the kernel unregisters its tap): a RUN step
    does not wait for it, and the build reaps it before it returns."""
    reapers: list[int] = []
    with slirp.reaping_into(reapers):
        status, _, _ = sh(private, "true")
    assert status == 0
    assert len(reapers) == 1  # killed, not waited for
    slirp.settle(reapers)
    assert reapers == []
    assert slirp_children() == []  # reaped, not even a zombie (the fixture checks again)
    status, _, _ = sh(private, "true")  # outside: reaped before run returns, as before
    assert status == 0 and slirp_children() == []


def test_the_sandbox_executor_reaps_every_helper_by_its_close(
    overlay: Callable[..., OverlayRoot], tmp_path: Path
) -> None:
    from builder.engine.executor import Process, SandboxExecutor

    executor = SandboxExecutor()
    process = Process(argv=("/bin/true",), env=(), cwd="/", user="", network="private")
    for _ in range(3):
        time.sleep(0.5)  # the previous helper has exited by now: this RUN reaps it
        with open(tmp_path / "out", "w") as out:
            assert executor.run(overlay(), process, out.fileno()) == 0
    assert len(executor._reapers) == 1  # only the last one's: no zombies pile up
    executor.close()
    assert executor._reapers == [] and slirp_children() == []
