"""RUN: the process the executor is asked for, and the layer made of its upper dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.engine.executor import Mount, Process
from builder.errors import RecipeError
from builder.store import Store
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import files_of, image, layer_entries, make_context, run_build

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _process(
    store: Store,
    fake: FakeExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recipe: str,
    **options: object,
) -> Process:
    fake.on("go", Effect())
    fake.on(("go",), Effect())
    context = make_context(tmp_path / "ctx", recipe, {"src/f": "data"})
    run_build(store, context, fake, monkeypatch, **options)
    (process,) = fake.runs
    return process


def test_shell_form_runs_in_the_shell_with_the_default_path(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _process(store, fake, tmp_path, monkeypatch, "FROM scratch\nRUN go\n")
    # docker build's default network: a private one with outbound access
    assert p == Process(("/bin/sh", "-c", "go"), (DEFAULT_PATH,), "/", "", "private")


def test_exec_form_is_the_argv_itself(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _process(store, fake, tmp_path, monkeypatch, 'FROM scratch\nRUN ["go"]\n')
    assert p.argv == ("go",)


def test_shell_env_args_user_workdir_and_network_reach_the_process(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = (
        "FROM scratch\n"
        'SHELL ["/bin/bash", "-e", "-c"]\n'
        "ENV PATH=/opt/bin KEEP=1\n"
        "ARG VERSION=1.0\n"
        "USER 1000:50\n"
        "WORKDIR /srv\n"
        "RUN --network=host go\n"
    )
    fake.on("go", Effect())
    context = make_context(tmp_path / "ctx", recipe)
    run_build(
        store,
        context,
        fake,
        monkeypatch,
        build_args={"VERSION": "2.0"},
        allow=frozenset({"network.host"}),
    )
    (p,) = fake.runs
    assert p.argv == ("/bin/bash", "-e", "-c", "go")
    assert p.env == ("PATH=/opt/bin", "KEEP=1", "VERSION=2.0")  # an image PATH: no default
    assert (p.cwd, p.user, p.network) == ("/srv", "1000:50", "host")


def test_the_builds_network_is_the_default(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _process(store, fake, tmp_path, monkeypatch, "FROM scratch\nRUN go\n", network="host")
    assert p.network == "host"


def test_heredoc_script(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("echo one\necho two\n", Effect())
    context = make_context(tmp_path / "ctx", "FROM scratch\nRUN <<EOF\necho one\necho two\nEOF\n")
    run_build(store, context, fake, monkeypatch)
    assert fake.runs[0].argv == ("/bin/sh", "-c", "echo one\necho two\n")


def test_the_upper_dir_becomes_the_layer_with_whiteouts_for_deletions(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("make", Effect(files={"/etc/a": "a"}, dirs=("/var/x",)))
    fake.on("clean", Effect(delete=("/etc/a",), symlinks={"/link": "/etc"}))
    context = make_context(tmp_path / "ctx", "FROM scratch\nRUN make\nRUN clean\n")
    built = run_build(store, context, fake, monkeypatch)
    config, layers = image(store, built)
    made, cleaned = (layer_entries(store, layer) for layer in layers)
    assert made["etc/a"].data == b"a" and made["var/x"].info.isdir()
    assert set(cleaned) == {"etc", "etc/.wh.a", "link"}
    assert cleaned["link"].info.issym() and cleaned["link"].info.linkname == "/etc"
    assert [h.created_by for h in config.history] == [
        "RUN /bin/sh -c make # buildkit",
        "RUN /bin/sh -c clean # buildkit",
    ]
    assert len(config.diff_ids) == 2


def test_a_run_that_changes_nothing_still_makes_a_layer(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("true", Effect())
    context = make_context(tmp_path / "ctx", "FROM scratch\nRUN true\n")
    config, layers = image(store, run_build(store, context, fake, monkeypatch))
    assert len(layers) == 1 and files_of(store, layers[0]) == {}
    assert config.history[-1].empty_layer is False


def test_mounts_are_prepared_for_the_executor_and_cleaned_after(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret")
    seen: dict[str, bytes] = {}

    class Peeking(FakeExecutor):
        def run(self, root, process, output):  # type: ignore[no-untyped-def]
            for m in process.mounts:
                if m.source is not None and m.source.is_file():
                    seen[m.target] = m.source.read_bytes()
                elif m.target == "/src":
                    seen[m.target] = (m.source / "f").read_bytes()
            return super().run(root, process, output)

    peeking = Peeking({"go": Effect()})
    recipe = (
        "FROM scratch\n"
        "RUN --mount=type=bind,source=src,target=/src"
        " --mount=type=cache,target=/root/.cache"
        " --mount=type=tmpfs,target=/tmp"
        " --mount=type=secret,id=token go\n"
    )
    context = make_context(tmp_path / "ctx", recipe, {"src/f": "data"})
    run_build(store, context, peeking, monkeypatch, secrets={"token": secret})
    (p,) = peeking.runs
    kinds = [(m.target, m.kind, m.readonly) for m in p.mounts]
    assert kinds == [
        ("/src", "bind", True),
        ("/root/.cache", "bind", False),
        ("/tmp", "tmpfs", False),
        ("/run/secrets/token", "bind", True),
    ]
    assert seen == {"/src": b"data", "/run/secrets/token": b"s3cret"}
    cache = next(m.source for m in p.mounts if m.target == "/root/.cache")
    assert cache is not None and cache.is_dir() and store.root in cache.parents
    # The staged bind copy and the secret's copy are gone; the cache dir is kept.
    staged = [m.source for m in p.mounts if m.target in ("/src", "/run/secrets/token")]
    assert all(s is not None and not s.exists() for s in staged)
    assert Mount("/tmp", "tmpfs", None, readonly=False) in p.mounts


def test_a_bind_mounts_content_is_in_the_key_a_cache_mount_is_not(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("go", Effect())
    recipe = "FROM scratch\nRUN --mount=source=src,target=/src --mount=type=cache,target=/c go\n"
    context = make_context(tmp_path / "ctx", recipe, {"src/f": "one"})
    first = run_build(store, context, fake, monkeypatch)
    (context / "src" / "f").write_text("two")
    second = run_build(store, context, fake, monkeypatch)
    assert second.keys != first.keys and second.cached == [True, False]


def test_a_bad_mount_is_a_recipe_error_at_its_line(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nRUN --mount=type=nfs,target=/x go\n")
    with pytest.raises(RecipeError, match="type=nfs") as caught:
        run_build(store, context, fake, monkeypatch)
    assert caught.value.location is not None and caught.value.location.line == 2
    assert fake.runs == []
