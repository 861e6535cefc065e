"""A stress run's output folder: results.jsonl, failure logs, rerun.sh and summary.txt.

Everything here is written as results arrive (each line flushed), so the folder
is valid after Ctrl-C or a crash of the runner too::

    results.jsonl                 one line per finished run (a rerun of an
                                  inconclusive run is a line of its own, attempt > 1)
    failures/<test>-s<seed>.log   seed, error, rerun command and log of each failure
    inconclusive/...              the same for runs that failed on an overloaded machine
    passed/...                    logs of passing runs, with --archive
    rerun.sh                      the rerun command of every failure
    summary.txt                   the final table and bounds

Rerun commands come from :func:`labtests.rerun.rerun_command`, the one builder
every failure message uses, with the debug log on.  Only a test outside the
graded suites (one's own suite, such as the project's fake ones) has no graded
name to rerun by; it gets a pytest command on its node id instead.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from labtests.rerun import rerun_command
from tools.selection import catalog, part_of_file
from tools.stress.backends.base import RunOptions, RunResult


def graded_name(test: str) -> str | None:
    """The graded test a node id names (``labtests/test_2b.py::test_backup_2b``), else None."""
    path, _, name = test.partition("::")
    part = part_of_file(path)
    if part is None or name not in catalog()[part]:
        return None
    return name


def rerun_for(test: str, seed: int, options: RunOptions) -> str:
    """One shell command that reruns exactly ``test`` with ``seed``, debug log on."""
    name = graded_name(test)
    if name is not None:
        return rerun_command(name, seed, options.harness, debug=True)
    args = [sys.executable, "-m", "pytest", test, f"--seed={seed}"]
    harness = options.harness_args()
    if "--raft-debug" not in harness:
        harness.append("--raft-debug")
    return f"cd {shlex.quote(str(options.rootdir))} && " + shlex.join(args + harness)


def short_name(test: str) -> str:
    """``labtests/test_2a.py::test_x`` -> ``test_2a.py::test_x`` (for tables and bars)."""
    path, _, rest = test.partition("::")
    return f"{Path(path).name}::{rest}" if rest else test


def safe_file_part(text: str) -> str:
    """``text`` as a piece of a file name (the grader names batch folders with it too)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120]


class ResultFiles:
    """Writes one stress run's output folder (see the module docstring)."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "failures").mkdir(exist_ok=True)
        self.results_path = outdir / "results.jsonl"
        self.failures_dir = outdir / "failures"
        self.rerun_path = outdir / "rerun.sh"
        self._results = open(self.results_path, "a", encoding="utf-8")  # noqa: SIM115

    def add(self, result: RunResult, rerun: str, attempt: int = 1) -> Path | None:
        """Record one finished run; returns the path of its log, if one was kept.

        ``attempt`` is 1 for a planned run and 2, 3... for reruns of an inconclusive one.
        """
        log_path: Path | None = None
        if result.failed:
            log_path = self._write_log("failures", result, rerun)
            with open(self.rerun_path, "a", encoding="utf-8") as fh:
                fh.write(f"# {result.test} seed {result.seed}: {result.message}\n{rerun}\n")
        elif result.inconclusive and result.log is not None:
            log_path = self._write_log("inconclusive", result, rerun)
        elif result.log is not None:
            log_path = self._write_log("passed", result, rerun)
        line: dict[str, Any] = {
            "test": result.test, "seed": result.seed, "outcome": result.outcome,
            "duration": result.duration, "worker": result.worker,
            "loadavg": list(result.loadavg), "job": result.job,
            "message": result.message, "log": str(log_path) if log_path else None,
            "attempt": attempt, "properties": result.properties,
        }
        self._results.write(json.dumps(line) + "\n")
        self._results.flush()
        return log_path

    def _write_log(self, sub: str, result: RunResult, rerun: str) -> Path:
        folder = self.outdir / sub
        folder.mkdir(exist_ok=True)
        path = folder / f"{safe_file_part(short_name(result.test))}-s{result.seed}.log"
        header = [
            f"test:     {result.test}",
            f"seed:     {result.seed}",
            f"outcome:  {result.outcome} after {result.duration:.2f} s on {result.worker}, "
            f"load average {' '.join(f'{x:.2f}' for x in result.loadavg)}",
            f"error:    {result.message or '-'}",
            f"rerun:    {rerun}",
            f"view:     {rerun} 2>&1 | raftlab logs -c <peers>",
            "",
        ]
        path.write_text("\n".join(header) + "\n" + (result.log or ""), encoding="utf-8")
        return path

    def write_summary(self, table_text: str, lines: list[str]) -> None:
        with open(self.outdir / "summary.txt", "w", encoding="utf-8") as fh:
            fh.write(table_text)
            fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        self._results.close()


def results_of(path: Path | str) -> list[dict[str, Any]]:
    """Read a results.jsonl file (a helper for other tools and tests)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
