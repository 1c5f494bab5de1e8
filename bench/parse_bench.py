"""Recipe parser speed: a realistic 1,500-instruction recipe, median of 5 runs; long lines.

Times parse_syntax, the typed load (builder.recipe.load) when it exists, and the PyPI
`dockerfile` package (BuildKit's Go parser) on the same text. Then long lines: a LABEL of
256 KB and of 1 MB, parsed, typed and expanded (what build and lint do), as seconds per MB;
the 1 MB line is measured against the 256 KB one of the same run, so the figure is the
shape of the cost, not this machine's speed (linear: about 1; quadratic: about 4).
Run: python bench/parse_bench.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.recipe.syntax import parse_syntax

INSTRUCTIONS = 1500
BUDGET = 0.15  # seconds for parse_syntax on 1,500 instructions
LONG_LINE_SIZES = (256 << 10, 1 << 20)  # the reference, then the line measured against it
LONG_LINE_RATIO = 2.0  # per-MB cost of 1 MB over 256 KB: linear gives ~1, quadratic ~4


def make_recipe(count: int = INSTRUCTIONS) -> str:
    """Stages that look like real ones: ARG/FROM, RUN with continuations and mounts,
    COPY --from, ENV/LABEL pairs, heredocs, JSON CMD/ENTRYPOINT, comments."""
    blocks = [
        "# syntax=docker/dockerfile:1\n",
        "ARG BASE=debian:12\n",
    ]
    emitted = 1
    stage = 0
    while emitted < count:
        blocks.append(f"\n# stage {stage}\nFROM ${{BASE}} AS s{stage}\n")
        emitted += 1
        body = [
            f"ENV APP_HOME=/srv/app{stage} PATH=/srv/app{stage}/bin:$PATH LANG=C.UTF-8\n",
            f'LABEL org.opencontainers.image.title="app {stage}" version="1.{stage}"\n',
            "WORKDIR /srv/app\n",
            "RUN --mount=type=cache,target=/var/cache/apt \\\n"
            "    apt-get update && \\\n"
            "    apt-get install -y --no-install-recommends curl ca-certificates && \\\n"
            "    rm -rf /var/lib/apt/lists/*\n",
            f"COPY --from=s{max(stage - 1, 0)} --chown=app:app /srv/app /srv/app\n",
            'COPY ["requirements.txt", "setup.cfg", "./"]\n',
            "RUN <<EOF\nset -eux\npython -m venv /srv/venv\n"
            "/srv/venv/bin/pip install -r requirements.txt\nEOF\n",
            "EXPOSE 8080 8443/tcp\n",
            "USER app:app\n",
            "HEALTHCHECK --interval=30s --timeout=3s CMD curl -f http://localhost:8080/ || exit 1"
            "\n",
            'ENTRYPOINT ["/srv/venv/bin/python", "-m", "app"]\n',
            'CMD ["--port", "8080"]\n',
        ]
        for line in body:
            if emitted >= count:
                break
            blocks.append(line)
            emitted += 1
        stage += 1
    return "".join(blocks)


def long_label(size: int) -> str:
    """A recipe whose LABEL line is `size` bytes, in three values that each take their own
    path through the expander: one unquoted word, a quoted value with blanks, and a value
    with escaped blanks."""
    third = size // 3
    plain = ("lorem-ipsum-" * (third // 12 + 1))[:third]
    quoted = ("lorem ipsum dolor sit amet " * (third // 27 + 1))[:third]
    escaped = ("lorem\\ ipsum\\ " * (third // 14 + 1))[:third]
    return f'FROM scratch\nLABEL a={plain} b="{quoted}" c={escaped}\n'


def parse_and_expand(text: str) -> None:
    """What build and lint do to a line: parse, type, and expand it against a scope."""
    from builder.recipe import load, resolve

    recipe = load(text)
    for instr in recipe.instructions:
        resolve(instr, {"X": "x"}, recipe.escape)


def long_lines() -> float:
    """Seconds per MB for each size, and the ratio of the last to the first."""
    per_mb = []
    for size in LONG_LINE_SIZES:
        text = long_label(size)
        seconds = median_time(lambda t=text: parse_and_expand(t), runs=3)  # type: ignore[misc]
        per_mb.append(seconds / (len(text) / 1e6))
        print(f"long LABEL line {size >> 10:>5} KB: {seconds:7.3f} s, {per_mb[-1]:6.3f} s/MB")
    ratio = per_mb[-1] / per_mb[0]
    ok = ratio < LONG_LINE_RATIO
    print(
        f"per-MB cost, {LONG_LINE_SIZES[-1] >> 10} KB over {LONG_LINE_SIZES[0] >> 10} KB:"
        f" {ratio:.2f} (linear ~1, quadratic ~4; limit {LONG_LINE_RATIO}): {'ok' if ok else 'OVER'}"
    )
    return ratio


def median_time(fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    text = make_recipe()
    tree = parse_syntax(text)  # also warms the cached grammar (loaded once per process)
    assert len(tree.nodes) == INSTRUCTIONS, len(tree.nodes)
    rows = [("parse_syntax", median_time(lambda: parse_syntax(text)))]
    from builder.recipe import load

    load(text)
    rows.append(("typed load (builder.recipe.load)", median_time(lambda: load(text))))
    try:
        import dockerfile
    except ImportError:
        print("dockerfile (PyPI) not installed: no Go reference")
    else:
        rows.append(
            ("dockerfile.parse_string (Go)", median_time(lambda: dockerfile.parse_string(text)))
        )
    reference = rows[-1][1] if rows[-1][0].startswith("dockerfile") else None
    print(f"{INSTRUCTIONS} instructions, {len(text.splitlines())} lines, median of 5")
    print(f"{'parser':<36} {'seconds':>9} {'vs Go':>8}")
    for name, seconds in rows:
        ratio = f"{seconds / reference:7.1f}x" if reference else "      -"
        print(f"{name:<36} {seconds:9.4f} {ratio}")
    ok = rows[1][1] < BUDGET  # the budget: parsing *and* typing
    print(f"budget {BUDGET:.2f} s for parsing and typing (load): {'ok' if ok else 'OVER'}")
    linear = long_lines() < LONG_LINE_RATIO
    return 0 if ok and linear else 1


if __name__ == "__main__":
    raise SystemExit(main())
