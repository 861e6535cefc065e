"""Where stress runs execute: a small Backend interface and the local pytest-xdist backend.

The CLI plans *jobs* (one test node id + one seed each) and hands them to a backend;
the backend calls ``on_result`` once per finished run, from its own thread.  Nothing
else crosses the interface, so a cluster backend (e.g. Dask, one ``pytest <nodeid>
--seed S`` per task) can be added without touching the CLI, the display or the
output files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

PLUGIN = "tools.stress_plugin"


@dataclass(frozen=True)
class Job:
    """One run to do: test ``test`` (a pytest node id) with seed ``seed``."""

    index: int
    test: str
    seed: int


@dataclass(frozen=True)
class RunOptions:
    """Options shared by every job of a stress run (what the rerun command repeats too)."""

    impl: str | None = None
    timeout: float | None = None
    debug: bool = False
    keep_passing_logs: bool = False
    pytest_args: tuple[str, ...] = ()
    rootdir: Path = field(default_factory=Path.cwd)

    def harness_args(self) -> list[str]:
        """pytest options for the raftlab harness (shared with the rerun command)."""
        # One token per option (--opt=value): pytest parses the command line before the
        # plugin that defines an option is loaded, and would take a separate value that
        # is an existing path for a test path (and change the rootdir).
        args: list[str] = []
        if self.impl:
            args.append(f"--raft-impl={self.impl}")
        if self.debug:
            args.append("--raft-debug")
        return args + list(self.pytest_args)


@dataclass(frozen=True)
class RunResult:
    """What a backend reports for one finished job."""

    job: int
    test: str
    seed: int
    outcome: str  # passed | failed | error | skipped
    duration: float
    worker: str
    loadavg: tuple[float, ...]
    message: str | None = None
    log: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "error")


class BackendError(RuntimeError):
    """The backend could not run the jobs (not: a test failed)."""


class Backend(Protocol):
    def run(self, jobs: Sequence[Job], on_result: Callable[[RunResult], None]) -> None:
        """Run every job, calling ``on_result`` per finished run; return when all are done
        or the run was cancelled.  Raises BackendError if runs could not be done."""

    def cancel(self) -> None:
        """Stop soon (thread-safe; a second call may stop harder); finished results are
        still delivered."""


def pytest_command(python: str = sys.executable) -> list[str]:
    return [python, "-m", "pytest"]


def plugin_command(options: RunOptions, jobs_file: Path, files: Sequence[str], *,
                   workers: int | None = None, python: str = sys.executable) -> list[str]:
    """The pytest command that runs the jobs in ``jobs_file`` with the stress plugin.

    With ``workers`` it spreads them over ``pytest -n workers`` (the local backend);
    without, one process runs them in order (a cluster backend's one-run task).
    """
    cmd = pytest_command(python) + ["-p", PLUGIN, "--stress-jobs", str(jobs_file)]
    if workers is not None:
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
    with tempfile.TemporaryDirectory(prefix="raftlab-collect-") as tmp:
        out = Path(tmp) / "collected.json"
        cmd = pytest_command() + ["--collect-only", "-q", "-p", PLUGIN,
                                  "--stress-collect", str(out), *selection]
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode not in (0, 5) or not out.exists():
            raise BackendError(
                f"collecting tests failed (pytest exit {proc.returncode}):\n"
                f"{_tail(proc.stdout + proc.stderr)}")
        data = json.loads(out.read_text(encoding="utf-8"))
    if not data["tests"]:
        raise BackendError("no tests selected by: " + " ".join(selection))
    return Path(data["rootdir"]), list(data["tests"])


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


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
            if not self._cancelled.is_set() and (seen < len(jobs) or rc not in (0, 1)):
                detail = ""
                if self.output_log and self.output_log.exists():
                    detail = "\n" + _tail(self.output_log.read_text(errors="replace"))
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


def result_from_event(event: dict[str, Any]) -> RunResult:
    """A RunResult from one line of the plugin's events file (plain JSON data)."""
    return RunResult(
        job=int(event["job"]), test=event["test"], seed=int(event["seed"]),
        outcome=event["outcome"], duration=float(event["duration"]),
        worker=str(event["worker"]), loadavg=tuple(event.get("loadavg") or ()),
        message=event.get("message"), log=event.get("log"),
        properties=dict(event.get("properties") or {}),
    )


# --- choosing a backend (shared by ``raftlab stress`` and ``raftlab grade``) ---

BACKENDS = ("local", "dask")
# In a dask ``command_prefix``: replaced by the worker's own Python interpreter.
WORKER_PYTHON = "{python}"
CLUSTER_INSTALL_HINT = (
    "the dask backend needs the optional cluster extra: pip install 'raftlab[cluster]' "
    "(or pip install 'dask[distributed]'), on this machine and on every worker")


class BackendUnavailable(BackendError):
    """The chosen backend cannot be used here (its optional dependency is missing)."""


def check_backend(name: str) -> None:
    """Raise BackendUnavailable (with how to install it) if ``name`` cannot be used."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    if name == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"{CLUSTER_INSTALL_HINT} ({exc})") from None


def make_backend(name: str, options: RunOptions, *, workers: int = 1,
                 scheduler: str | None = None, workers_per_host: int | None = None,
                 output_log: Path | None = None,
                 command_prefix: Sequence[str] = ()) -> Backend:
    """A backend by name: ``local`` (pytest-xdist, ``workers`` processes) or ``dask``.

    ``dask`` needs ``scheduler`` (``tcp://HOST:8786`` or a scheduler JSON file);
    ``workers_per_host`` caps the concurrent runs per host there (default: the
    workers' own ``RUNS`` resources, else their thread counts).  ``command_prefix``
    (dask only) is put in front of each run's pytest command on the worker, e.g. an
    exec wrapper that sets resource limits; an argument equal to ``WORKER_PYTHON``
    becomes the worker's interpreter (``wrapper_command(limits, python=WORKER_PYTHON)``).
    Raises BackendUnavailable when dask is not installed and ValueError on bad arguments.
    """
    check_backend(name)
    if name == "local":
        return XdistBackend(workers, options, output_log=output_log)
    if not scheduler:
        raise ValueError("--backend dask needs --scheduler tcp://HOST:8786 (or a scheduler file)")
    from tools.stress_dask import DaskBackend

    return DaskBackend(scheduler, options, workers_per_host=workers_per_host,
                       command_prefix=command_prefix)
