"""Through the CLI: a RUN gets the host's network or leaves the sandbox only when the build
says `--allow` (BuildKit's entitlements); a refusal is one `error:` line, exit 3, naming the
flag that would allow it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import RecipeError, UsageError
from tests.e2e.support import Builder, make_context


def _host_interface() -> str:
    names = sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
    if not names:
        pytest.skip("the host has no network interface but lo")
    return names[0]


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


def test_run_network_host_needs_allow(builder: Builder, tmp_path: Path) -> None:
    # The step succeeds only on the host's network: it sees the host's interface.
    iface = _host_interface()
    context = make_context(
        tmp_path, f"FROM busybox\nRUN --network=host test -e /sys/class/net/{iface}\n"
    )
    refused = builder("build", "--network", "none", context, check=False)
    assert refused.status == RecipeError.exit_code, refused.stderr
    line = _error_line(refused.stderr)
    assert "Dockerfile:2:" in line and "network.host is not allowed" in line, line
    assert "--allow network.host" in line, line
    builder("build", "--network", "none", "--allow", "network.host", context)


def test_the_builds_own_host_network_needs_no_allow(builder: Builder, tmp_path: Path) -> None:
    iface = _host_interface()
    context = make_context(tmp_path, f"FROM busybox\nRUN test -e /sys/class/net/{iface}\n")
    builder("build", "--network", "host", context)


def test_security_insecure_is_gated_then_unconfined(builder: Builder, tmp_path: Path) -> None:
    # A new mount namespace needs CAP_SYS_ADMIN and a seccomp profile that allows unshare:
    # the sandbox's defaults refuse both (tests/sandbox/test_confinement.py), insecure not.
    context = make_context(
        tmp_path,
        "FROM busybox\nRUN --security=insecure grep -q 'Seccomp:.0' /proc/self/status"
        " && unshare -m true\n",
    )
    refused = builder("build", context, check=False)
    assert refused.status == RecipeError.exit_code, refused.stderr
    assert "--allow security.insecure" in _error_line(refused.stderr)
    builder("build", "--allow", "security.insecure", context)


def test_an_unknown_entitlement_is_a_usage_error(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN true\n")
    result = builder("build", "--allow", "network.none", context, check=False)
    assert result.status == UsageError.exit_code, result.stderr
    assert "invalid entitlement" in _error_line(result.stderr)
