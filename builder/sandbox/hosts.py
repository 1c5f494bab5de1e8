"""The container's name resolution files: /etc/hosts (with `--add-host` entries) and, on
the private network, /etc/resolv.conf made from the host's.

Pure text in, text out, except `host_address` (the host's own address, for `host-gateway`).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from typing import Final

from builder.errors import SandboxError, UsageError
from builder.record import dataclass

# docker's special value for --add-host: the address at which the container reaches the host.
HOST_GATEWAY: Final = "host-gateway"


@dataclass(frozen=True)
class HostEntry:
    """One `--add-host NAME:IP` line of /etc/hosts; `address` may be HOST_GATEWAY."""

    name: str
    address: str

    @classmethod
    def parse(cls, text: str) -> HostEntry:
        """docker's formats: NAME:IP and NAME=IP; an IPv6 address may be in brackets."""
        sep = "=" if "=" in text else ":"
        name, found, address = text.partition(sep)
        address = address.strip()
        if address.startswith("[") and address.endswith("]"):
            address = address[1:-1]
        if not found or not name or not address:
            raise UsageError(f"--add-host {text}: expected NAME:IP (or NAME:host-gateway)")
        if any(c.isspace() or c in "#\0" for c in name):
            raise UsageError(f"--add-host {text}: bad host name {name!r}")
        if address != HOST_GATEWAY:
            try:
                address = str(ipaddress.ip_address(address))
            except ValueError:
                raise UsageError(f"--add-host {text}: {address!r} is not an IP address") from None
        return cls(name, address)


def hosts_file(
    hostname: str, extra: tuple[HostEntry, ...], gateway: Callable[[], str] | None = None
) -> str:
    """/etc/hosts as docker writes it: localhost, the hostname, then the --add-host lines.
    `gateway()` (default: host_address) replaces HOST_GATEWAY, asked only if need be."""
    lines = [f"127.0.0.1\tlocalhost {hostname}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for entry in extra:
        address = entry.address
        if address == HOST_GATEWAY:
            address = (gateway or host_address)()
        lines.append(f"{address}\t{entry.name}")
    return "\n".join(lines) + "\n"


def host_address() -> str:
    """The host's address on its default route: what `host-gateway` means here. The
    private network's own gateway (slirp4netns' 10.0.2.2) leads to the host's loopback,
    which that network keeps shut; this address reaches what the host serves on its
    interfaces (0.0.0.0), as docker's bridge gateway does, and not what is on 127.0.0.1."""
    import socket  # only --add-host NAME:host-gateway: `run`'s start-up does not import it

    # A UDP connect sends nothing: it only asks the kernel for the route's source address.
    for family, probe in ((socket.AF_INET, "8.8.8.8"), (socket.AF_INET6, "2001:4860:4860::8888")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            address = str(s.getsockname()[0])
            if not ipaddress.ip_address(address).is_loopback:
                return address
    raise SandboxError(f"--add-host ...:{HOST_GATEWAY}: the host has no address on a default route")


def resolv_conf(host_text: str, forwarder: str) -> str:
    """The host's resolv.conf for a container on the private network: loopback resolvers
    (systemd-resolved's 127.0.0.53, dnsmasq's 127.0.0.1, ::1) are unreachable from it and
    become the network helper's DNS forwarder; IPv6 resolvers go (the network has no IPv6
    route), as docker drops them without IPv6. Other lines (search, options) stay."""
    out: list[str] = []
    servers: list[str] = []
    for line in host_text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            out.append(line)
            continue
        try:
            ip = ipaddress.ip_address(words[1].partition("%")[0])
        except ValueError:
            continue  # a line the resolver would skip too
        server = forwarder if ip.is_loopback else words[1]
        if (ip.version == 4 or ip.is_loopback) and server not in servers:
            servers.append(server)
            out.append(f"nameserver {server}")
    if not servers:
        out.append(f"nameserver {forwarder}")
    return "\n".join(out) + "\n"
