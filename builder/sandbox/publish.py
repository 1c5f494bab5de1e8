"""A published port (`run -p`): docker's spelling parsed into a value the network helper
forwards from the host into the container's private network."""

from __future__ import annotations

import ipaddress
from typing import Literal

from builder.errors import UsageError
from builder.record import dataclass


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = "0.0.0.0"  # docker's default: every IPv4 address of the host

    @classmethod
    def parse(cls, text: str) -> PortMapping:
        """[IP:]HOSTPORT:CTRPORT[/tcp|/udp], as `docker run -p` writes it."""
        spec, _, proto = text.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise UsageError(f"-p {text}: unknown protocol {proto!r} (want tcp or udp)")
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise UsageError(
                f"-p {text}: expected [IP:]HOSTPORT:CTRPORT[/tcp|udp]"
                " (a random host port, a range or an IPv6 host address is not supported)"
            )
        ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        host, ctr = parts[-2:]
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise UsageError(f"-p {text}: {ip!r} is not an IPv4 address") from None
        protocol: Literal["tcp", "udp"] = "udp" if proto == "udp" else "tcp"
        return cls(_port(text, host), _port(text, ctr), protocol, ip)

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}:{self.container_port}/{self.protocol}"


def _port(text: str, value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise UsageError(f"-p {text}: {value!r} is not a port number (1-65535)")
    return int(value)
