"""The local backend: every job of a run in one pytest session on this machine.

By default that session forks its workers after collection
(:mod:`tools.stress.backends.forked`: one import, warm copy-on-write children);
``fork=False`` (or ``RAFTLAB_STRESS_XDIST=1``, and platforms without ``fork``)
uses ``pytest -n <workers>`` (pytest-xdist) instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from labtests.isolation.procs import dies_with
from labtests.overload import EXIT_INCONCLUSIVE
from tools.scratch import HeldFolder
from tools.stress.backends.base import BackendError, Job, RunOptions, RunResult, result_from_event
from tools.stress.backends.pytest_runs import job_files, plugin_command, tail, write_jobs_file


def fork_by_default() -> bool:
    """Forked workers unless ``RAFTLAB_STRESS_XDIST=1`` or the platform cannot fork."""
    return hasattr(os, "fork") and os.environ.get("RAFTLAB_STRESS_XDIST", "") != "1"


class XdistBackend:
    """Runs all jobs in one pytest session with the stress plugin: forked workers, or
    ``pytest -n <workers>`` (xdist) with ``fork=False``.

    The plugin, in the xdist controller, appends one JSON line per finished run to an
    events file; this backend tails it (polling every 100 ms) and calls ``on_result``.
    pytest runs in its own session so that Ctrl-C reaches only the stress CLI, which
    then cancels: SIGINT to the pytest process group (xdist's clean shutdown), then
    SIGTERM and SIGKILL if it does not end within a few seconds.
    """

    POLL = 0.1
    GRACE = 5.0
    MAX_RESTARTS = 3

    def __init__(self, workers: int, options: RunOptions, output_log: Path | None = None,
                 fork: bool | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.fork = fork_by_default() if fork is None else fork
        self.options = options
        self.output_log = output_log
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.notes: list[str] = []  # restarts of pytest after it died part-way
        # Where each session's folder (its jobs and events files) is made; None: the
        # temporary directory.  Grade puts it in the run folder (tools/grade/isolation.py).
        self.scratch_in: Path | None = None

    def command(self, jobs_file: Path, files: Sequence[str]) -> list[str]:
        if self.fork:
            return plugin_command(self.options, jobs_file, files, forks=self.workers)
        return plugin_command(self.options, jobs_file, files, workers=self.workers)

    def run(self, jobs: Sequence[Job], on_result: Callable[[RunResult], None]) -> None:
        """Run every job; if pytest itself dies part-way (an xdist internal error when a
        worker crashes on an overloaded machine), start it again for the runs that have no
        result yet, up to MAX_RESTARTS times as long as each session made progress (each
        restart is noted in ``notes``)."""
        remaining = list(jobs)
        restarts = 0
        while True:
            seen, rc = self._session(remaining, on_result, append=restarts > 0)
            if self._cancelled.is_set():
                return
            left = [job for job in remaining if job.index not in seen]
            if not left and rc in (0, 1, EXIT_INCONCLUSIVE):
                return
            # 0 passed, 1 failed, 6 only inconclusive (labtests.overload): runs, not errors.
            if left and seen and restarts < self.MAX_RESTARTS:
                restarts += 1
                self.notes.append(
                    f"pytest exited with status {rc} after {len(seen)} of {len(remaining)} "
                    f"runs; restarted it for the {len(left)} run(s) without a result "
                    f"(restart {restarts} of at most {self.MAX_RESTARTS})")
                remaining = left
                continue
            detail = ""
            if self.output_log and self.output_log.exists():
                detail = "\n" + tail(self.output_log.read_text(errors="replace"))
            done = len(jobs) - len(left)
            raise BackendError(
                f"pytest exited with status {rc} after {done} of {len(jobs)} runs{detail}")

    def _session(self, jobs: Sequence[Job], on_result: Callable[[RunResult], None],
                 append: bool) -> tuple[set[int], int | None]:
        """One pytest session for ``jobs``: the job indices that reported, and its status.

        The plugin numbers a session's jobs 0..n-1; results are mapped back to ``jobs``.
        """
        numbered = [Job(i, job.test, job.seed) for i, job in enumerate(jobs)]
        seen: set[int] = set()

        def report(result: RunResult) -> None:
            original = jobs[result.job].index if 0 <= result.job < len(jobs) else result.job
            seen.add(original)
            on_result(replace(result, job=original))

        # Held (tools/scratch.py): a folder of a killed command is reclaimed by the next.
        with HeldFolder.fresh("raftlab-stress-", self.scratch_in) as tmp:
            events = Path(tmp) / "events.jsonl"
            events.touch()
            jobs_file = Path(tmp) / "jobs.json"
            write_jobs_file(jobs_file, events, numbered, self.options.keep_passing_logs)
            files = job_files(numbered)
            out = (open(self.output_log, "ab" if append else "wb")  # noqa: SIM115
                   if self.output_log else subprocess.DEVNULL)
            try:
                with self._lock:
                    if self._cancelled.is_set():
                        return seen, None
                    self._proc = subprocess.Popen(
                        self.command(jobs_file, files), cwd=self.options.rootdir,
                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True, preexec_fn=dies_with(os.getpid()))
                try:
                    self._follow(events, report)
                except BaseException:
                    # Whoever takes the results failed (or a stop signal): the session
                    # would run on, unwatched, until this process exits.  End it now.
                    self._signal(signal.SIGKILL)
                    self._proc.wait()
                    raise
            finally:
                if out is not subprocess.DEVNULL:
                    out.close()
        return seen, self._proc.returncode

    def _follow(self, events: Path, on_result: Callable[[RunResult], None]) -> int:
        """Tail the events file until pytest has exited and every line is read."""
        assert self._proc is not None
        seen = 0
        pending = b""
        cancel_sent_at: float | None = None
        with open(events, "rb") as fh:
            while True:
                exited = self._proc.poll() is not None
                chunk = fh.read()
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            on_result(result_from_event(json.loads(line)))
                            seen += 1
                    continue
                if exited:
                    return seen
                if self._cancelled.is_set():
                    now = time.monotonic()
                    cancel_sent_at = cancel_sent_at or now
                    if now - cancel_sent_at > 2 * self.GRACE:
                        self._signal(signal.SIGKILL)
                    elif now - cancel_sent_at > self.GRACE:
                        self._signal(signal.SIGTERM)
                time.sleep(self.POLL)

    def _signal(self, sig: int) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def cancel(self) -> None:
        """First call: SIGINT (xdist shuts down cleanly); a second call: SIGKILL."""
        with self._lock:
            if self._cancelled.is_set():
                self._signal(signal.SIGKILL)
            else:
                self._cancelled.set()
                self._signal(signal.SIGINT)
