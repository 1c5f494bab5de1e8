"""A fresh store with --cache-from downloads only the layers the final image needs: a base
under a fully cached build stage is taken as its manifest and config, never its layers.
Counted at the fault proxy in front of a real docker-registry, through the real CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.support import Builder, make_context
from tests.registry.fault_proxy import FaultProxy

RECIPE = """\
FROM {build_base} AS build
RUN mkdir /out && cat /etc/build-base > /out/tool && dd if=/dev/zero of=/out/big bs=1k count=64
FROM {final_base}
COPY --from=build /out/tool /app/tool
COPY msg /app/msg
CMD ["cat", "/app/tool", "/app/msg"]
"""


def _layers(builder: Builder, name: str) -> list[str]:
    (info,) = json.loads(builder("inspect", name).stdout)
    return [layer["digest"] for layer in info["Manifest"]["layers"]]


def _blob(root: Path, digest: str) -> Path:
    return root / "layout" / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _assert_every_named_image_is_whole(root: Path) -> None:
    """The store is an OCI layout other tools read: every image it names has every blob."""
    index = json.loads((root / "layout" / "index.json").read_bytes())
    assert index["manifests"]
    for entry in index["manifests"]:
        manifest = json.loads(_blob(root, entry["digest"]).read_bytes())
        for desc in (manifest["config"], *manifest["layers"]):
            assert _blob(root, desc["digest"]).is_file(), (entry, desc["digest"])


@pytest.fixture
def bases(
    tmp_path: Path, busybox_rootfs: Path, registry: str, repository: str
) -> tuple[str, str, list[str]]:
    """Two different one-layer bases pushed to the registry: the build stage's (busybox and
    a marker file) and the final stage's (busybox); returns their names and the build base's
    layer digests."""
    maker = Builder(tmp_path / "maker")
    rootfs = tmp_path / "build-rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "etc" / "build-base").write_text("from the build base\n")
    names = {"build": rootfs, "final": busybox_rootfs}
    for name, tree in names.items():
        maker("import", tree, f"{name}:1")
        maker("push", "-q", f"{name}:1", f"{registry}/{repository}/{name}:1")
    return f"{repository}/build:1", f"{repository}/final:1", _layers(maker, "build:1")


@pytest.mark.parametrize(("mode", "shown"), [("max", 6), ("min", 4)])
def test_a_fresh_store_with_cache_from_fetches_only_the_final_images_layers(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bases: tuple[str, str, list[str]],
    mode: str,
    shown: int,
) -> None:
    """mode=max holds the build stage's records too; mode=min does not, and the build stage
    is not built at all (the final stage's COPY --from hits), as BuildKit's solver does:
    then the log shows the final stage only (FROM and 3 steps)."""
    build_base, final_base, build_base_layers = bases
    proxy = fault_proxy.address
    recipe = RECIPE.format(build_base=f"{proxy}/{build_base}", final_base=f"{proxy}/{final_base}")
    context = make_context(tmp_path, recipe, {"msg": "via the cache\n"})
    cache = f"{proxy}/{build_base.partition('/build:')[0]}/cache:main"
    first = Builder(tmp_path / "first")
    first_id = tmp_path / "first.id"
    exported = first(
        "build", "--progress", "plain", "-t", "app", "--iidfile", first_id,
        "--cache-to", f"type=registry,ref={cache},mode={mode}", context,
    )  # fmt: skip
    app_layers = _layers(first, "app")
    (run_layer,) = [d for d in _recorded_layers(first) if d not in app_layers]
    # The export shows as a push: a header, a line per blob, the manifest's digest.
    assert f"push {cache} (cache) to {proxy}\n" in exported.stderr
    sent = re.findall(r"^  layer ([0-9a-f]{12}) .* uploaded ", exported.stderr, re.MULTILINE)
    records = set(_recorded_layers(first)) if mode == "max" else set(app_layers[1:])
    assert sorted(sent) == sorted(d.removeprefix("sha256:")[:12] for d in records), exported.stderr
    pushed = rf"^pushed {re.escape(cache)} sha256:[0-9a-f]{{64}} in "
    assert re.search(pushed, exported.stderr, re.MULTILINE)

    fault_proxy.reset()  # the CI runner: an empty store, the same registry
    fresh = Builder(tmp_path / "fresh")
    second_id = tmp_path / "second.id"
    again = fresh(
        "build", "--progress", "plain", "-t", "app", "--iidfile", second_id,
        "--cache-from", f"type=registry,ref={cache}", context,
    )  # fmt: skip
    ends = re.findall(r"^\[\d+/6\] (CACHED|DONE)", again.stderr, re.MULTILINE)
    assert ends == ["CACHED"] * shown, again.stderr
    assert second_id.read_text() == first_id.read_text()
    fetched = {s.path.rpartition("/")[2] for s in fault_proxy.seen("GET", r"/blobs/sha256:")}
    assert set(app_layers) <= fetched  # the final image's layers: its base's and its own
    for digest in (*build_base_layers, run_layer):
        assert digest not in fetched, f"{digest} was downloaded; no image needs it"
        assert not _blob(fresh.root, digest).exists()
    _assert_every_named_image_is_whole(fresh.root)
    assert fresh("run", "--rm", "app").stdout == "from the build base\nvia the cache\n"

    # A build stage step that misses needs its base's layers: they come then, whole.
    changed = recipe.replace("count=64", "count=65")
    (context / "Dockerfile").write_text(changed)
    other = Builder(tmp_path / "other")
    other("build", "-t", "app", "--cache-from", f"type=registry,ref={cache}", context)
    assert _layers(other, f"{proxy}/{build_base}") == build_base_layers
    _assert_every_named_image_is_whole(other.root)
    assert other("run", "--rm", "app").stdout == "from the build base\nvia the cache\n"


def _recorded_layers(builder: Builder) -> list[str]:
    """The layer blobs the store's step records name."""
    layers = []
    for record in (builder.root / "cache").glob("*.json"):
        value = json.loads(record.read_bytes())
        layer = value.get("layer") if isinstance(value, dict) else None
        if isinstance(layer, dict):
            layers.append(layer["digest"])
    return layers


def test_a_build_without_a_cache_pulls_its_bases_whole(
    tmp_path: Path, fault_proxy: FaultProxy, bases: tuple[str, str, list[str]]
) -> None:
    """No imported cache: the bases are pulled whole and named, and what the build made can
    be saved and read by skopeo: the store holds every blob of every image it names."""
    build_base, final_base, build_base_layers = bases
    proxy = fault_proxy.address
    recipe = RECIPE.format(build_base=f"{proxy}/{build_base}", final_base=f"{proxy}/{final_base}")
    context = make_context(tmp_path, recipe, {"msg": "cold\n"})
    store = Builder(tmp_path / "store")
    store("build", "-t", "app", context)
    assert _layers(store, f"{proxy}/{build_base}") == build_base_layers
    _assert_every_named_image_is_whole(store.root)
    archive = tmp_path / "app.tar"
    store("save", "app", "-o", archive)
    assert store("run", "--rm", "app").stdout == "from the build base\ncold\n"


def test_a_base_layer_that_fails_on_need_is_one_error_and_names_nothing(
    tmp_path: Path, fault_proxy: FaultProxy, bases: tuple[str, str, list[str]]
) -> None:
    """A deferred base whose layer comes corrupt when the image needs it: exit 9, one error
    line, and the store names no image (neither the base nor the result)."""
    build_base, final_base, _layers_of_build_base = bases
    proxy = fault_proxy.address
    recipe = RECIPE.format(build_base=f"{proxy}/{build_base}", final_base=f"{proxy}/{final_base}")
    context = make_context(tmp_path, recipe, {"msg": "m\n"})
    cache = f"{proxy}/{build_base.partition('/build:')[0]}/cache:main"
    first = Builder(tmp_path / "first")
    first("build", "-t", "app", "--cache-to", f"type=registry,ref={cache},mode=max", context)
    (final_layer,) = _layers(first, f"{proxy}/{final_base}")
    fault_proxy.corrupt(f"/blobs/{final_layer}$")
    fresh = Builder(tmp_path / "fresh")
    failed = fresh("build", "-q", "-t", "app", "--cache-from", cache, context, check=False)
    assert failed.status == 9, failed.stderr
    assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1, failed.stderr
    assert "does not match its digest" in failed.stderr
    index = fresh.root / "layout" / "index.json"
    assert json.loads(index.read_bytes())["manifests"] == []
    assert not _blob(fresh.root, final_layer).exists()
