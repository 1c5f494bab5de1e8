"""Two renderings of a syntax tree: BuildKit's AST dump and `builder parse --json`.

`dump` writes the format of BuildKit's parser test corpus (the `result` files), so new
cases can be checked against BuildKit and added in the same format. `to_json` gives the
objects of `builder parse --json`, shaped like the PyPI `dockerfile` package's Command.
"""

from __future__ import annotations

import re

from builder.recipe.gostr import go_lower, go_quote, go_trim_space
from builder.recipe.tree import Node, SyntaxTree

_WHITESPACE = re.compile(r"[\t\x0b\x0c\r ]+")


def _keyword_as_written(node: Node) -> str:
    # Node.cmd is upper-cased; the dump lower-cases the keyword exactly as written.
    return _WHITESPACE.split(go_trim_space(node.original), maxsplit=1)[0]


def _dump_node(node: Node) -> str:
    text = go_lower(_keyword_as_written(node))
    if node.cmd == "ONBUILD":
        # BuildKit's ONBUILD node has no flags of its own (syntax.py rejects them).
        return f"{text} ({_dump_node(node.inner)})" if node.inner else text
    if node.flags:
        text += " [" + " ".join(go_quote(flag) for flag in node.flags) + "]"
    for value in node.value:
        text += " " + go_quote(value)
    return text


def dump(tree: SyntaxTree) -> str:
    """One `(keyword ["--flag"] "arg" ...)` line per instruction, as BuildKit's Dump."""
    return "".join(f"({_dump_node(node)})\n" for node in tree.nodes)


def _values(node: Node) -> list[str]:
    target = node.inner if node.cmd == "ONBUILD" and node.inner else node
    if target.cmd in ("ENV", "LABEL"):
        # Drop the separators of the (key, value, sep) triples: name, value, name, ...
        return [v for i, v in enumerate(target.value) if i % 3 != 2]
    return list(node.value)


def to_json(tree: SyntaxTree) -> list[dict[str, object]]:
    """The `builder parse --json` objects: one per instruction."""
    return [
        {
            "cmd": node.cmd,
            "sub_cmd": node.sub_cmd,
            "json": node.json,
            "original": node.original,
            "start_line": node.start_line,
            "end_line": node.end_line,
            "flags": list(node.flags),
            "value": _values(node),
            "heredocs": [
                {"name": h.name, "file_descriptor": h.file_descriptor, "content": h.content}
                for h in node.heredocs
            ],
        }
        for node in tree.nodes
    ]
