"""Network namespaces for `--network none` made ahead (sandbox/netns): each sandbox still
gets one of its own, set up as the sandbox sets up the one it makes (lo up, low ports open
for the container's root), and the host's own namespace is never the one changed."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from builder.errors import SandboxError
from builder.sandbox import OverlayRoot, SandboxSpec
from builder.sandbox.netns import Spare, make_none

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="making a namespace needs root")


def _made_in_a_thread() -> int:
    made: list[int] = []
    thread = threading.Thread(target=lambda: made.append(make_none()))
    thread.start()
    thread.join()
    return made[0]


def test_a_sandbox_joins_the_namespace_made_ahead_set_up_as_its_own(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, host_knob: str
) -> None:
    fd = _made_in_a_thread()
    inode = os.fstat(fd).st_ino
    try:
        assert inode != os.stat("/proc/self/ns/net").st_ino
        script = "readlink /proc/self/ns/net; cat /proc/sys/net/ipv4/*port_start; ip -o link"
        status, out, err = sh(SandboxSpec(overlay(), (), network="none", netns=fd), script)
    finally:
        os.close(fd)
    assert status == 0, err
    netns, knob, *links = out.splitlines()
    assert netns == f"net:[{inode}]"  # the one made ahead
    assert knob == "0"  # the container's root may bind :80, as in the one the sandbox makes
    assert len(links) == 1 and "lo:" in links[0] and ",UP" in links[0]


def test_each_take_is_a_namespace_of_its_own(host_knob: str) -> None:
    spare = Spare()
    try:
        fds = [spare.take() for _ in range(3)]
        inodes = {os.fstat(fd).st_ino for fd in fds}
        assert len(inodes) == 3 and os.stat("/proc/self/ns/net").st_ino not in inodes
        for fd in fds:
            os.close(fd)
    finally:
        spare.close()
    spare.close()  # idempotent


def _netns_fds() -> list[str]:
    links = []
    for name in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:  # (the listing's own fd)
            continue
    return [link for link in links if link.startswith("net:[")]


def test_the_namespace_made_ahead_is_dropped_on_close() -> None:
    spare = Spare()
    os.close(spare.take())
    spare.begin()  # the next one is being made: close does not wait for it
    spare.close()
    deadline = time.monotonic() + 10
    while _netns_fds() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _netns_fds() == []
    time.sleep(0.2)  # (and its thread did not keep it once it was made)
    assert _netns_fds() == []


def test_making_one_in_the_callers_own_namespace_is_refused(
    monkeypatch: pytest.MonkeyPatch, host_knob: str
) -> None:
    """The second lock: if unshare made nothing (it cannot be made to, for real: it is
    skipped here), nothing is set up in the host's namespace (the set-up is recorded, not
    done, so that this test cannot change the host should the lock ever be lost)."""
    import builder.sandbox.netns as netns

    set_up: list[str] = []
    monkeypatch.setattr(netns, "unshare", lambda flags: None)
    monkeypatch.setattr(netns, "loopback_up", lambda: set_up.append("lo"))
    monkeypatch.setattr(netns, "open_low_ports", lambda: set_up.append("ports"))
    errors: list[BaseException] = []

    def make() -> None:
        try:
            os.close(make_none())
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    assert set_up == []
    assert len(errors) == 1 and isinstance(errors[0], SandboxError)
    assert "no network namespace of its own" in str(errors[0])


def test_a_spec_with_a_namespace_made_ahead_is_for_network_none(
    overlay: Callable[..., OverlayRoot],
) -> None:
    with pytest.raises(SandboxError, match="for network none only"):
        SandboxSpec(overlay(), ("true",), network="host", netns=3).validate()
