"""The network flags `build` and `run` share, with docker's names and formats."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from builder.sandbox.hosts import HostEntry
    from builder.sandbox.publish import PortMapping

add_host_option = click.option(
    "--add-host",
    "add_hosts",
    multiple=True,
    metavar="NAME:IP",
    help="Add a line to /etc/hosts (repeatable); IP may be host-gateway, the host's address.",
)


userns_option = click.option(
    "--userns",
    type=click.Choice(["host", "auto"]),
    default="host",
    show_default=True,
    help="host: container root is root (ids as the image has them); auto: an unprivileged host"
    " range of its own, leased from the user containers' ranges in /etc/subuid and"
    " /etc/subgid (podman's).",
)


def add_hosts(values: tuple[str, ...]) -> tuple[HostEntry, ...]:
    if not values:
        return ()
    from builder.sandbox.hosts import HostEntry

    return tuple(HostEntry.parse(v) for v in values)


def ports(values: tuple[str, ...]) -> tuple[PortMapping, ...]:
    if not values:
        return ()
    from builder.sandbox.publish import PortMapping

    return tuple(PortMapping.parse(v) for v in values)
