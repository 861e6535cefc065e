"""Run a submission's graded tests in separate, limited processes, part by part.

Student code never runs in the grader's process.  Each part of a submission is one
``pytest -n <workers>`` run driven by the stress runner's backend
(:class:`tools.stress.backends.xdist.XdistBackend`), with three extra fences:

* **Memory and core dumps**: the pytest command is prefixed with this module's own
  small exec wrapper (``python -m tools.grade.isolation --memory-mb N -- cmd...``),
  which sets ``RLIMIT_AS`` (address space) and ``RLIMIT_CORE`` = 0 and then *execs*
  pytest; xdist's workers inherit the limits.  Address space is not memory in use:
  every thread reserves an 8 MiB stack (the reference Raft peaks near 450 threads,
  4.6 GB of address space, 50 MB resident, in TestBackup2B), hence a generous default.
  A submission that allocates too much gets ``MemoryError`` (or dies), which fails
  only the test that was running.
* **Time**: each run has pytest-timeout's per-run watchdog (a hang fails that run
  with a stack dump); the whole part has a wall-clock budget, after which the
  remaining runs count as failed ("part time budget exhausted"); and if no run at
  all finishes for longer than the per-run limit plus a grace period (a hang the
  watchdog could not interrupt), the grader kills pytest.
* **The framework is the installed one**: pytest runs with the graded test files by
  absolute path and an explicit ``--rootdir`` (the framework's), from a scratch
  working directory, so nothing in a submission's folder (a ``conftest.py``, its own
  ``labtests``/``labrpc``) is imported; the submission is importable only through
  ``--raft-impl=<path>``.  Crashed workers are restarted by xdist
  (``--max-worker-restart`` is raised so that every crashing test is still tried).

The scores are computed by the grader from the per-run results this module returns.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.stress.backends.base import Backend, BackendError, Job, RunOptions, RunResult
from tools.stress.backends.xdist import XdistBackend

BUDGET_REASON = "part time budget exhausted"
STALL_GRACE_S = 60.0


@dataclass(frozen=True)
class Limits:
    """Resource limits for the processes that run student code."""

    memory_mb: int = 16384
    per_run_timeout_s: float = 150.0


def wrapper_command(limits: Limits, python: str = sys.executable) -> list[str]:
    """The prefix that runs a command under ``limits`` (see :func:`main`)."""
    return [python, "-m", "tools.grade.isolation", "--memory-mb", str(limits.memory_mb), "--"]


class IsolatedBackend(XdistBackend):
    """The stress runner's xdist backend, run under the wrapper, away from the submission.

    ``options.rootdir`` is the scratch directory used as pytest's working directory;
    ``framework_root`` is the real pytest rootdir (where the graded test files are).
    """

    def __init__(self, workers: int, options: RunOptions, framework_root: Path, limits: Limits,
                 output_log: Path | None = None) -> None:
        super().__init__(workers, options, output_log=output_log)
        self.framework_root = framework_root
        self.limits = limits

    def command(self, jobs_file: Path, files: Sequence[str]) -> list[str]:
        absolute = [str(self.framework_root / f) for f in files]
        cmd = super().command(jobs_file, absolute)
        # pytest's own command line starts after "python -m pytest".
        head, rest = cmd[:3], cmd[3:]
        return (wrapper_command(self.limits) + head
                + [f"--rootdir={self.framework_root}", "--max-worker-restart=1000",
                   "-p", "no:cacheprovider"] + rest)


def failed_result(job: Job, reason: str) -> RunResult:
    """A run that did not happen (or did not report), counted as failed with ``reason``."""
    return RunResult(job=job.index, test=job.test, seed=job.seed, outcome="failed",
                     duration=0.0, worker="-", loadavg=(), message=reason)


def run_part(jobs: Sequence[Job], backend: Backend, budget_s: float,
             stall_s: float, on_result: Callable[[RunResult], None] | None = None,
             ) -> tuple[list[RunResult], float]:
    """Run ``jobs`` on ``backend`` within ``budget_s`` seconds of wall-clock time.

    ``on_result`` sees each accepted result as it arrives (from the backend's thread).
    Returns one result per job (in job order) and the elapsed time.  Jobs without a
    result count as failed: with the budget reason when the budget ran out, with a
    "killed" reason when nothing finished for ``stall_s`` seconds, or with the
    backend's error (pytest itself failed).
    """
    results: dict[int, RunResult] = {}
    lock = threading.Lock()
    state: dict[str, Any] = {"last": time.monotonic(), "why": None}
    done = threading.Event()
    error: list[BaseException] = []

    def accept(result: RunResult) -> None:
        accepted = False
        with lock:
            # The first report of a job wins; unknown or repeated job indices are ignored,
            # and so is whatever finishes after the grader stopped the part (those runs
            # keep the stop's reason, not e.g. the KeyboardInterrupt of the shutdown).
            if state["why"] is None and result.job in wanted and result.job not in results:
                results[result.job] = result
                accepted = True
            state["last"] = time.monotonic()
        if accepted and on_result is not None:
            on_result(result)

    def target() -> None:
        try:
            backend.run(jobs, accept)
        except BaseException as exc:  # reported as the reason of the missing runs
            error.append(exc)
        finally:
            done.set()

    wanted = {job.index for job in jobs}
    started = time.monotonic()
    thread = threading.Thread(target=target, name="raftlab-grade-backend", daemon=True)
    thread.start()
    try:
        _watch(backend, started, budget_s, stall_s, done, lock, state, results, wanted)
    except KeyboardInterrupt:
        # pytest runs in its own session and would outlive the grader: stop it first.
        backend.cancel()
        backend.cancel()
        thread.join(timeout=10)
        raise
    thread.join(timeout=30)
    elapsed = time.monotonic() - started
    reason = state["why"]
    if reason is None and error:
        reason = f"the test process failed: {_first_line(error[0])}"
    if reason is None:
        reason = "no result reported for this run"
    out = [results.get(job.index) or failed_result(job, reason) for job in jobs]
    return out, elapsed


def _watch(backend: Backend, started: float, budget_s: float, stall_s: float,
           done: threading.Event, lock: threading.Lock, state: dict[str, Any],
           results: dict[int, RunResult], wanted: set[int]) -> None:
    """Stop the part when its budget is spent or nothing finishes for ``stall_s``."""
    stopped_at: float | None = None
    while not done.wait(0.2):
        now = time.monotonic()
        why = None
        with lock:
            idle = now - state["last"]
            if state["why"] is None and len(results) < len(wanted):
                if now - started > budget_s:
                    why = BUDGET_REASON + f" ({budget_s:.0f} s)"
                elif idle > stall_s:
                    why = (f"no run finished for {stall_s:.0f} s (a hang the per-run "
                           "watchdog could not interrupt); the grader killed the tests")
                state["why"] = why
        if why is not None:
            stopped_at = now
            backend.cancel()
        elif stopped_at is not None and now - stopped_at > 3 * XdistBackend.GRACE:
            backend.cancel()  # a second cancel kills the process group
            stopped_at = now


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, BackendError) and "\n" in text:
        head, _, tail = text.partition("\n")
        last = [ln for ln in tail.splitlines() if ln.strip()]
        return head + (f" ({last[-1].strip()})" if last else "")
    return text.splitlines()[0] if text else type(exc).__name__


def apply_limits(memory_mb: int) -> None:
    """Limit this process (and its future children) to ``memory_mb`` MiB of address space."""
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main(argv: list[str] | None = None) -> int:
    """Exec wrapper: ``python -m tools.grade.isolation --memory-mb N -- cmd args...``."""
    parser = argparse.ArgumentParser(prog="python -m tools.grade.isolation",
                                     description="run a command under raftlab's grading limits")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    apply_limits(args.memory_mb)
    # glibc reserves up to 8 x cores malloc arenas of 64 MiB address space each, which
    # count against RLIMIT_AS without being used; two are plenty for these tests.
    env = dict(os.environ, MALLOC_ARENA_MAX=os.environ.get("MALLOC_ARENA_MAX", "2"))
    os.execvpe(command[0], command, env)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
