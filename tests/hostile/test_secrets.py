"""Secrets live only in memory: the CLI reads them into memory, and the sandbox writes each
to a tmpfs that exists only in its own mount namespaces. A build killed with SIGKILL while
a secret is mounted leaves its bytes nowhere in the store or in /tmp. `RUN --mount=
type=secret,env=NAME` gives the secret as a variable (BuildKit's semantics), never in the
image's config or history."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from pathlib import Path

import pytest

from builder.errors import RecipeError
from tests.e2e.support import Builder, make_context
from tests.hostile.test_faults import _start, _stderr, _wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root]


def _holding(paths: list[Path], needle: bytes) -> list[str]:
    """The files under `paths` whose bytes hold `needle` (grep -r, devices and fifos skipped)."""
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return []
    grep = ["grep", "-r", "-l", "-a", "-F", "-D", "skip", "--", needle.decode(), *existing]
    proc = subprocess.run(grep, capture_output=True, text=True)
    # A file that went while grep walked (another process's /tmp/builder-* entry) is no
    # error of ours; any other error is.
    errors = [e for e in proc.stderr.splitlines() if not e.endswith(": No such file or directory")]
    assert proc.returncode in (0, 1) or (proc.returncode == 2 and not errors), proc.stderr
    return proc.stdout.splitlines()


def _tmp_entries() -> list[Path]:
    return [Path("/tmp", n) for n in os.listdir("/tmp") if n.startswith("builder-")]


@pytest.mark.parametrize("source", ["src", "env"])
def test_a_killed_build_leaves_no_copy_of_a_secret(
    builder: Builder, tmp_path: Path, source: str
) -> None:
    token = secrets.token_hex(16).encode()
    env = {"BUILDER_TEST_TOKEN": token.decode()}
    if source == "src":  # the source file lives outside the store and /tmp/builder-*
        secret_file = tmp_path / "src" / "token"
        secret_file.parent.mkdir()
        secret_file.write_bytes(token)
        flag = f"id=tok,src={secret_file}"
    else:
        flag = "id=tok,env=BUILDER_TEST_TOKEN"
    context = make_context(
        tmp_path,
        "FROM busybox\n"
        "RUN --mount=type=secret,id=tok,required "
        "test -s /run/secrets/tok && echo secret-is-mounted && sleep 60\n",
    )
    proc = _start(builder, "build", "--progress", "plain", "--secret", flag, context, env=env)
    try:
        _wait_for(proc, lambda: "secret-is-mounted" in _stderr(builder), "the secret mounted")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _holding([builder.root, *_tmp_entries()], token) == []


def test_a_secret_as_an_environment_variable(builder: Builder, tmp_path: Path) -> None:
    context = make_context(
        tmp_path,
        "FROM busybox\n"
        # env= alone: the variable, no file (target defaults only when env is unset).
        "RUN --mount=type=secret,id=tok,env=TOKEN "
        'test "${#TOKEN}" = 6 && test ! -e /run/secrets/tok && touch /env-only\n'
        # Both: the file at target= and the variable.
        "RUN --mount=type=secret,id=tok,env=TOKEN,target=/t "
        'test "${#TOKEN}" = 6 && test "$(cat /t)" = "$TOKEN" && touch /both\n'
        # A missing secret that is not required: skipped, the variable is unset.
        "RUN --mount=type=secret,id=absent,env=GONE "
        'test -z "${GONE+set}" && touch /skipped\n',
    )
    env = {"TOK": "s3cret"}
    builder("build", "--secret", "id=tok,env=TOK", "-t", "envsecret", context, env=env)
    out = builder("run", "--rm", "envsecret", "ls", "/env-only", "/both", "/skipped")
    assert out.stdout.split() == ["/both", "/env-only", "/skipped"]
    inspected = builder("inspect", "envsecret").stdout
    assert "s3cret" not in inspected and "TOKEN=" not in inspected
    # The secret's value is no part of the cache key: another value hits the cache.
    again = builder(
        "build", "--secret", "id=tok,env=TOK", "-t", "envsecret", context, env={"TOK": "other"}
    )
    assert again.stderr.count("CACHED") == 4


def test_a_required_env_secret_that_is_missing(builder: Builder, tmp_path: Path) -> None:
    context = make_context(
        tmp_path, "FROM busybox\nRUN --mount=type=secret,id=tok,env=TOKEN,required true\n"
    )
    out = builder("build", context, check=False)
    assert out.status == RecipeError.exit_code, out.stderr
    assert "secret tok: not found" in out.stderr and "Traceback" not in out.stderr


def test_a_secret_too_big_or_not_a_file_is_a_usage_error(builder: Builder, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (500 * 1024 + 1))
    context = make_context(tmp_path, "FROM busybox\nRUN true\n")
    for src, message in ((big, "larger than 500 KB"), (tmp_path, "is not a file")):
        out = builder("build", "--secret", f"id=s,src={src}", context, check=False)
        assert out.status == 2 and message in out.stderr, out.stderr
