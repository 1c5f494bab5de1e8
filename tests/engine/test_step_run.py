"""RUN: the process the executor is asked for, and the layer made of its upper dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.engine.executor import Mount, OverlayRoot, Process
from builder.errors import RecipeError
from builder.store import Store
from builder.store import layers as layers_module
from builder.store.cache import CacheRecord, StepRecord
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
    seen: dict[str, bytes] = {}

    class Peeking(FakeExecutor):
        def run(self, root, process, output):  # type: ignore[no-untyped-def]
            for m in process.mounts:
                if m.kind == "file" and m.data is not None:
                    seen[m.target] = m.data
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
    run_build(store, context, peeking, monkeypatch, secrets={"token": b"s3cret"})
    (p,) = peeking.runs
    kinds = [(m.target, m.kind, m.readonly) for m in p.mounts]
    assert kinds == [
        ("/src", "bind", True),
        ("/root/.cache", "bind", False),
        ("/tmp", "tmpfs", False),
        ("/run/secrets/token", "file", True),
    ]
    assert seen == {"/src": b"data", "/run/secrets/token": b"s3cret"}
    cache = next(m.source for m in p.mounts if m.target == "/root/.cache")
    assert cache is not None and cache.is_dir() and store.root in cache.parents
    # The staged bind copy is gone; the cache dir is kept; the secret was never a file.
    staged = next(m.source for m in p.mounts if m.target == "/src")
    assert staged is not None and not staged.exists()
    secret = next(m for m in p.mounts if m.target == "/run/secrets/token")
    assert secret.source is None and secret.mode == 0o400
    assert "s3cret" not in repr(secret)
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
    with pytest.raises(RecipeError, match='unsupported mount type "nfs"') as caught:
        run_build(store, context, fake, monkeypatch)
    assert caught.value.location is not None and caught.value.location.line == 2
    assert fake.runs == []


def test_a_heredoc_with_a_shebang_runs_as_a_file_from_dev_pipes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BuildKit: the body (never expanded) in a 0755 file mounted read-only at /dev/pipes,
    run as `/bin/sh -c /dev/pipes/NAME`; the body is in the key."""
    seen: list[tuple[str, int]] = []

    class Peeking(FakeExecutor):
        def run(self, root, process, output):  # type: ignore[no-untyped-def]
            for m in process.mounts:
                script = m.source / "EOF"
                seen.append((script.read_text(), script.stat().st_mode & 0o7777))
            return super().run(root, process, output)

    peeking = Peeking({"/dev/pipes/EOF": Effect()})
    recipe = "FROM scratch\nARG X=1\nRUN <<EOF\n#!/usr/bin/env python3\nprint('$X')\nEOF\n"
    context = make_context(tmp_path / "ctx", recipe)
    first = run_build(store, context, peeking, monkeypatch)
    (p,) = peeking.runs
    assert p.argv == ("/bin/sh", "-c", "/dev/pipes/EOF")
    assert [(m.target, m.kind, m.readonly) for m in p.mounts] == [("/dev/pipes", "bind", True)]
    assert seen == [("#!/usr/bin/env python3\nprint('$X')\n", 0o755)]
    assert p.mounts[0].source is not None and not p.mounts[0].source.exists()  # cleaned
    other = make_context(tmp_path / "other", recipe.replace("print", "exit"))
    second = run_build(store, other, peeking, monkeypatch)
    assert first.keys[-1] != second.keys[-1] and len(peeking.runs) == 2
    config, _ = image(store, first)
    assert config.history[-1].created_by == "RUN |1 X=1 /bin/sh -c /dev/pipes/EOF # buildkit"


def test_a_command_with_heredocs_is_joined_as_buildkit_joins_it(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line, then each raw body and terminator; no newline after the last (its argv
    and its history line are BuildKit's)."""
    script = "cat <<-A <<B > /f\n\tone\nA\ntwo\nB"
    fake.on(script, Effect())
    recipe = "FROM scratch\nRUN cat <<-A <<B > /f\n\tone\nA\ntwo\nB\n"
    built = run_build(store, make_context(tmp_path / "ctx", recipe), fake, monkeypatch)
    assert fake.runs[0].argv == ("/bin/sh", "-c", script)
    config, _ = image(store, built)
    assert config.history[-1].created_by == f"RUN /bin/sh -c {script} # buildkit"


def test_a_steps_record_is_written_after_its_layer_dir_is_synced(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's overlay is volatile (no sync at its unmount), so the cache record that a
    later build trusts comes only after a syncfs that began once the layer dir was in."""
    roots: list[OverlayRoot] = []
    run = fake.run
    monkeypatch.setattr(fake, "run", lambda root, *a: (roots.append(root), run(root, *a))[1])
    synced: set[str] = set()  # the layer dirs present when the last syncfs began
    syncs = []

    def syncfs(path: Path) -> None:
        synced.update(os.listdir(store.paths.layers))
        syncs.append(path)

    monkeypatch.setattr(layers_module, "syncfs", syncfs)
    recorded = []
    put = store.cache.put

    def checked_put(key: str, record: CacheRecord) -> None:
        if isinstance(record, StepRecord) and record.diff_id is not None:
            assert record.diff_id.hex in synced, "a record was written before its layer synced"
            recorded.append(record.diff_id)
        put(key, record)

    monkeypatch.setattr(store.cache, "put", checked_put)
    fake.on("one", Effect(files={"/a": "1"}))
    fake.on("two", Effect(files={"/b": "2"}))
    context = make_context(tmp_path / "ctx", "FROM scratch\nRUN one\nRUN two\n")
    run_build(store, context, fake, monkeypatch)
    assert len(recorded) == 2 and 1 <= len(syncs) <= 2
    assert [r.volatile for r in roots] == [True, True]
