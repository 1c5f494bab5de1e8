"""The import rules of ARCHITECTURE.md, enforced: which package of builder/ may import which.

The table below is the rule; ARCHITECTURE.md shows the same table to readers, and a test
checks that the two agree, so the map cannot drift from the code. Every import counts:
module level, inside functions, and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "builder"

# package -> the packages it may import besides itself. Pure vocabularies at the bottom,
# the engine and runtime above them, the CLI on top; nothing imports the CLI.
MAY_IMPORT: dict[str, set[str]] = {
    "record": set(),
    "errors": set(),
    "config": {"errors"},
    "image": {"errors"},
    "recipe": {"errors", "image"},
    "layer": {"errors", "image"},
    "store": {"errors", "image", "layer"},
    "sandbox": {"errors"},
    "engine": {"errors", "image", "layer", "recipe", "sandbox", "store"},
    "registry": {"errors", "config", "image", "layer", "store"},
    "runtime": {"errors", "image", "layer", "sandbox", "store"},
    "cli": {"errors", "config", "image", "layer", "recipe", "sandbox", "store", "engine",
            "registry", "runtime"},
}  # fmt: skip
# Modules at the package's top level other than errors.py: the facade and the entry point.
TOP_LEVEL = {"__init__": set(MAY_IMPORT), "__main__": {"cli"}}
# Below every package: the cheap dataclass decorator, which any module may use.
FOUNDATION = {"record"}


def _unit(module: Path) -> str:
    """The package (or top-level module) a source file belongs to."""
    parts = module.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imported_units(module: Path) -> set[tuple[str, int]]:
    """Every builder package this file imports, with the line it does so on."""
    tree = ast.parse(module.read_text(), str(module))
    package_parts = module.relative_to(REPO).with_suffix("").parts[:-1]
    if module.name == "__init__.py":
        package_parts = module.relative_to(REPO).parent.parts
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package_parts[: len(package_parts) - node.level + 1]
                names = [".".join((*base, node.module or ""))]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "builder" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_is_in_the_table() -> None:
    units = {_unit(m) for m in _sources()}
    assert units - set(MAY_IMPORT) - set(TOP_LEVEL) == set()


@pytest.mark.parametrize("module", _sources(), ids=lambda m: str(m.relative_to(PACKAGE)))
def test_imports_follow_the_table(module: Path) -> None:
    unit = _unit(module)
    allowed = TOP_LEVEL.get(unit, MAY_IMPORT.get(unit, set())) | {unit} | FOUNDATION
    wrong = sorted(f"line {line}: builder.{target}" for target, line in
                   _imported_units(module) if target not in allowed)  # fmt: skip
    assert not wrong, (
        f"{module.relative_to(REPO)} ({unit}) may import only {sorted(allowed)}: {wrong}"
    )


def test_nothing_imports_the_cli() -> None:
    offenders = [
        str(m.relative_to(REPO))
        for m in _sources()
        if _unit(m) not in ("cli", "__main__")
        and any(target == "cli" for target, _ in _imported_units(m))
    ]
    assert offenders == []


def _documented_table() -> dict[str, set[str]]:
    """The `| package | ... | may import |` table of ARCHITECTURE.md."""
    rows: dict[str, set[str]] = {}
    for line in (REPO / "ARCHITECTURE.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"`[a-z_]+(/|\.py)`", cells[0]):
            continue
        name = cells[0].strip("`").removesuffix("/").removesuffix(".py")
        rows[name] = set(re.findall(r"`([a-z_]+)`", cells[-1]))
    return rows


def test_architecture_md_shows_this_table() -> None:
    assert _documented_table() == MAY_IMPORT
