"""run(handoff=...): cleanup the supervisor does after the caller has its status."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from builder.sandbox import OverlayRoot, SandboxSpec, run
from builder.sandbox.handoff import Handoff


def _wait_for(path: Path) -> str:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
    time.sleep(0.05)  # written and closed
    return path.read_text()


def test_the_supervisor_removes_what_the_caller_moved(
    overlay: Callable[..., OverlayRoot], tmp_path: Path
) -> None:
    root = overlay()
    state = tmp_path / "state"
    state.mkdir()
    moved: list[tuple[int, bool]] = []
    done = tmp_path / "removed-by"

    def move(supervisor: int) -> bool:
        # Pid 1 has gone and the root is unmounted; the supervisor is alive, waiting.
        moved.append((supervisor, os.path.exists(f"/proc/{supervisor}")))
        return True

    def remove() -> None:  # in the supervisor: its pid, and its view of the root
        done.write_text(f"{os.getpid()} {os.getppid()} {os.path.ismount(state / 'root')}")

    status = run(SandboxSpec(root, ("true",), state_dir=state), handoff=Handoff(move, remove))
    assert status == 0
    [(supervisor, alive)] = moved
    assert alive and supervisor != os.getpid()
    pid, _, mounted = _wait_for(done).split()
    assert int(pid) == supervisor and mounted == "False"


def test_nothing_moved_nothing_removed(overlay: Callable[..., OverlayRoot], tmp_path: Path) -> None:
    done = tmp_path / "removed"
    seen: list[int] = []

    def move(supervisor: int) -> bool:
        seen.append(supervisor)
        return False

    status = run(
        SandboxSpec(overlay(), ("sh", "-c", "exit 4")),
        handoff=Handoff(move, lambda: done.write_text("ran")),
    )
    assert status == 4 and len(seen) == 1
    time.sleep(0.3)  # the supervisor has read "0" and exited
    assert not done.exists()


def test_a_command_not_found_still_hands_over(
    overlay: Callable[..., OverlayRoot], tmp_path: Path
) -> None:
    seen: list[int] = []
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        status = run(
            SandboxSpec(overlay(), ("no-such-command",), stderr=null),
            handoff=Handoff(lambda pid: bool(seen.append(pid)) or True, lambda: None),
        )
    finally:
        os.close(null)
    # The status is known (127) and the supervisor said it: the handoff is still made.
    assert status == 127 and len(seen) == 1


def test_the_removal_outlives_a_caller_that_exits_at_once(
    overlay: Callable[..., OverlayRoot], tmp_path: Path
) -> None:
    # `builder run --rm` exits as soon as it has its status: the supervisor, whose
    # parent-death signal is SIGKILL until then, must finish the removal after that.
    root = overlay()
    done = tmp_path / "removed"
    script = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from builder.sandbox import OverlayRoot, SandboxSpec, run
        from builder.sandbox.handoff import Handoff

        def remove():
            time.sleep(0.3)  # the caller is gone by now
            Path({str(done)!r}).write_text("done")

        root = OverlayRoot(
            lowers=tuple(Path(p) for p in {[str(p) for p in root.lowers]!r}),
            upper=Path({str(root.upper)!r}),
            work=Path({str(root.work)!r}),
        )
        os._exit(run(SandboxSpec(root, ("true",)), handoff=Handoff(lambda pid: True, remove)))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert _wait_for(done) == "done"
