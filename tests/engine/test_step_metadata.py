"""The instructions that change only the image config (and ARG, which changes the scope):
no layer, no work for the executor, a history entry marked empty_layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.engine.events import BuildWarning
from builder.errors import RecipeError
from builder.image.config import DEFAULT_PATH, ContainerConfig, Healthcheck, ImageConfig
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
    # BuildKit's `CMD %q` of the argv (Go quoting, space-separated)
    assert config.history[-1].created_by == 'CMD ["/bin/sh" "-c" "echo $HOME"]'
    assert cc.args_escaped and config.to_json()["config"]["ArgsEscaped"] is True
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, 'CMD ["run", "x\\ty"]\n')
    assert cc.cmd == ("run", "x\ty") and cc.args_escaped  # exec form too
    assert config.history[-1].created_by == 'CMD ["run" "x\\ty"]'
    cc, _, _ = _build(store, fake, tmp_path, monkeypatch, 'SHELL ["/bin/ash", "-c"]\nCMD go\n')
    assert cc.shell == ("/bin/ash", "-c") and cc.cmd == ("/bin/ash", "-c", "go")
    assert cc.args_escaped  # any SHELL


def test_args_escaped_is_for_cmd_only(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BuildKit sets ArgsEscaped in dispatchCmd only; ENTRYPOINT (any form) leaves it."""
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, "ENTRYPOINT tini --\n")
    assert not cc.args_escaped and "ArgsEscaped" not in config.to_json()["config"]


def test_shell_changes_how_run_runs(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("go", Effect())
    _, config, _ = _build(store, fake, tmp_path, monkeypatch, 'SHELL ["/bin/ash", "-eo"]\nRUN go\n')
    assert fake.runs[0].argv == ("/bin/ash", "-eo", "go")
    assert config.history[0].created_by == "SHELL [/bin/ash -eo]"  # Go's %v


def test_entrypoint_drops_an_inherited_cmd_but_not_one_set_in_the_stage(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str
) -> None:
    cc, _, _ = _build(store, fake, tmp_path, monkeypatch, 'ENTRYPOINT ["tini"]\n', base)
    assert cc.entrypoint == ("tini",) and cc.cmd is None
    body = 'CMD ["serve"]\nENTRYPOINT tini --\n'
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, body, base)
    assert cc.entrypoint == ("/bin/sh", "-c", "tini --") and cc.cmd == ("serve",)
    assert config.history[-1].created_by == 'ENTRYPOINT ["/bin/sh" "-c" "tini --"]'


def test_expose_volume_stopsignal(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = (
        "ARG PORT=8080\nEXPOSE 80 $PORT/tcp 53/UDP 9000-9001\nEXPOSE 80\n"
        'VOLUME ["/data"]\nVOLUME /cache /data\n'
        "STOPSIGNAL SIGQUIT\n"
    )
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, body)
    # a JSON map: sorted; a range is every port of it, the protocol lower case
    assert cc.exposed_ports == ("53/udp", "80/tcp", "8080/tcp", "9000/tcp", "9001/tcp")
    assert cc.volumes == ("/cache", "/data")
    assert cc.stop_signal == "SIGQUIT"
    # BuildKit sorts EXPOSE's words as written (before expansion), then prints `%v`.
    assert [h.created_by for h in config.history] == [
        "ARG PORT=8080",
        "EXPOSE [8080/tcp 53/udp 80/tcp 9000/tcp 9001/tcp]",
        "EXPOSE [80/tcp]",
        "VOLUME [/data]",
        "VOLUME [/cache /data]",
        "STOPSIGNAL SIGQUIT",
    ]


def test_healthcheck_durations_in_nanoseconds(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "HEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD curl -f http://x\n"
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, body)
    assert config.history[-1].created_by == (  # Go's %+v of the HealthcheckConfig
        "HEALTHCHECK {Test:[CMD-SHELL curl -f http://x] Interval:30s Timeout:1m30s"
        " StartPeriod:0s StartInterval:0s Retries:3}"
    )
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
    assert cc.env == (f"PATH={DEFAULT_PATH}",)  # scratch's own, no ARG
    assert [h.created_by for h in config.history] == [
        "ARG A=default",
        "ARG B=given",
        "RUN |2 A=default B=given /bin/sh -c go # buildkit",
    ]
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
    assert first.keys[0] == second.keys[0]  # ARG itself changes no key
    assert first.keys[1] != second.keys[1] and second.cached == [True, True, False]


def test_onbuild_is_recorded_and_runs_in_the_child_build(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("make", Effect(files={"/made": "m"}))
    cc, config, _ = _build(
        store, fake, tmp_path, monkeypatch, "ONBUILD RUN make\nONBUILD ENV X=1\n"
    )
    assert cc.on_build == ("RUN make", "ENV X=1") and fake.runs == []
    assert [h.created_by for h in config.history] == []  # BuildKit: ONBUILD has no history
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


def test_arg_history_and_the_run_line_prefix_as_buildkit_writes_them(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BuildKit's testExportedHistoryFlattenArgs: one entry per ARG, and the RUN line
    `|N` with each arg once, at its first place, with its last value."""
    fake.on("ls /etc/", Effect())
    body = "ARG foo=bar\nARG bar=123\nARG foo=bar2\nARG none\nENV bar=env\nRUN ls /etc/\n"
    _, config, _ = _build(store, fake, tmp_path, monkeypatch, body)
    assert [(h.created_by, h.empty_layer) for h in config.history] == [
        ("ARG foo=bar", True),
        ("ARG bar=123", True),
        ("ARG foo=bar2", True),
        ("ARG none", True),
        ("ENV bar=env", True),
        ("RUN |3 foo=bar2 bar=env none= /bin/sh -c ls /etc/ # buildkit", False),
    ]


def test_an_arg_default_is_not_expanded_when_a_build_arg_gives_the_value(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("go", Effect())
    body = "ARG A=${UNSET:?needs_a_value} B=$A\nRUN go\n"
    _, config, _ = _build(store, fake, tmp_path, monkeypatch, body, build_args={"A": "1"})
    assert fake.runs[0].env[-2:] == ("A=1", "B=1")  # B's default sees A
    assert config.history[0].created_by == "ARG A=1 B=1"
    with pytest.raises(RecipeError, match="needs_a_value"):
        _build(store, fake, tmp_path, monkeypatch, body)


def test_targetstage_is_seen_once_declared(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("one", Effect())
    fake.on("two", Effect())
    body = "RUN one\nARG TARGETSTAGE\nRUN two\n"
    _build(store, fake, tmp_path, monkeypatch, body)
    assert not any(e.startswith("TARGETSTAGE=") for e in fake.runs[0].env)
    assert "TARGETSTAGE=default" in fake.runs[1].env


def test_proxy_build_args_reach_run_but_not_its_key_the_config_or_history(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("go", Effect())
    _, _, plain = _build(store, fake, tmp_path, monkeypatch, "RUN go\n")
    proxies = {"http_proxy": "http://p:3128", "NO_PROXY": "local"}
    cc, config, built = _build(
        store, fake, tmp_path, monkeypatch, "RUN go\n", no_cache=True, build_args=proxies
    )
    env = fake.runs[-1].env
    # BuildKit's ProxyEnv: each one in both spellings
    for entry in ("HTTP_PROXY=http://p:3128", "http_proxy=http://p:3128", "NO_PROXY=local"):
        assert entry in env
    assert "no_proxy=local" in env
    assert built.keys == plain.keys  # a proxy change does not rebuild
    assert not any("proxy" in e.lower() for e in cc.env)
    assert config.history[-1].created_by == "RUN /bin/sh -c go # buildkit"
    assert [e.message for e in built.events if isinstance(e, BuildWarning)] == []


def test_scratch_has_the_default_path_and_workdir(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cc, config, _ = _build(store, fake, tmp_path, monkeypatch, "")
    assert cc.env == (f"PATH={DEFAULT_PATH}",) and cc.working_dir == "/"
    assert config.to_json()["config"] == {"Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"}
