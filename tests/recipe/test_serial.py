"""A typed recipe survives the trip to JSON and back, unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import builder.image
import builder.recipe
from builder.errors import RecipeError
from builder.image.platform import Platform
from builder.recipe import load
from builder.recipe.serial import (
    fingerprint_of,
    from_json,
    parser_fingerprint,
    recipe_from_json,
    to_json,
)
from tests.shared import SHARED, shared_path

_CACHES = shutil.ignore_patterns("__pycache__", "*.lark.cache*")
CORPUS = SHARED / "conformance" / "buildkit-parser"
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
    if not CORPUS.is_dir():  # test_corpus_is_mostly_typed skips, naming the folder
        return cases
    for case in sorted((CORPUS / "positive").iterdir()):
        text = (case / "Dockerfile").read_bytes().decode("utf-8", "surrogateescape")
        try:
            load(text, filename=case.name)
        except RecipeError:
            continue
        cases.append((case.name, text))
    return cases


CASES = _typed_cases()


def test_corpus_is_mostly_typed() -> None:
    shared_path("conformance/buildkit-parser")
    assert len(CASES) > 25


@pytest.mark.parametrize(("name", "text"), CASES, ids=[c[0] for c in CASES])
def test_round_trip(name: str, text: str) -> None:
    recipe = load(text, filename=name)
    encoded = json.loads(json.dumps(to_json(recipe)))  # through real JSON text
    assert recipe_from_json(encoded) == recipe


def test_fingerprint_is_stable_and_covers_what_a_parse_depends_on(tmp_path: Path) -> None:
    assert parser_fingerprint() == parser_fingerprint()
    # A copy of the two packages a parse reads; copytree copies the recipe.lark symlink's
    # target, so the copy may be written to.
    packages = {}
    for module in (builder.recipe, builder.image):
        packages[module.__name__] = tmp_path / module.__name__
        shutil.copytree(Path(module.__file__).parent, packages[module.__name__], ignore=_CACHES)
    host = str(Platform.host())
    assert fingerprint_of(packages, host) == parser_fingerprint()  # the copy is what is installed
    # Any change to the grammar, the package's source or the image vocabulary changes it ...
    for package, name in (("builder.recipe", "recipe.lark"), ("builder.recipe", "typed.py"),
                          ("builder.image", "duration.py")):  # fmt: skip
        source = packages[package] / name
        original = source.read_bytes()
        source.write_bytes(original + b"\n")
        assert fingerprint_of(packages, host) != parser_fingerprint(), name
        source.write_bytes(original)
    # ... and so does the host's platform (the only one FROM --platform accepts) ...
    assert fingerprint_of(packages, "linux/s390x") != parser_fingerprint()
    # ... and nothing else in the folders does.
    (packages["builder.recipe"] / "notes.txt").write_text("not source")
    assert fingerprint_of(packages, host) == parser_fingerprint()


def test_unknown_shapes_are_rejected() -> None:
    with pytest.raises(KeyError):
        from_json({"@": "NotAType"})
    with pytest.raises(ValueError):
        recipe_from_json(["not", "a", "recipe"])
