"""Verbs that talk to registries: pull, push, login, logout; and the puller a build uses."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from builder.cli.common import open_store
from builder.errors import UsageError

if TYPE_CHECKING:
    from builder.cli.progress import Renderer
    from builder.image.image import Image
    from builder.registry.pull import PendingImage
    from builder.store import Store


def progress_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--progress and -q, as `build` spells them."""
    function = click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")(function)
    return click.option(
        "--progress",
        type=click.Choice(["auto", "plain", "tty", "json", "quiet"]),
        default="auto",
        show_default=True,
        help="How to show progress (on stderr).",
    )(function)


def _renderer(progress: str, quiet: bool) -> Renderer:
    from builder.cli.progress import renderer

    return renderer("quiet" if quiet else progress)


class RegistryPuller:
    """What a build calls for an image it must get from a registry: whole (`__call__`), or
    its manifest and config only (`resolve`, when an imported cache may spare its layers).
    The registry client is imported only when one is asked for: a build whose bases are in
    the store never loads it."""

    def __init__(self, store: Store, report: Renderer) -> None:
        self._store = store
        self._report = report

    def __call__(self, name: str) -> Image:
        """Pull it: a transfer, as `skopeo copy` is. Its layers are unpacked on first use
        (the build's first step on it, a first run): unpacking a 200 MB layer made
        `builder pull` 2x skopeo's time (make bench), and a pull made to mirror or push an
        image never needs them."""
        from builder.registry.pull import pull

        return pull(self._store, name, report=self._report)

    def resolve(self, name: str) -> PendingImage:
        from builder.registry.pull import resolve

        return resolve(self._store, name, report=self._report)


def puller(store: Store, report: Renderer) -> RegistryPuller:
    return RegistryPuller(store, report)


def push_image(store: Store, name: str, target: str | None, report: Renderer) -> str:
    from builder.registry.push import push

    return str(push(store, name, target, report=report))


@click.command()
@click.argument("name")
@progress_options
@click.pass_context
def pull(ctx: click.Context, name: str, progress: str, quiet: bool) -> None:
    """Pull NAME (busybox, ghcr.io/org/app:1.2, name@sha256:...) into the store; print its
    manifest digest. The registry's mirrors from the config file are tried first."""
    store = open_store(ctx)
    image = puller(store, _renderer(progress, quiet))(name)
    click.echo(str(image.digest))


@click.command()
@click.argument("name")
@click.argument("ref", required=False)
@progress_options
@click.pass_context
def push(ctx: click.Context, name: str, ref: str | None, progress: str, quiet: bool) -> None:
    """Push the image NAME to its registry, or under REF; print the manifest digest."""
    digest = push_image(open_store(ctx), name, ref, _renderer(progress, quiet))
    click.echo(digest)


@click.command()
@click.argument("registry")
@click.option("-u", "--username", help="The user name (asked for on a terminal if not given).")
@click.option("-p", "--password", help="The password (visible to other users: prefer stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def login(registry: str, username: str | None, password: str | None, password_stdin: bool) -> None:
    """Log in to REGISTRY: check the credentials there, then keep them in docker's
    config.json (or its credential helper)."""
    from builder.registry.credentials import Credentials, store_credentials
    from builder.registry.login import registry_host, verify_login

    host = registry_host(registry)
    if password is not None and password_stdin:
        raise UsageError("--password and --password-stdin exclude each other")
    if password_stdin:
        if not username:
            raise UsageError("--password-stdin needs -u USER")
        password = sys.stdin.read().rstrip("\r\n")
    elif password is not None:
        click.echo(
            "warning: a password on the command line is visible to other users;"
            " use --password-stdin",
            err=True,
        )
    interactive = sys.stdin.isatty()
    if username is None:
        if not interactive:
            raise UsageError("no user name: pass -u USER")
        username = click.prompt("Username")
    if password is None:
        if not interactive:
            raise UsageError("no password: pass --password-stdin (or -p)")
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise UsageError("the user name and the password must not be empty")
    credentials = Credentials(username, password)
    verify_login(host, credentials)
    where = store_credentials(host, credentials)
    click.echo(f"Login Succeeded (credentials for {host} kept in {where})")


@click.command()
@click.argument("registry")
def logout(registry: str) -> None:
    """Forget the credentials kept for REGISTRY."""
    from builder.registry.credentials import erase_credentials
    from builder.registry.login import registry_host

    host = registry_host(registry)
    if erase_credentials(host):
        click.echo(f"Removed the credentials for {host}")
    else:
        click.echo(f"Not logged in to {host}")
