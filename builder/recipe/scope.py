"""ARG/ENV scoping, as BuildKit does it. A pure object the build engine drives step by step.

- Global args (ARG before the first FROM) are seen by FROM lines; inside a stage only when
  re-declared (`ARG NAME` without a default takes the global value).
- `--build-arg` overrides any default; a build arg nobody declares is "unused" (a warning).
- ARG values are in the environment of RUN steps but never in the image config.
- ENV (the base image's, and the stage's own) overrides an ARG of the same name.
- The proxy args are passed to RUN without a declaration when given as build args, as
  BuildKit's ProxyEnv: both spellings, out of the cache key, the config and the history.
  The platform args (TARGETARCH..., TARGETSTAGE) live in the global scope and must be
  declared to be seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from builder.image.platform import Platform

_PROXY_KINDS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
PROXY_ARGS = frozenset(name for base in _PROXY_KINDS for name in (base, base.lower()))
PLATFORM_ARGS = (
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETSTAGE",
)


def host_platform(machine: str | None = None) -> tuple[str, str, str]:
    """(os, arch, variant) of this host in OCI spelling ("" when there is no variant)."""
    host = Platform.host(machine)
    return host.os, host.architecture, host.variant or ""


def platform_args(
    target: str | None = None, machine: str | None = None, stage: str | None = None
) -> dict[str, str]:
    """The automatic platform args: BUILD* for this host, TARGET* for `target` (or host),
    and TARGETSTAGE: the stage being built (BuildKit: --target, else the last stage's
    name, else "default")."""
    os_, arch, variant = host_platform(machine)
    build = f"{os_}/{arch}" + (f"/{variant}" if variant else "")
    t_os, t_arch, t_variant = os_, arch, variant
    if target:
        parts = target.split("/")
        t_os = parts[0]
        t_arch = parts[1] if len(parts) > 1 else arch
        t_variant = parts[2] if len(parts) > 2 else ""
    tgt = f"{t_os}/{t_arch}" + (f"/{t_variant}" if t_variant else "")
    return {
        "BUILDPLATFORM": build,
        "BUILDOS": os_,
        "BUILDARCH": arch,
        "BUILDVARIANT": variant,
        "TARGETPLATFORM": tgt,
        "TARGETOS": t_os,
        "TARGETARCH": t_arch,
        "TARGETVARIANT": t_variant,
        "TARGETSTAGE": stage or "default",
    }


def _split_env(entries: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env[key] = value  # a later duplicate wins, as in BuildKit
    return env


class StageScope:
    """The variables of one stage as its instructions run."""

    def __init__(
        self,
        global_args: Mapping[str, str],
        build_args: Mapping[str, str],
        image_env: Sequence[str],
    ) -> None:
        self._global_args = dict(global_args)
        self._build_args = dict(build_args)
        # dicts keep insertion order: the image config keeps the base image's order, and
        # ENV of an existing key replaces it in place.
        self._env = _split_env(image_env)
        self._args: dict[str, str | None] = {}
        self._first_declared: dict[str, None] = {}  # the order BuildKit's history keeps
        self.used_build_args: set[str] = {n for n in self._build_args if n in PROXY_ARGS}

    def declare_arg(self, name: str, default: str | None) -> None:
        """`ARG name[=default]`; `default` is already expanded (resolve) by the caller."""
        value: str | None
        if name in self._build_args:
            value = self._build_args[name]
            self.used_build_args.add(name)
        elif default is not None:
            value = default
        else:
            value = self._global_args.get(name)
        # Re-declaring moves the arg to the end, so run_env follows declaration order.
        self._args.pop(name, None)
        self._args[name] = value
        self._first_declared.setdefault(name)

    def has_build_arg(self, name: str) -> bool:
        """Whether --build-arg gives `name` (then its ARG default is never expanded)."""
        return name in self._build_args

    def arg_value(self, name: str) -> str | None:
        return self._args.get(name)

    def set_env(self, name: str, value: str) -> None:
        """`ENV name=value` (value already expanded)."""
        self._env[name] = value

    def _set_args(self) -> dict[str, str]:
        return {k: v for k, v in self._args.items() if v is not None}

    def expansion_env(self) -> dict[str, str]:
        """What `$x` sees in an expanded field: declared args, overridden by env."""
        return {**self._set_args(), **self._env}

    def run_env(self) -> list[str]:
        """The environment of a RUN process: image env, then args ENV does not shadow."""
        env = dict(self._env)
        for name, value in self._set_args().items():
            env.setdefault(name, value)
        return [f"{k}={v}" for k, v in env.items()]

    def proxy_env(self) -> list[str]:
        """BuildKit's ProxyEnv: each proxy build arg (any case) in both spellings, added to
        a RUN's environment last (it wins), and kept out of its cache key."""
        values: dict[str, str] = {}
        for name in sorted(self._build_args):  # as BuildKit: sorted, so `http_proxy` wins
            if name.upper() in _PROXY_KINDS:
                values[name.upper()] = self._build_args[name]
        return [
            f"{spelling}={values[kind]}"
            for kind in _PROXY_KINDS
            if values.get(kind)
            for spelling in (kind, kind.lower())
        ]

    def history_args(self) -> list[str]:
        """`name=value` of each ARG the stage declared, in first-declaration order with its
        value as a RUN sees it (ENV wins), for BuildKit's `RUN |N a=1 b=2 ...` history."""
        env = dict(entry.partition("=")[::2] for entry in self.run_env())
        return [f"{n}={env.get(n, self._args.get(n) or '')}" for n in self._first_declared]

    def image_env(self) -> list[str]:
        """The env to write into the image config: no ARG ever reaches it."""
        return [f"{k}={v}" for k, v in self._env.items()]

    def declared_args(self) -> tuple[str, ...]:
        return tuple(self._args)
