"""How a backend runs jobs through pytest: the stress plugin's command line and files.

Both the local backend (one ``pytest -n N`` for all jobs) and the Dask worker (one
``pytest`` per job) run the graded tests the same way: a jobs file lists the
runs, ``-p tools.stress.pytest_plugin --stress-jobs FILE`` repeats and seeds
them, and the plugin appends one JSON line per finished run to an events file.
Collection (which node ids a selection means) goes through the same plugin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.scratch import HeldFolder
from tools.stress.backends.base import BackendError, Job, RunOptions

PLUGIN = "tools.stress.pytest_plugin"
FORKS_PLUGIN = "tools.stress.backends.forked"


def pytest_command(python: str = sys.executable) -> list[str]:
    return [python, "-m", "pytest"]


def plugin_command(options: RunOptions, jobs_file: Path, files: Sequence[str], *,
                   workers: int | None = None, forks: int | None = None,
                   python: str = sys.executable) -> list[str]:
    """The pytest command that runs the jobs in ``jobs_file`` with the stress plugin.

    With ``forks`` one pytest collects once and forks that many warm workers
    (:mod:`tools.stress.backends.forked`, the local backend); with ``workers`` it
    spreads them over ``pytest -n workers`` (xdist); with neither, one process runs
    them in order (a cluster backend's one-run task).
    """
    cmd = pytest_command(python) + ["-p", PLUGIN, "--stress-jobs", str(jobs_file)]
    if forks is not None:
        cmd += ["-p", FORKS_PLUGIN, f"--stress-forks={forks}", "-p", "no:xdist"]
    elif workers is not None:
        cmd += ["-n", str(workers), "--dist", "load"]
    cmd += ["-q", "-rN"]
    if options.timeout:
        cmd += ["--timeout", str(options.timeout)]
    return cmd + options.harness_args() + list(files)


def write_jobs_file(path: Path, events: Path, jobs: Sequence[Job], keep_passing: bool) -> None:
    """The plugin's input: where to append events, and the exact runs to do."""
    path.write_text(json.dumps({
        "events": str(events),
        "keep_passing": keep_passing,
        "jobs": [{"index": j.index, "test": j.test, "seed": j.seed} for j in jobs],
    }), encoding="utf-8")


def job_files(jobs: Sequence[Job]) -> list[str]:
    """The files holding the jobs' tests.  Whole files are run and the plugin selects
    the exact items (a node id with parameters would not match once the repetition
    parameter is added)."""
    return sorted({job.test.split("::", 1)[0] for job in jobs})


def collect(selection: Sequence[str], *, cwd: Path | None = None,
            timeout: float = 120) -> tuple[Path, list[str]]:
    """Ask pytest which node ids ``selection`` (pytest args: paths, -k, -m...) selects.

    Returns (rootdir, node ids).  Raises BackendError with pytest's output when
    collection fails, and when nothing is selected.
    """
    with HeldFolder.fresh("raftlab-collect-") as tmp:  # reclaimed if killed: tools/scratch.py
        out = Path(tmp) / "collected.json"
        cmd = pytest_command() + ["--collect-only", "-q", "-p", PLUGIN,
                                  "--stress-collect", str(out), *selection]
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode not in (0, 5) or not out.exists():
            raise BackendError(
                f"collecting tests failed (pytest exit {proc.returncode}):\n"
                f"{tail(proc.stdout + proc.stderr)}")
        data = json.loads(out.read_text(encoding="utf-8"))
    if not data["tests"]:
        raise BackendError("no tests selected by: " + " ".join(selection))
    return Path(data["rootdir"]), list(data["tests"])


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
