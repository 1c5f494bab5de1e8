"""ARG/ENV scoping, driven step by step as the engine drives it."""

from __future__ import annotations

import platform

from builder.recipe.scope import StageScope, host_platform, platform_args


def test_global_arg_needs_redeclaration() -> None:
    scope = StageScope({"V": "global"}, {}, [])
    assert "V" not in scope.expansion_env()
    scope.declare_arg("V", None)
    assert scope.expansion_env()["V"] == "global"


def test_default_beats_global_and_build_arg_beats_both() -> None:
    scope = StageScope({"V": "global"}, {}, [])
    scope.declare_arg("V", "default")
    assert scope.expansion_env()["V"] == "default"
    scope = StageScope({"V": "global"}, {"V": "cli"}, [])
    scope.declare_arg("V", "default")
    assert scope.expansion_env()["V"] == "cli"
    assert scope.used_build_args == {"V"}


def test_arg_without_value_is_declared_but_unset() -> None:
    scope = StageScope({}, {}, [])
    scope.declare_arg("X", None)
    assert "X" not in scope.expansion_env()
    assert scope.declared_args() == ("X",)
    assert not any(e.startswith("X=") for e in scope.run_env())


def test_args_reach_run_but_not_the_image() -> None:
    scope = StageScope({}, {}, ["PATH=/bin", "HOME=/root"])
    scope.declare_arg("A", "1")
    scope.set_env("B", "2")
    assert scope.run_env() == ["PATH=/bin", "HOME=/root", "B=2", "A=1"]
    assert scope.image_env() == ["PATH=/bin", "HOME=/root", "B=2"]


def test_env_overrides_arg_in_either_order() -> None:
    scope = StageScope({}, {"X": "cli"}, [])
    scope.set_env("X", "env")
    scope.declare_arg("X", "arg")
    assert scope.expansion_env()["X"] == "env"
    assert scope.run_env() == ["X=env"]
    scope2 = StageScope({}, {}, [])
    scope2.declare_arg("Y", "arg")
    scope2.set_env("Y", "env")
    assert scope2.expansion_env()["Y"] == "env"


def test_env_replaces_in_place_keeping_order() -> None:
    scope = StageScope({}, {}, ["A=1", "B=2", "A=3"])
    scope.set_env("A", "4")
    scope.set_env("C", "5")
    assert scope.image_env() == ["A=4", "B=2", "C=5"]


def test_proxy_args_need_no_declaration_for_run() -> None:
    scope = StageScope(
        {}, {"HTTP_PROXY": "upper", "http_proxy": "http://p:3128", "OTHER": "x", "no_proxy": ""}, []
    )
    # BuildKit's ProxyEnv: apart from the key's env; both spellings; sorted, so the
    # lower-case arg wins; an empty value is not passed.
    assert scope.proxy_env() == ["HTTP_PROXY=http://p:3128", "http_proxy=http://p:3128"]
    assert scope.run_env() == []
    assert "http_proxy" not in scope.expansion_env()
    assert not any(e.startswith("OTHER=") for e in scope.run_env())
    assert scope.used_build_args == {"HTTP_PROXY", "http_proxy", "no_proxy"}
    assert scope.image_env() == []


def test_platform_args() -> None:
    args = platform_args()
    _, arch, _ = host_platform()
    assert args["TARGETARCH"] == args["BUILDARCH"] == arch
    assert args["BUILDOS"] == "linux"
    expected = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine())
    if expected is not None:
        assert arch == expected
    assert host_platform("armv7l") == ("linux", "arm", "v7")
    cross = platform_args("linux/arm/v6", machine="x86_64")
    assert cross["TARGETPLATFORM"] == "linux/arm/v6"
    assert (cross["TARGETARCH"], cross["TARGETVARIANT"]) == ("arm", "v6")
    assert cross["BUILDPLATFORM"] == "linux/amd64"


def test_platform_args_must_be_declared_in_stage() -> None:
    scope = StageScope(platform_args(machine="aarch64"), {}, [])
    assert "TARGETARCH" not in scope.expansion_env()
    scope.declare_arg("TARGETARCH", None)
    assert scope.expansion_env()["TARGETARCH"] == "arm64"
