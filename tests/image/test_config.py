import copy
import json

import pytest

from builder.image.canonical import canonical_json
from builder.image.config import ContainerConfig, Healthcheck, History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.image.manifest import Index, Manifest
from builder.image.mediatypes import MediaType

D1 = Digest.of_bytes(b"1")
D2 = Digest.of_bytes(b"2")

# The shape `docker build` writes (trimmed from a real `docker inspect` of a config blob).
DOCKER_CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-05-01T10:00:00.123Z",
    "docker_version": "24.0.7",
    "config": {
        "User": "app",
        "ExposedPorts": {"80/tcp": {}},
        "Env": ["PATH=/usr/bin:/bin"],
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": [],
        "Volumes": {"/data": {}},
        "WorkingDir": "/app",
        "Labels": {"a": "b"},
        "StopSignal": "SIGTERM",
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3},
        "OnBuild": ["RUN x"],
        "Shell": ["/bin/bash", "-c"],
        "ArgsEscaped": True,
    },
    "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
    "history": [
        {"created": "2024", "created_by": "ADD x /"},
        {"created": "2024", "created_by": "ENV a=b", "empty_layer": True},
    ],
}


def test_docker_config_round_trip() -> None:
    cfg = ImageConfig.from_json(copy.deepcopy(DOCKER_CONFIG))
    assert cfg.config.healthcheck == Healthcheck(
        ("CMD", "true"), interval=30_000_000_000, retries=3
    )
    assert cfg.config.cmd == () and cfg.config.volumes == ("/data",)
    assert cfg.history[1].empty_layer
    out = cfg.to_json()
    assert out["docker_version"] == "24.0.7"  # unknown keys survive
    assert cfg.config.args_escaped
    # Every field comes back as docker wrote it.
    assert canonical_json(out) == canonical_json(DOCKER_CONFIG)
    assert ImageConfig.from_json(json.loads(canonical_json(out))) == cfg


def test_empty_fields_are_omitted() -> None:
    assert ContainerConfig().to_json() == {}
    assert ContainerConfig(cmd=()).to_json() == {"Cmd": []}
    out = ImageConfig().to_json()
    assert out == {"architecture": "amd64", "os": "linux", "config": {},
                   "rootfs": {"type": "layers", "diff_ids": []}}  # fmt: skip


def test_with_methods_return_new_values() -> None:
    base = ImageConfig()
    one = base.with_layer(D1, History(created_by="RUN a"))
    two = one.with_history(History(created_by="ENV x=y"))
    three = two.with_container_config(ContainerConfig(env=("x=y",))).with_created("2024")
    assert base.diff_ids == () and one.diff_ids == (D1,)
    assert [h.empty_layer for h in two.history] == [False, True]
    assert three.config.env == ("x=y",) and three.created == "2024" and two.created is None


@pytest.mark.parametrize(
    "bad",
    [[], {"rootfs": {"diff_ids": ["nope"]}}, {"config": {"Env": "x"}}, {"history": [1]},
     {"config": {"Healthcheck": {"Retries": True}}}],
)  # fmt: skip
def test_malformed_config(bad: object) -> None:
    with pytest.raises(FormatError):
        ImageConfig.from_json(bad)


def test_manifest_and_index_round_trip() -> None:
    cfg = Descriptor(MediaType.OCI_CONFIG, D1, 10)
    layer = Descriptor(MediaType.OCI_LAYER_GZIP, D2, 20, annotations={"k": "v"})
    m = Manifest(cfg, (layer,))
    doc = m.to_json()
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == MediaType.OCI_MANIFEST
    assert Manifest.from_json(json.loads(canonical_json(doc))) == m
    plat = Descriptor(MediaType.OCI_MANIFEST, D1, 5, platform=Platform("arm64", "linux", "v8"))
    idx = Index((plat,))
    assert Index.from_json(idx.to_json()) == idx
    assert idx.to_json()["manifests"][0]["platform"]["variant"] == "v8"
    odd = Descriptor.from_json({"mediaType": "application/x-unknown", "digest": D1, "size": 1})
    assert odd.media_type == "application/x-unknown"
    hash(layer)  # descriptors with annotations are still usable as set members


@pytest.mark.parametrize(
    "bad",
    [{"schemaVersion": 1}, {"schemaVersion": 2}, {"schemaVersion": 2, "config": {}},
     {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "config": {}},
     {"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:1", "size": 1}},
     {"schemaVersion": 2, "config": {"mediaType": "x", "digest": D1, "size": -1}}],
)  # fmt: skip
def test_malformed_manifest(bad: object) -> None:
    with pytest.raises(FormatError):
        Manifest.from_json(bad)
