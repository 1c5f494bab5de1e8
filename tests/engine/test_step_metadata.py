"""The instructions that change only the image config (and ARG, which changes the scope):
no layer, no work for the executor, a history entry marked empty_layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.engine.events import BuildWarning
from builder.image.config import ContainerConfig, Healthcheck, ImageConfig
from builder.store import Store
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import Built, add_image, image, make_context, run_build


def _build(
    store: Store,
    fake: FakeExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    base: str = "scratch",
    **options: object,
) -> tuple[ContainerConfig, ImageConfig, Built]:
    context = make_context(tmp_path / "ctx", f"FROM {base}\n{body}")
    built = run_build(store, context, fake, monkeypatch, **options)
    config, layers = image(store, built)
    assert len(layers) == len(config.diff_ids)
    return config.config, config, built


@pytest.fixture
def base(store: Store) -> str:
    """An image with an ENV PATH and a CMD (see support.add_image)."""
    add_image(store, "base", {"bin/": None})
    return "base"


def test_env_sets_in_order_expands_and_keeps_the_bases(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str
) -> None:
    body = "ENV A=1 B=two\nENV C=${A}-$B PATH=/opt:$PATH\n"
    cc, config, built = _build(store, fake, tmp_path, monkeypatch, body, base)
    assert cc.env == ("PATH=/opt:/usr/bin:/bin", "A=1", "B=two", "C=1-two")
    assert [(h.created_by, h.empty_layer) for h in config.history[1:]] == [
        ("ENV A=1 B=two", True),
        ("ENV C=1-two PATH=/opt:/usr/bin:/bin", True),
    ]
    assert fake.runs == [] and fake.calls == [] and all(built.cached)


def test_env_reaches_a_later_run(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("go", Effect())
    _build(store, fake, tmp_path, monkeypatch, "ENV MODE=fast\nRUN go\n")
    assert "MODE=fast" in fake.runs[0].env


def test_label_merges_with_the_bases_labels(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = 'ARG V=3\nLABEL a=1 "b c"=2\nLABEL a=$V\n'
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, body)
    assert dict(cc.labels) == {"a": "3", "b c": "2"}
    assert config.history[-1].created_by == "LABEL a=3"


def test_user(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, "ARG WHO=app\nUSER $WHO:staff\n")
    assert cc.user == "app:staff" and config.history[-1].created_by == "USER app:staff"


def test_cmd_shell_and_exec_forms_and_the_shell_they_use(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, "CMD echo $HOME\n")
    assert cc.cmd == ("/bin/sh", "-c", "echo $HOME")  # not expanded: the shell does it
    assert config.history[-1].created_by == 'CMD ["/bin/sh","-c","echo $HOME"]'
    cc, _, _ = _build(store, fake, tmp_path, monkeypatch, 'CMD ["run", "x"]\n')
    assert cc.cmd == ("run", "x")
    cc, _, _ = _build(store, fake, tmp_path, monkeypatch, 'SHELL ["/bin/ash", "-c"]\nCMD go\n')
    assert cc.shell == ("/bin/ash", "-c") and cc.cmd == ("/bin/ash", "-c", "go")


def test_shell_changes_how_run_runs(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("go", Effect())
    _, config, _ = _build(store, fake, tmp_path, monkeypatch, 'SHELL ["/bin/ash", "-eo"]\nRUN go\n')
    assert fake.runs[0].argv == ("/bin/ash", "-eo", "go")
    assert config.history[0].created_by == 'SHELL ["/bin/ash","-eo"]'


def test_entrypoint_drops_an_inherited_cmd_but_not_one_set_in_the_stage(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str
) -> None:
    cc, _, _ = _build(store, fake, tmp_path, monkeypatch, 'ENTRYPOINT ["tini"]\n', base)
    assert cc.entrypoint == ("tini",) and cc.cmd is None
    body = 'CMD ["serve"]\nENTRYPOINT tini --\n'
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, body, base)
    assert cc.entrypoint == ("/bin/sh", "-c", "tini --") and cc.cmd == ("serve",)
    assert config.history[-1].created_by == 'ENTRYPOINT ["/bin/sh","-c","tini --"]'


def test_expose_volume_stopsignal(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = (
        "ARG PORT=8080\nEXPOSE 80 $PORT/tcp 53/udp\nEXPOSE 80\n"
        'VOLUME ["/data"]\nVOLUME /cache /data\n'
        "STOPSIGNAL SIGQUIT\n"
    )
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, body)
    assert cc.exposed_ports == ("53/udp", "80/tcp", "8080/tcp")  # a JSON map: sorted
    assert cc.volumes == ("/cache", "/data")
    assert cc.stop_signal == "SIGQUIT"
    assert [h.created_by for h in config.history] == [
        "EXPOSE map[80/tcp:{} 8080/tcp:{} 53/udp:{}]",
        "EXPOSE map[80/tcp:{}]",
        'VOLUME ["/data"]',
        'VOLUME ["/cache","/data"]',
        "STOPSIGNAL SIGQUIT",
    ]


def test_healthcheck_durations_in_nanoseconds(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "HEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD curl -f http://x\n"
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, body)
    assert config.history[-1].created_by == 'HEALTHCHECK ["CMD-SHELL","curl -f http://x"]'
    assert cc.healthcheck == Healthcheck(
        test=("CMD-SHELL", "curl -f http://x"),
        interval=30_000_000_000,
        timeout=90_000_000_000,
        retries=3,
    )
    cc, _, _ = _build(store, fake, tmp_path, monkeypatch, "HEALTHCHECK NONE\n")
    assert cc.healthcheck == Healthcheck(test=("NONE",))


def test_arg_is_in_runs_env_but_not_in_the_image(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("go", Effect())
    body = "ARG A=default\nARG B\nRUN go\n"
    cc, config, built = _build(
        store, fake, tmp_path, monkeypatch, body, build_args={"B": "given", "NOPE": "x"}
    )
    assert fake.runs[0].env[1:] == ("A=default", "B=given")
    assert cc.env == ()
    assert [h.created_by for h in config.history] == ["RUN /bin/sh -c go # buildkit"]  # no ARG
    warnings = [e.message for e in built.events if isinstance(e, BuildWarning)]
    assert warnings == ["build args not consumed by any ARG: NOPE"]


def test_arg_values_are_in_runs_key(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("go", Effect())
    _, _, first = _build(store, fake, tmp_path, monkeypatch, "ARG A\nRUN go\n")
    _, _, second = _build(
        store, fake, tmp_path, monkeypatch, "ARG A\nRUN go\n", build_args={"A": "1"}
    )
    assert first.keys[0] == second.keys[0]  # ARG itself changes nothing
    assert first.keys[1] != second.keys[1] and second.cached == [True, True, False]


def test_onbuild_is_recorded_and_runs_in_the_child_build(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("make", Effect(files={"/made": "m"}))
    cc, _, _ = _build(store, fake, tmp_path, monkeypatch, "ONBUILD RUN make\nONBUILD ENV X=1\n")
    assert cc.on_build == ("RUN make", "ENV X=1") and fake.runs == []
    store.layout.tag("parent", store.layout.resolve("built"))
    cc, config, built = _build(store, fake, tmp_path, monkeypatch, "", "parent")
    assert [p.argv[-1] for p in fake.runs] == ["make"]
    assert cc.on_build == () and "X=1" in cc.env
    assert built.step_texts[1:] == ["ONBUILD RUN make", "ONBUILD ENV X=1"]
    assert len(config.diff_ids) == 1


def test_maintainer_sets_the_author(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, config, _ = _build(store, fake, tmp_path, monkeypatch, "MAINTAINER Jo <jo@x>\n")
    assert config.author == "Jo <jo@x>"


def test_config_only_steps_are_cached_as_the_step_before_them(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("go", Effect())
    _, _, built = _build(store, fake, tmp_path, monkeypatch, "ENV A=1\nRUN go\nENV B=2\n")
    assert built.cached == [True, True, False, False]
