"""One run of a schedule in a forked child process: a Raft that ends its process is a finding.

Why: the Raft under test runs inside explore's own worker.  A Raft that calls
``os._exit(3)`` or sends itself SIGKILL took the worker with it, so the pool
restarted it and the seed came back, forever.  Here each run happens in a child
forked from the worker (which has already imported the implementation, so a fork
costs milliseconds and every run starts from the same untouched module state):

* the child runs :func:`~labtests.explore.runner.run_schedule` and leaves its
  :class:`~labtests.explore.runner.RunResult` in a file; a child that dies
  first becomes a violation of monitor ``exit`` (kind error) that names the
  exit status or signal and the step the run was in (shared memory the runner
  updates, :data:`~labtests.explore.runner.OnStep`);
* with ``debug`` the child writes each debug-log line to a file as it goes, so
  the log of a run that died is kept up to its last line -- and the replay of
  that run shows the same lines and the same finding;
* the child's stdout and stderr go to a pipe that this process drains, keeping
  only a count and the last few KB: a Raft that prints 50 MB never floods
  explore's display;
* after ``timeout`` wall seconds the child is killed and the run is a ``hang``;
* the child ends with ``os._exit``, so threads the Raft left behind (daemon or
  not) cannot keep it alive;
* the child leads a process group of its own, so a Raft that signals its group
  ends only itself.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time
from multiprocessing import RawArray
from typing import Any

from labtests import last_bound, memory_bound
from labtests.explore.monitors import Violation
from labtests.explore.runner import RunResult, run_schedule
from labtests.explore.schedule import Schedule
from labtests.impl_loader import Implementation
from labtests.isolation import procs
from labtests.options import memory_mb_from_env
from raft import debuglog
from tools.scratch import HeldFolder

TAIL_BYTES = 4096  # of the Raft's own output, kept for the report
BOUND_FILE = "memory-bound"  # in a run's work folder: the memory bound's stacks, if it acted
MAX_BOUND_DUMP = 16 * 1024  # characters of those stacks kept in the finding
# Where each run's work folder is made: the pool's scratch folder in explore's workers
# (tools/explore/hashseed.py removes it with the pool, workers killed or not); the
# temporary directory elsewhere.
RUNS_DIR: str | None = None


class GuardError(RuntimeError):
    """The run could not start (e.g. the implementation failed to load); the message says why."""


class _Drain(threading.Thread):
    """Reads the child's stdout/stderr pipe to its end, keeping the byte count and the tail."""

    def __init__(self, fd: int) -> None:
        super().__init__(name="explore-guard-drain", daemon=True)
        self.fd = fd
        self.total = 0
        self.tail = b""

    def run(self) -> None:
        try:
            while True:
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    return
                self.total += len(chunk)
                self.tail = (self.tail + chunk)[-TAIL_BYTES:]
        except OSError:
            return
        finally:
            os.close(self.fd)

    def text(self) -> str:
        return self.tail.decode("utf-8", "replace")


class _LineFile(logging.Handler):
    """Each debug-log line written at once (unbuffered): a child that dies keeps its log."""

    def __init__(self, fd: int) -> None:
        super().__init__(logging.DEBUG)
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        data = (record.getMessage() + "\n").encode("utf-8", "replace")
        while data:
            data = data[os.write(self.fd, data):]


def _child(schedule: Schedule, impl: Implementation, where: Any, work_dir: str, out_fd: int,
           kwargs: dict[str, Any], parent: int) -> None:
    """The forked child: run, leave the result in ``work_dir``, end without cleanup."""
    code = 0
    try:
        # A process group of its own: a Raft that signals its group (os.killpg(0, ...))
        # ends only this child, and Ctrl-C at the terminal reaches the parent only,
        # which kills this child; the interrupt is never a finding of its own.
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Outside the parent's process group, a child of a killed explore would run on.
        procs.die_with(parent)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        # The memory bound's stacks go to a file of their own, not into the output's
        # tail, which keeps only the last few KB (labtests/memory_bound.py).
        bound_fd = os.open(os.path.join(work_dir, BOUND_FILE), os.O_WRONLY | os.O_CREAT, 0o600)
        memory_bound.watch(memory_mb_from_env(), bound_fd, dump_file=False)
        if kwargs.get("debug"):
            fd = os.open(os.path.join(work_dir, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            debuglog.logger.addHandler(_LineFile(fd))

        def on_step(k: int, at: float) -> None:
            where[0], where[1] = float(k), at

        def on_time(now: float) -> None:
            where[2] = now

        try:
            result: Any = run_schedule(schedule, impl, on_step=on_step, on_time=on_time,
                                       **kwargs)
        except SystemExit as exc:  # sys.exit() in the run's main thread: a process would end
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
            return
        except Exception as exc:  # noqa: BLE001 - handed to the parent as text
            result = GuardError(f"{type(exc).__name__}: {exc}")
        tmp = os.path.join(work_dir, "result.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.rename(tmp, os.path.join(work_dir, "result"))
    except BaseException as exc:  # noqa: BLE001 - nothing may escape a forked child
        code = 70
        try:  # the guard's own failure, not the Raft's: the parent raises it
            with open(os.path.join(work_dir, "error"), "w") as f:
                f.write(f"the guarded run's child failed: {type(exc).__name__}: {exc}")
        except BaseException:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - a closed or broken stream
            pass
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's wait status, or None if it is still running after ``timeout`` s."""
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None
    try:
        return procs.wait_exit(pid, timeout, pidfd)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _log(work_dir: str, debug: bool) -> list[str] | None:
    """The debug log a child wrote line by line before it died or was killed."""
    if not debug:
        return None
    try:
        with open(os.path.join(work_dir, "log"), encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def _kill(pid: int) -> None:
    """SIGKILL our child (by its pid) and reap it."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def ended_how(status: int) -> str:
    """``exit status 3`` or ``signal 9 (SIGKILL)``."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "?"
    return f"signal {-code} ({name})"


def _where(schedule: Schedule, k: int, at: float) -> str:
    steps = schedule.steps
    if k < 0:
        return "while the peers started, before the first step"
    if k >= len(steps):
        return f"after the heal at {schedule.horizon:.3f}s, in the liveness checks"
    what = steps[k].describe().strip().split("  ", 1)[-1]
    return f"after step {k + 1} of {len(steps)} began ({what}, at {steps[k].at:.3f}s)"


def _bound_dump(work_dir: str) -> str | None:
    """What the child's memory bound wrote as it ended the child (None: it did not)."""
    try:
        with open(os.path.join(work_dir, BOUND_FILE), errors="replace") as f:
            text = f.read(MAX_BOUND_DUMP)
    except OSError:
        return None
    return last_bound.memory_dump(text)


def _died(schedule: Schedule, status: int, where: Any, drain: _Drain, log: list[str] | None,
          wall: float, work_dir: str) -> RunResult:
    k, at = int(where[0]), max(float(where[1]), float(where[2]), 0.0)
    dump = _bound_dump(work_dir)
    if dump is not None:
        reason = last_bound.describe(dump, "the run's process")
        message = f"{reason}; ended {_where(schedule, k, at)}\n{dump}"
    else:
        message = (f"the Raft ended the run's process: {ended_how(status)} "
                   f"{_where(schedule, k, at)}")
    if drain.total:
        message += (f"\nits last output ({drain.total} bytes written in all):\n"
                    f"{drain.text()[-1000:]}")
    v = Violation("exit", round(at, 3), message)
    if log is not None:
        log.append(debuglog.format_line("TEST", "--", f"FAIL: {v.headline().splitlines()[0]}",
                                        int(at * 1000)))
    return RunResult(v, round(at, 3), wall, 0, log, None, drain.total, drain.text())


def run_guarded(schedule: Schedule, impl: Implementation, *, timeout: float,
                debug: bool = False, race: bool = False, timeline: bool = False) -> RunResult:
    """:func:`run_schedule` in a forked child; a child that dies or hangs is the violation.

    ``impl`` must be loaded already (its import happens once, in this process).
    Raises :class:`GuardError` if the run could not start at all.
    """
    kwargs: dict[str, Any] = {"debug": debug, "race": race, "timeline": timeline}
    # Held (tools/scratch.py): should this process be killed outright, the next run
    # reclaims it.
    folder = HeldFolder.fresh("raftlab-explore-run-", RUNS_DIR)
    work_dir = str(folder.path)
    where = RawArray("d", [-1.0, 0.0, 0.0])  # step begun, its time, last sample's time
    r, w = os.pipe()
    t0 = time.perf_counter()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child (measured by the tests through its effects)
            os.close(r)
            _child(schedule, impl, where, work_dir, w, kwargs, parent)
        os.close(w)
        drain = _Drain(r)
        drain.start()
        try:
            status = _wait(pid, timeout)
        except BaseException:  # e.g. Ctrl-C: the child does not outlive this process's run
            _kill(pid)
            raise
        if status is None:
            _kill(pid)
            drain.join(5)
            v = Violation("hang", 0.0, f"no result within {timeout:.0f} s of wall time (a loop "
                                       f"that never blocks?); its process was killed "
                                       f"{_where(schedule, int(where[0]), where[1])}")
            return RunResult(v, 0.0, time.perf_counter() - t0, 0, _log(work_dir, debug), None,
                             drain.total, drain.text())
        drain.join(5)  # the pipe ends with the child (unless the Raft forked a process)
        wall = time.perf_counter() - t0
        if os.path.exists(os.path.join(work_dir, "error")):
            with open(os.path.join(work_dir, "error")) as f:
                raise GuardError(f.read())
        path = os.path.join(work_dir, "result")
        if os.path.exists(path):
            with open(path, "rb") as f:
                got = pickle.load(f)
            if isinstance(got, GuardError):
                raise got
            got.output_bytes, got.output_tail = drain.total, drain.text()
            return got
        return _died(schedule, status, where, drain, _log(work_dir, debug), wall, work_dir)
    finally:
        folder.remove()
