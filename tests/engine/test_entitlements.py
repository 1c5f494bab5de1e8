"""RUN may use the host's network or leave the sandbox only when the build allows it
(`--allow network.host`, `--allow security.insecure`), as BuildKit's entitlements: a recipe
cannot override the build's own `--network none`. The gate stands before the cache, so a
layer once made with the host network is not reused by a build that does not allow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.store import Store
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import make_context, run_build

HOST = frozenset({"network.host"})
INSECURE = frozenset({"security.insecure"})


def _build(
    store: Store,
    fake: FakeExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_flags: str,
    **options: object,
) -> None:
    fake.on("go", Effect(files={"/made": "x"}))
    context = make_context(tmp_path / "ctx", f"FROM scratch\nRUN {run_flags} go\n")
    run_build(store, context, fake, monkeypatch, **options)


def test_run_network_host_is_refused_unless_allowed(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RecipeError) as info:
        _build(store, fake, tmp_path, monkeypatch, "--network=host", network="none")
    assert "network.host is not allowed" in str(info.value)
    assert "--allow network.host" in str(info.value)
    assert info.value.exit_code == 3
    assert info.value.location is not None and info.value.location.line == 2
    assert fake.runs == []  # nothing ran with the host's network


def test_allowed_run_network_host_gets_the_host_network(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build(store, fake, tmp_path, monkeypatch, "--network=host", allow=HOST)
    assert [p.network for p in fake.runs] == ["host"]


def test_the_builds_own_host_network_allows_it(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `builder build --network host` asks for network.host itself, as buildx does.
    _build(store, fake, tmp_path, monkeypatch, "--network=host", network="host")
    assert [p.network for p in fake.runs] == ["host"]


def test_other_entitlements_do_not_allow_the_host_network(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RecipeError, match=r"network\.host is not allowed"):
        _build(store, fake, tmp_path, monkeypatch, "--network=host", allow=INSECURE)


def test_a_cached_host_network_layer_is_not_reused_without_the_entitlement(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build(store, fake, tmp_path, monkeypatch, "--network=host", allow=HOST)
    with pytest.raises(RecipeError, match=r"network\.host is not allowed"):
        _build(store, fake, tmp_path, monkeypatch, "--network=host")
    assert len(fake.runs) == 1


def test_security_insecure_asks_for_its_entitlement_first(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RecipeError) as info:
        _build(store, fake, tmp_path, monkeypatch, "--security=insecure", allow=HOST)
    assert "security.insecure is not allowed" in str(info.value)
    assert "--allow security.insecure" in str(info.value)
    assert fake.runs == []


def test_allowed_security_insecure_runs_insecure(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build(store, fake, tmp_path, monkeypatch, "--security=insecure", allow=INSECURE)
    assert [p.insecure for p in fake.runs] == [True]


def test_security_sandbox_needs_nothing(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build(store, fake, tmp_path, monkeypatch, "--security=sandbox --network=none")
    assert [(p.network, p.insecure) for p in fake.runs] == [("none", False)]


@pytest.mark.parametrize(
    ("flags", "entitlement"),
    [("--network=host", "network.host"), ("--security=insecure", "security.insecure")],
)
def test_the_gate_stands_before_anything_runs(
    store: Store,
    fake: FakeExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: str,
    entitlement: str,
) -> None:
    # BuildKit checks the entitlements when the solve starts: the steps before the one
    # asking, in this stage and in an earlier one, never run.
    fake.on("go", Effect(files={"/made": "x"}))
    recipe = f"FROM scratch AS a\nRUN go\nFROM a\nRUN go\nRUN {flags} go\n"
    context = make_context(tmp_path / "ctx", recipe)
    with pytest.raises(RecipeError) as info:
        run_build(store, context, fake, monkeypatch)
    assert f"{entitlement} is not allowed" in str(info.value)
    assert f"--allow {entitlement}" in str(info.value)
    assert info.value.location is not None and info.value.location.line == 5
    assert fake.runs == []
