"""The container's root may listen on ports below 1024 in its private network namespace
(nginx on :80), as in Docker, through the per-namespace sysctl
net.ipv4.ip_unprivileged_port_start; the host's own value never changes. On the host's
network, Docker's CAP_NET_BIND_SERVICE does it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from builder.sandbox import OverlayRoot, SandboxSpec
from builder.sandbox.security import from_flags
from tests.sandbox.conftest import KNOB

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]

# Listen on :80 in the background, wait until /proc/net/tcp or tcp6 (the namespace's own;
# busybox listens on IPv6's any address, dual stack) shows it LISTENing (state 0A), stop it.
LISTEN_80 = """
busybox nc -l -p 80 >/dev/null 2>/tmp/nc.err </dev/null &
pid=$!
for i in $(seq 50); do
    if awk '$2 ~ /:0050$/ && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp*; then
        echo listening; break
    fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
kill $pid 2>/dev/null
cat /tmp/nc.err >&2
cat /proc/sys/net/ipv4/ip_unprivileged_port_start
"""


def test_root_binds_port_80_in_its_network_namespace(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, host_knob: str
) -> None:
    status, out, err = sh(SandboxSpec(overlay(), (), network="none"), LISTEN_80)
    assert status == 0, err
    assert out.split() == ["listening", "0"], (out, err)
    assert KNOB.read_text() == host_knob


def _free_low_port() -> int:
    """A port below 1024 nobody listens on (we are root: we may bind it to look)."""
    import socket

    for port in range(1023, 600, -1):
        with socket.socket(socket.AF_INET6) as s:
            try:
                s.bind(("::", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


@pytest.mark.parametrize("keep_cap", [True, False], ids=["default-caps", "no-bind-service"])
def test_root_binds_a_low_port_on_the_hosts_network_with_dockers_capability(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, host_knob: str, keep_cap: bool
) -> None:
    """On the host's network the kernel asks the host's user namespace for
    CAP_NET_BIND_SERVICE: pid 1 stays there with Docker's set, so the capability, not a
    sysctl, lets it bind (and dropping it, as --cap-drop does, takes that away)."""
    port = _free_low_port()
    security = from_flags(cap_drop=() if keep_cap else ("NET_BIND_SERVICE",))
    spec = SandboxSpec(overlay(), (), network="host", security=security)
    script = LISTEN_80.replace("-p 80", f"-p {port}").replace(":0050$", f":{port:04X}$")
    status, out, err = sh(spec, script)
    assert status == 0, err
    if keep_cap:
        assert out.split() == ["listening", host_knob.strip()], (out, err)
    else:
        assert out.split() == [host_knob.strip()], (out, err)
        assert "Permission denied" in err
    assert KNOB.read_text() == host_knob
