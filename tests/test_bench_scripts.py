"""Every `make bench` script imports cleanly: bench/run.py runs its components with
check=False (one failing bench must not hide the others), so an import error there would
otherwise only show as a traceback in the middle of a bench log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_imports(script: str) -> None:
    # A fresh interpreter with bench/ first on sys.path, as `python bench/X.py` has it.
    code = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import {script.removesuffix('.py')}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
