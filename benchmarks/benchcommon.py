"""What several benchmark scripts share: timing a child process, and building the Go lab.

The scripts run as ``python benchmarks/<name>.py``, so this folder is on
``sys.path`` and they import this module by its plain name.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def run_child(cmd: list[str], env: dict[str, str],
              cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``cmd`` to completion; return (its result, wall seconds, CPU seconds).

    CPU is user + system of the children reaped meanwhile (``RUSAGE_CHILDREN``), so
    it counts the whole process tree of ``cmd`` (pytest's workers included) and
    nothing else, as long as the caller runs one child at a time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, wall, cpu


def go_binary(lab: Path) -> Path | None:
    """Compile the Go lab's test binary once (``go test -c``); None without a Go toolchain."""
    if shutil.which("go") is None:
        return None
    binary = Path(tempfile.mkdtemp(prefix="go-raft-")) / "raft.test"
    subprocess.run(["go", "test", "-c", "-o", str(binary)], cwd=lab, check=True)
    return binary
