"""`builder import -c`: the instructions docker import --change accepts, applied as moby's
BuildFromConfig applies them."""

from __future__ import annotations

import pytest

from builder.engine.changes import apply_changes
from builder.errors import RecipeError, UsageError
from builder.image.config import ContainerConfig, Healthcheck


def test_every_valid_change() -> None:
    config = apply_changes(
        ContainerConfig(env=("A=0",)),
        [
            'CMD ["sh"]',
            "ENV A=1 B=$A",  # one ENV sees the values from before it, as docker
            "ENV C=$A",
            "WORKDIR app",
            "WORKDIR sub",
            "EXPOSE 80 53/UDP",
            "LABEL x=y",
            "VOLUME /data",
            "USER app",
            "ONBUILD RUN make",
            "STOPSIGNAL SIGINT",
            "HEALTHCHECK --interval=5s CMD true",
            "ENTRYPOINT tini --",
        ],
    )
    assert config == ContainerConfig(
        env=("A=1", "B=0", "C=1"),
        cmd=("sh",),  # set by a change before the ENTRYPOINT: kept
        entrypoint=("/bin/sh", "-c", "tini --"),
        working_dir="/app/sub",
        exposed_ports=("80/tcp", "53/udp"),
        labels={"x": "y"},
        volumes=("/data",),
        user="app",
        on_build=("RUN make",),
        stop_signal="SIGINT",
        healthcheck=Healthcheck(test=("CMD-SHELL", "true"), interval=5_000_000_000),
    )
    assert not config.args_escaped  # docker's classic builder sets it on Windows only


def test_entrypoint_drops_a_cmd_not_set_by_a_change() -> None:
    config = apply_changes(ContainerConfig(cmd=("old",)), ["ENTRYPOINT tini"])
    assert config.cmd is None and config.entrypoint == ("/bin/sh", "-c", "tini")


def test_no_change_is_the_config_itself() -> None:
    config = ContainerConfig(user="x")
    assert apply_changes(config, []) is config


@pytest.mark.parametrize("change", ["RUN make", "COPY a b", "FROM x", "ARG A", 'SHELL ["a"]'])
def test_instructions_docker_refuses(change: str) -> None:
    keyword = change.split()[0].lower()
    with pytest.raises(UsageError, match=f"^{keyword} is not a valid change command$"):
        apply_changes(ContainerConfig(), ["ENV A=1", change])


def test_a_change_that_does_not_parse() -> None:
    with pytest.raises(RecipeError):
        apply_changes(ContainerConfig(), ["ENV"])


def test_ports_and_signals_parsed_as_docker_does() -> None:
    # A range is every port in it; a port or signal docker cannot parse is refused.
    config = apply_changes(ContainerConfig(), ["EXPOSE 8000-8002/udp"])
    assert config.exposed_ports == ("8000/udp", "8001/udp", "8002/udp")
    with pytest.raises(RecipeError, match="invalid containerPort: notaport"):
        apply_changes(ContainerConfig(), ["EXPOSE notaport"])
    with pytest.raises(RecipeError, match="invalid signal: NOPE"):
        apply_changes(ContainerConfig(), ["STOPSIGNAL NOPE"])
