"""`builder lint` and `builder build` reject the same recipes, with the same error, exit 3.

The typed recipe is the only validator: a flag value is parsed once, when the recipe is
typed if it is literal, else when the instruction is expanded, by the same function for
both verbs. Each case here is a recipe docker would build (or at least type) that we
refuse, or one that is wrong; neither verb may accept it, crash on it or word it apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.image.platform import Platform
from tests.e2e.support import Builder, make_context

OTHER_PLATFORM = "linux/s390x" if Platform.host().architecture != "s390x" else "linux/amd64"

BAD = [
    pytest.param("HEALTHCHECK --interval=5 CMD true", "invalid duration", id="duration-no-unit"),
    pytest.param("HEALTHCHECK --timeout=5x CMD true", "invalid duration", id="duration-bad-unit"),
    pytest.param("HEALTHCHECK --interval=999us CMD true", "shorter than 1ms", id="under-1ms"),
    pytest.param("HEALTHCHECK --start-period=-1s CMD true", "shorter than 1ms", id="negative"),
    pytest.param("HEALTHCHECK --retries=-1 CMD true", "invalid --retries", id="retries"),
    pytest.param(
        "COPY --chmod=999 Dockerfile /x", "invalid chmod parameter: '999'", id="chmod-digits"
    ),
    pytest.param(
        "COPY --chmod=u+q Dockerfile /x", "invalid chmod parameter: 'u+q'", id="chmod-symbolic"
    ),
    pytest.param(
        "ARG MODE=8888\nCOPY --chmod=$MODE Dockerfile /x",
        "invalid chmod parameter: '8888'",
        id="chmod-from-arg",
    ),
    pytest.param("RUN --mount=type=ssh true", "type=ssh is not supported", id="mount-ssh"),
    pytest.param(
        "ARG S=a\nRUN --mount=type=bind,from=$S,target=/b true",
        "'from' doesn't support variable expansion",
        id="mount-from-variable",
    ),
    pytest.param("RUN --mount=type=cache true", "needs target=", id="mount-no-target"),
    pytest.param(
        "ARG KIND=ssh\nRUN --mount=type=$KIND,target=/s true",
        "type=ssh is not supported",
        id="mount-type-from-arg",
    ),
    pytest.param("COPY --parents Dockerfile /x", "--parents is not supported", id="parents"),
    pytest.param("COPY --exclude=*.md . /x", "--exclude is not supported", id="exclude"),
    pytest.param("ADD https://example.com/a.tar /x", "from a URL", id="add-url"),
    pytest.param(
        "ARG URL=https://example.com/a.tar\nADD $URL /x", "from a URL", id="add-url-from-arg"
    ),
    pytest.param(
        "ADD --checksum=sha256:00 Dockerfile /x",
        "checksum requires HTTP(S) or Git sources",
        id="add-checksum",
    ),
    pytest.param("EXPOSE notaport", "invalid containerPort: notaport", id="expose"),
    pytest.param("ARG P=notaport\nEXPOSE $P", "invalid containerPort", id="expose-from-arg"),
    pytest.param("STOPSIGNAL NOTASIGNAL", "invalid signal: NOTASIGNAL", id="stopsignal"),
    pytest.param("COPY --from=$X Dockerfile /x", "not supported for --from", id="from-variable"),
]

BAD_FROM = [
    pytest.param(
        f"FROM --platform={OTHER_PLATFORM} busybox", "cross-platform", id="from-other-platform"
    ),
    pytest.param(
        f"ARG P={OTHER_PLATFORM}\nFROM --platform=$P busybox",
        "cross-platform",
        id="from-platform-from-arg",
    ),
    pytest.param("FROM --platform=a/b/c/d busybox", "invalid --platform", id="from-bad-platform"),
]


def _error_block(stderr: str) -> list[str]:
    """The `error:` line and the source line and caret under it."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(starts) == 1, stderr
    block = [lines[starts[0]]]
    for line in lines[starts[0] + 1 :]:
        if not re.match(r"^\s*\d+ \| |^\s*\^$", line):
            break
        block.append(line)
    return block


def _both(builder: Builder, tmp_path: Path, recipe: str) -> tuple[list[str], list[str]]:
    context = make_context(tmp_path, recipe)
    linted = builder("lint", context / "Dockerfile", check=False)
    built = builder("build", "--progress", "plain", "-t", "bad", context, check=False)
    for result in (linted, built):
        assert "Traceback" not in result.stderr, result.stderr
        assert result.status == RecipeError.exit_code, result.stderr
    return _error_block(linted.stderr), _error_block(built.stderr)


# A RUN before the bad line: build must refuse it whether or not earlier steps ran.
CASES = [
    *(
        pytest.param(f"FROM busybox\nRUN true\n{p.values[0]}\n", *p.values[1:], id=p.id)
        for p in BAD
    ),
    *(pytest.param(f"{p.values[0]}\nRUN true\n", *p.values[1:], id=p.id) for p in BAD_FROM),
]


@pytest.mark.parametrize(("recipe", "message"), CASES)
def test_lint_and_build_refuse_alike(
    builder: Builder, tmp_path: Path, recipe: str, message: str
) -> None:
    linted, built = _both(builder, tmp_path, recipe)
    assert linted == built
    assert message in linted[0]
    assert linted[0].startswith("error: Dockerfile:"), linted
    assert len(linted) == 3 and linted[2].strip() == "^", linted  # the line and a caret


def test_go_durations_build_into_nanoseconds(builder: Builder, tmp_path: Path) -> None:
    recipe = (
        "FROM busybox\n"
        "HEALTHCHECK --interval=.5s --timeout=1.5ms --start-period=1h2m3.5s --retries=+2"
        " CMD true\n"
    )
    context = make_context(tmp_path, recipe)
    linted = builder("lint", context / "Dockerfile", check=False)
    assert linted.status == 0, linted.stderr
    builder("build", "-t", "healthy", context)
    config = json.loads(builder("inspect", "healthy").stdout)[0]["Config"]["config"]
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 500_000_000,
        "Timeout": 1_500_000,
        "StartPeriod": 3_723_500_000_000,
        "Retries": 2,
    }


def test_the_host_platform_builds(builder: Builder, tmp_path: Path) -> None:
    recipe = f"FROM --platform={Platform.host()} busybox\nFROM --platform=$BUILDPLATFORM busybox\n"
    context = make_context(tmp_path, recipe)
    assert builder("lint", context / "Dockerfile", check=False).status == 0
    builder("build", "-t", "native", context)
