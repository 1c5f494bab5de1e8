"""A typed recipe survives the trip to JSON and back, unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.image.platform import Platform
from builder.recipe import load
from builder.recipe.serial import from_json, parser_fingerprint, recipe_from_json, to_json

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "buildkit-parser"
OURS = """\
# escape=`
ARG BASE=busybox
FROM $BASE AS build
ENV A=1 B="two words"
ARG X Y=2
RUN --mount=type=cache,target=/c <<EOF
echo hi
EOF
COPY --from=build --chown=1:1 ["a b", "/dst/"]
ADD --chmod=0755 x /y
ONBUILD RUN echo later
HEALTHCHECK --interval=5s --retries=3 CMD true
CMD ["sh", "-c", "echo done"]
FROM --platform={HOST} scratch
"""


def _typed_cases() -> list[tuple[str, str]]:
    """Our recipe and every corpus case the typed layer accepts (a few are valid syntax
    only, such as `COPY --doit=true`, and have nothing to round-trip)."""
    cases = [("ours", OURS.replace("{HOST}", str(Platform.host())))]
    for case in sorted((CORPUS / "positive").iterdir()):
        text = (case / "Dockerfile").read_bytes().decode("utf-8", "surrogateescape")
        try:
            load(text, filename=case.name)
        except RecipeError:
            continue
        cases.append((case.name, text))
    assert len(cases) > 25  # the corpus is there and mostly typed-valid
    return cases


CASES = _typed_cases()


@pytest.mark.parametrize(("name", "text"), CASES, ids=[c[0] for c in CASES])
def test_round_trip(name: str, text: str) -> None:
    recipe = load(text, filename=name)
    encoded = json.loads(json.dumps(to_json(recipe)))  # through real JSON text
    assert recipe_from_json(encoded) == recipe


def test_fingerprint_is_stable_and_covers_the_grammar() -> None:
    assert parser_fingerprint() == parser_fingerprint()
    assert len(parser_fingerprint()) == 64


def test_unknown_shapes_are_rejected() -> None:
    with pytest.raises(KeyError):
        from_json({"@": "NotAType"})
    with pytest.raises(ValueError):
        recipe_from_json(["not", "a", "recipe"])
