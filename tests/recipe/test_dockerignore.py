""".dockerignore rules. Cases follow Docker's documented examples and moby/patternmatcher's
behaviour; the walker shortcuts are checked against brute force on generated trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import RecipeError
from builder.recipe.dockerignore import DockerIgnore, ignore_file_for

DOCS_EXAMPLE = """
# comment
*/temp*
*/*/temp*
temp?
"""


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("somedir/temporary.txt", True),
        ("somedir/temp", True),
        ("somedir/subdir/temporary.txt", True),
        ("tempa", True),
        ("tempb", True),
        ("temp", False),
        ("temporary.txt", False),
        ("a/b/c/temp", False),
        ("# comment", False),
    ],
)
def test_docs_example(path: str, excluded: bool) -> None:
    assert DockerIgnore.parse(DOCS_EXAMPLE).excludes(path) is excluded


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        ("*.md\n!README.md", "README.md", False),
        ("*.md\n!README.md", "CHANGES.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README-x.md", False),
        ("*.md", "docs/a.md", False),  # `*` does not cross `/`
        ("**/*.md", "docs/deep/a.md", True),
        ("**/*.md", "a.md", True),
        ("docs/**", "docs/x/y", True),
        ("docs/**", "docs", False),
        ("**", "anything/at/all", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("/build", "build/out.o", True),  # parent match excludes children
        ("./build/", "build", True),
        ("build//sub/../x", "build/x", True),
        ("node_modules\n!node_modules/keep.js", "node_modules/keep.js", False),
        ("node_modules\n!node_modules/keep.js", "node_modules/other.js", True),
        ("file[0-9].txt", "file7.txt", True),
        ("file[0-9].txt", "filex.txt", False),
        ("file?.txt", "file/.txt", False),
        ("a.b", "axb", False),  # `.` is literal
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "a.txt", False),
        ("  spaced.txt  ", "spaced.txt", True),
        ("!x\nx", "x", True),
    ],
)
def test_rules(patterns: str, path: str, excluded: bool) -> None:
    assert DockerIgnore.parse(patterns).excludes(path) is excluded


def test_bad_patterns() -> None:
    with pytest.raises(RecipeError, match='illegal exclusion pattern: "!"'):
        DockerIgnore.parse("a\n!\n")
    with pytest.raises(RecipeError) as info:
        DockerIgnore.parse("ok\nfile[.txt\n")
    assert info.value.location is not None and info.value.location.line == 2


def test_walker_hints() -> None:
    ignore = DockerIgnore.parse("src/**/*.pyc\nbuild\n!build/keep")
    assert ignore.may_exclude_within("src/pkg")
    assert not ignore.may_exclude_within("docs")
    assert ignore.may_exclude_within("build/sub")
    assert ignore.may_include_within("build")
    assert not ignore.may_include_within("src")


SEGMENTS = st.sampled_from(["a", "b", "ab", "x.md", "build", "keep"])
PATTERN_SEGMENTS = st.sampled_from(["a", "b", "*", "a*", "?", "**", "*.md", "build", "[ab]"])
PATTERNS = st.lists(
    st.tuples(st.booleans(), st.lists(PATTERN_SEGMENTS, min_size=1, max_size=3)),
    min_size=1,
    max_size=4,
)
PATHS = st.lists(st.lists(SEGMENTS, min_size=1, max_size=4), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(PATTERNS, PATHS)
def test_walker_hints_are_safe(
    patterns: list[tuple[bool, list[str]]], paths: list[list[str]]
) -> None:
    text = "\n".join(("!" if neg else "") + "/".join(segs) for neg, segs in patterns)
    ignore = DockerIgnore.parse(text)
    for parts in paths:
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            path = "/".join(parts)
            # The shortcut may only say "nothing to test" when brute force agrees.
            if not ignore.may_exclude_within(directory):
                assert not ignore.excludes(path), (text, directory, path)
            if ignore.excludes(directory) and not ignore.may_include_within(directory):
                assert ignore.excludes(path), (text, directory, path)


def test_ignore_file_for(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    recipe = tmp_path / "app.Dockerfile"
    recipe.write_text("FROM scratch\n")
    assert ignore_file_for(recipe, context) is None
    (context / ".dockerignore").write_text("x\n")
    assert ignore_file_for(recipe, context) == context / ".dockerignore"
    (tmp_path / "app.Dockerfile.dockerignore").write_text("y\n")
    assert ignore_file_for(recipe, context) == tmp_path / "app.Dockerfile.dockerignore"
