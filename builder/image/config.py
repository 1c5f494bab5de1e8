"""The image config: what `docker build` writes, as frozen values that return new values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from builder import record
from builder.image import fields
from builder.image.digest import Digest, DigestError
from builder.record import dataclass, field

# Docker's PATH for a container (or RUN step) whose image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Healthcheck:
    """Docker's HEALTHCHECK; durations in nanoseconds as docker stores them."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Test": list(self.test)}
        for key, value in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
            ("Retries", self.retries),
        ):
            if value:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, value: Any) -> Healthcheck:
        m = fields.obj(value, "Healthcheck")
        w = "Healthcheck"
        return cls(
            test=fields.opt_strs(m, "Test", w) or (),
            interval=fields.opt_int(m, "Interval", w) or 0,
            timeout=fields.opt_int(m, "Timeout", w) or 0,
            start_period=fields.opt_int(m, "StartPeriod", w) or 0,
            start_interval=fields.opt_int(m, "StartInterval", w) or 0,
            retries=fields.opt_int(m, "Retries", w) or 0,
        )


@dataclass(frozen=True)
class ContainerConfig:
    """The "config" object of an image config (how a container of the image runs)."""

    user: str | None = None
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    env: tuple[str, ...] = ()  # "KEY=value", in order
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str | None = None
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] | None = None
    # Deprecated in the OCI spec; BuildKit sets it on every CMD for the Docker image spec,
    # and it is part of the config digest.
    args_escaped: bool = False

    def __hash__(self) -> int:
        return hash((self.env, self.entrypoint, self.cmd, tuple(sorted(self.labels.items()))))

    def replace(self, **changes: Any) -> ContainerConfig:
        return record.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        # An empty entrypoint/cmd list is meaningful (reset), so only None is omitted.
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.args_escaped:
            out["ArgsEscaped"] = True
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_json()
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.shell is not None:
            out["Shell"] = list(self.shell)
        return out

    @classmethod
    def from_json(cls, value: Any) -> ContainerConfig:
        if value is None:
            return cls()
        m = fields.obj(value, "config")
        w = "config"
        hc = m.get("Healthcheck")
        return cls(
            user=fields.opt_str(m, "User", w),
            exposed_ports=fields.opt_keys(m, "ExposedPorts", w) or (),
            env=fields.opt_strs(m, "Env", w) or (),
            entrypoint=fields.opt_strs(m, "Entrypoint", w),
            cmd=fields.opt_strs(m, "Cmd", w),
            volumes=fields.opt_keys(m, "Volumes", w) or (),
            working_dir=fields.opt_str(m, "WorkingDir", w),
            labels=fields.opt_str_map(m, "Labels", w) or {},
            stop_signal=fields.opt_str(m, "StopSignal", w),
            healthcheck=None if hc is None else Healthcheck.from_json(hc),
            on_build=fields.opt_strs(m, "OnBuild", w) or (),
            shell=fields.opt_strs(m, "Shell", w),
            args_escaped=fields.opt_bool(m, "ArgsEscaped", w),
        )


@dataclass(frozen=True)
class History:
    created: str | None = None
    created_by: str | None = None
    comment: str | None = None
    empty_layer: bool = False
    author: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (
            ("created", self.created),
            ("created_by", self.created_by),
            ("comment", self.comment),
            ("author", self.author),
        ):
            if value is not None:
                out[key] = value
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_json(cls, value: Any) -> History:
        m = fields.obj(value, "history")
        empty = fields.opt_bool(m, "empty_layer", "history")
        return cls(
            created=fields.opt_str(m, "created", "history"),
            created_by=fields.opt_str(m, "created_by", "history"),
            comment=fields.opt_str(m, "comment", "history"),
            empty_layer=empty,
            author=fields.opt_str(m, "author", "history"),
        )


_KNOWN_KEYS = frozenset(
    {"created", "author", "architecture", "os", "variant", "os.version", "config", "rootfs"}
    | {"history"}
)


@dataclass(frozen=True)
class ImageConfig:
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    created: str | None = None  # RFC 3339
    author: str | None = None
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    os_version: str | None = None
    # Keys we do not model (docker's "container", "docker_version", ...), kept for round-trips.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.architecture, self.os, self.created, self.diff_ids, self.history))

    def with_layer(self, diff_id: Digest, history: History) -> ImageConfig:
        """A new config with one more layer and its (non-empty) history entry."""
        entry = record.replace(history, empty_layer=False)
        return record.replace(
            self, diff_ids=(*self.diff_ids, diff_id), history=(*self.history, entry)
        )

    def with_history(self, history: History) -> ImageConfig:
        """A new config with a history entry for a step that made no layer."""
        entry = record.replace(history, empty_layer=True)
        return record.replace(self, history=(*self.history, entry))

    def with_container_config(self, cc: ContainerConfig) -> ImageConfig:
        return record.replace(self, config=cc)

    def with_created(self, ts: str) -> ImageConfig:
        return record.replace(self, created=ts)

    def replace(self, **changes: Any) -> ImageConfig:
        return record.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out["architecture"] = self.architecture
        out["os"] = self.os
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.created is not None:
            out["created"] = self.created
        if self.author is not None:
            out["author"] = self.author
        out["config"] = self.config.to_json()
        out["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        return out

    @classmethod
    def from_json(cls, value: Any) -> ImageConfig:
        m = fields.obj(value, "image config")
        w = "image config"
        rootfs = fields.obj(m.get("rootfs", {}), "rootfs")
        raw_ids = fields.opt_strs(rootfs, "diff_ids", "rootfs") or ()
        try:
            diff_ids = tuple(Digest(d) for d in raw_ids)
        except DigestError as err:
            raise fields.FormatError(f"rootfs: {err}") from None
        history = m.get("history") or []
        if not isinstance(history, list):
            raise fields.FormatError("image config: 'history' must be a list")
        return cls(
            architecture=fields.opt_str(m, "architecture", w) or "",
            os=fields.opt_str(m, "os", w) or "",
            variant=fields.opt_str(m, "variant", w),
            os_version=fields.opt_str(m, "os.version", w),
            created=fields.opt_str(m, "created", w),
            author=fields.opt_str(m, "author", w),
            config=ContainerConfig.from_json(m.get("config")),
            diff_ids=diff_ids,
            history=tuple(History.from_json(h) for h in history),
            extra={k: v for k, v in m.items() if k not in _KNOWN_KEYS},
        )
