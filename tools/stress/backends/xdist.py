"""The local backend: every job of a run in one ``pytest -n <workers>`` on this machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from labtests.overload import EXIT_INCONCLUSIVE
from tools.stress.backends.base import BackendError, Job, RunOptions, RunResult, result_from_event
from tools.stress.backends.pytest_runs import job_files, plugin_command, tail, write_jobs_file


class XdistBackend:
    """Runs all jobs in one ``pytest -n <workers>`` process with the stress plugin.

    The plugin, in the xdist controller, appends one JSON line per finished run to an
    events file; this backend tails it (polling every 100 ms) and calls ``on_result``.
    pytest runs in its own session so that Ctrl-C reaches only the stress CLI, which
    then cancels: SIGINT to the pytest process group (xdist's clean shutdown), then
    SIGTERM and SIGKILL if it does not end within a few seconds.
    """

    POLL = 0.1
    GRACE = 5.0

    def __init__(self, workers: int, options: RunOptions, output_log: Path | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.options = options
        self.output_log = output_log
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def command(self, jobs_file: Path, files: Sequence[str]) -> list[str]:
        return plugin_command(self.options, jobs_file, files, workers=self.workers)

    def run(self, jobs: Sequence[Job], on_result: Callable[[RunResult], None]) -> None:
        with tempfile.TemporaryDirectory(prefix="raftlab-stress-") as tmp:
            events = Path(tmp) / "events.jsonl"
            events.touch()
            jobs_file = Path(tmp) / "jobs.json"
            write_jobs_file(jobs_file, events, jobs, self.options.keep_passing_logs)
            files = job_files(jobs)
            out = (open(self.output_log, "wb") if self.output_log  # noqa: SIM115
                   else subprocess.DEVNULL)
            try:
                with self._lock:
                    if self._cancelled.is_set():
                        return
                    self._proc = subprocess.Popen(
                        self.command(jobs_file, files), cwd=self.options.rootdir,
                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True)
                seen = self._follow(events, on_result)
            finally:
                if out is not subprocess.DEVNULL:
                    out.close()
            rc = self._proc.returncode
            # 0 passed, 1 failed, 6 only inconclusive (labtests.overload): runs, not errors.
            if not self._cancelled.is_set() and (seen < len(jobs)
                                                 or rc not in (0, 1, EXIT_INCONCLUSIVE)):
                detail = ""
                if self.output_log and self.output_log.exists():
                    detail = "\n" + tail(self.output_log.read_text(errors="replace"))
                raise BackendError(
                    f"pytest exited with status {rc} after {seen} of {len(jobs)} runs{detail}")

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
