"""Run a submission's graded tests in separate, limited, supervised processes, part by part.

Student code never runs in the grader's process, nor in the tester's: each part of
a submission is one ``pytest -n <workers> --isolate`` run (real time; ``--sim``
grading stays in-process) driven by the stress runner's backend
(:class:`tools.stress.backends.xdist.XdistBackend`), under a small **supervisor**
(``python -m tools.grade.isolation [limits] -- pytest ...``, :func:`main`) that:

* becomes a child subreaper, so every process the run leaves behind -- a daemon
  that double-forked into its own session included -- is re-parented to it, and
  after pytest exits kills and reaps all of them (and, with a dedicated run user,
  every process of that uid: :func:`tools.grade.sandbox.kill_uid`) before it exits
  itself; the grader writes result files only after that;
* gives the run its own mount namespace when it has a dedicated user (the
  submissions and report folders hidden, see :mod:`tools.grade.sandbox`);
* sets the resource limits (:class:`tools.grade.sandbox.RunLimits`: address space,
  CPU, processes, open files, file size, no core dumps) in pytest before the exec,
  inherited by everything it starts;
* caps the run's output (pytest's and every peer's) at ``--output-mb``;
* turns the backend's SIGINT into pytest's clean shutdown and SIGTERM (or its own
  parent's death) into SIGKILL for the whole run, then the sweep.

The tester loads :mod:`tools.grade.guard`, which starts the peers as the run user.
Time: each run has pytest-timeout's per-run watchdog; the whole part has a
wall-clock budget, after which the remaining runs count as failed ("part time
budget exhausted"); and if no run at all finishes for longer than the per-run limit
plus a grace period, the grader stops the run.  The framework is the installed one:
pytest runs the graded test files by absolute path with an explicit ``--rootdir``,
from a scratch working directory, so nothing in a submission's folder is imported
except through ``--raft-impl=<staged copy>``.

The scores are computed by the grader from the per-run results this module returns.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtests import libc
from labtests.isolation import procs
from tools.grade import runfolder
from tools.grade.sandbox import (
    RunLimits,
    RunUser,
    SandboxError,
    hold_run,
    interpreter_paths,
    kill_uid,
    private_view,
)
from tools.grade.stopping import whole
from tools.stress.backends.base import Backend, BackendError, Job, RunOptions, RunResult
from tools.stress.backends.xdist import XdistBackend

BUDGET_REASON = "part time budget exhausted"
STALL_GRACE_S = 60.0
GUARD_PLUGIN = "tools.grade.guard"
SUPERVISOR_NOTE = "[raftlab grade supervisor]"  # starts the lines the grader copies to notes


@dataclass(frozen=True)
class Limits:
    """How the processes that run student code are fenced (one part of one submission)."""

    memory_mb: int = 16384
    per_run_timeout_s: float = 150.0
    cpu_s: int = 1200
    run_user: RunUser | None = None
    hide: tuple[Path, ...] = field(default_factory=tuple)

    def run_limits(self) -> RunLimits:
        return RunLimits(memory_mb=self.memory_mb, cpu_s=self.cpu_s)


def wrapper_command(limits: Limits, python: str = sys.executable,
                    hold: Path | None = None) -> list[str]:
    """The supervisor prefix that runs a command under ``limits`` (see :func:`main`);
    ``hold``: the run folder's lock, held by the supervisor to its last sweep
    (:mod:`.runfolder`)."""
    rl = limits.run_limits()
    cmd = [python, "-m", "tools.grade.isolation", "--memory-mb", str(rl.memory_mb),
           "--cpu-s", str(rl.cpu_s), "--nproc", str(rl.nproc), "--nofile", str(rl.nofile),
           "--fsize-mb", str(rl.fsize_mb), "--output-mb", str(rl.output_mb)]
    if limits.run_user is not None:
        cmd += ["--run-user", str(limits.run_user)]
        cmd += [f"--hide={p}" for p in limits.hide]
    if hold is not None:
        cmd.append(f"--hold={hold}")
    return cmd + ["--"]


class IsolatedBackend(XdistBackend):
    """The stress runner's xdist backend, run under the supervisor, away from the submission.

    ``options.rootdir`` is the scratch directory used as pytest's working directory;
    ``framework_root`` is the real pytest rootdir (where the graded test files are).
    """

    def __init__(self, workers: int, options: RunOptions, framework_root: Path, limits: Limits,
                 output_log: Path | None = None, hold: Path | None = None) -> None:
        # xdist workers, not the stress runner's forked ones: the fences (limits, worker
        # restarts after a crash, a memory hog stopped by its address-space limit) are
        # those tested with xdist (tests/test_grade.py).
        super().__init__(workers, options, output_log=output_log, fork=False)
        self.framework_root = framework_root
        self.limits = limits
        self.hold = hold  # the run folder's lock (the supervisor holds it to its end)
        # The jobs and events files in the run folder, which the run's private view of the
        # files keeps visible: in the temporary directory, a TMPDIR only its owner may
        # enter (0700) was covered by that view, and pytest found no jobs file -- every
        # submission scored 0 with "INTERNALERROR> FileNotFoundError".
        if hold is not None:
            self.scratch_in = hold.parent

    def command(self, jobs_file: Path, files: Sequence[str]) -> list[str]:
        absolute = [str(self.framework_root / f) for f in files]
        cmd = super().command(jobs_file, absolute)
        # pytest's own command line starts after "python -m pytest".
        head, rest = cmd[:3], cmd[3:]
        guard = ["-p", GUARD_PLUGIN]
        if self.limits.run_user is not None:
            guard.append(f"--grade-peer-user={self.limits.run_user}")
        # xdist's option only where xdist runs the workers (not with forked workers).
        restarts = ["--max-worker-restart=1000"] if "-n" in rest else []
        return (wrapper_command(self.limits, hold=self.hold) + head
                + [f"--rootdir={self.framework_root}", *restarts,
                   "-p", "no:cacheprovider"] + guard + rest)

    def _signal(self, sig: int) -> None:
        # Never SIGKILL the supervisor: it would orphan the run it exists to sweep.
        # SIGTERM makes it SIGKILL the run itself, then sweep, then exit.
        super()._signal(signal.SIGINT if sig == signal.SIGINT else signal.SIGTERM)


def failed_result(job: Job, reason: str) -> RunResult:
    """A run that did not happen (or did not report), counted as failed with ``reason``."""
    return RunResult(job=job.index, test=job.test, seed=job.seed, outcome="failed",
                     duration=0.0, worker="-", loadavg=(), message=reason)


def run_part(jobs: Sequence[Job], backend: Backend, budget_s: float,
             stall_s: float, on_result: Callable[[RunResult], None] | None = None,
             ) -> tuple[list[RunResult], float]:
    """Run ``jobs`` on ``backend`` within ``budget_s`` seconds of wall-clock time.

    ``on_result`` sees each accepted result as it arrives (from the backend's thread), to
    show it; if it raises, the results are kept and it is not called again (stdout a
    pipe whose reader left: rich exits with SystemExit(1), which in the backend's
    thread failed every later run of the part).
    Returns one result per job (in job order) and the elapsed time.  Jobs without a
    result count as failed: with the budget reason when the budget ran out, with a
    "killed" reason when nothing finished for ``stall_s`` seconds, or with the
    backend's error (pytest itself failed).
    """
    results: dict[int, RunResult] = {}
    lock = threading.Lock()
    state: dict[str, Any] = {"last": time.monotonic(), "why": None, "show": True}
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
        if accepted and on_result is not None and state["show"]:
            try:
                on_result(result)
            except BaseException:  # only showing failed; the result is in (no signal here:
                state["show"] = False  # Python raises those in the main thread)

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
    try:
        thread.start()  # inside: a stop signal as it returns must cancel the runs too
        _watch(backend, started, budget_s, stall_s, done, lock, state, results, wanted)
    except KeyboardInterrupt as stop:
        # pytest runs in its own session and would outlive the grader: stop it first,
        # whole (a second Ctrl-C is "hurry", not "skip the stop").
        with whole(stop):
            backend.cancel()
            backend.cancel()
            with contextlib.suppress(RuntimeError):  # the signal came before the thread started
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


PR_SET_PDEATHSIG = 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    d = RunLimits()
    parser = argparse.ArgumentParser(
        prog="python -m tools.grade.isolation",
        description="run a command under raftlab's grading supervisor and limits")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-s", type=int, default=d.cpu_s)
    parser.add_argument("--nproc", type=int, default=d.nproc)
    parser.add_argument("--nofile", type=int, default=d.nofile)
    parser.add_argument("--fsize-mb", type=int, default=d.fsize_mb)
    parser.add_argument("--output-mb", type=int, default=d.output_mb)
    parser.add_argument("--run-user", type=RunUser.parse, metavar="UID:GID",
                        help="the run's dedicated user: a private mount namespace, and every "
                        "process of this uid is killed at the end")
    parser.add_argument("--hide", type=Path, action="append", default=[],
                        help="with --run-user: cover this folder for the run")
    parser.add_argument("--hold", type=Path, metavar="LOCK",
                        help="hold this run folder's lock file (shared) to the end, so that "
                        "no later grade run reclaims the folder while this run is swept")
    parser.add_argument("--as-run-user", action="store_true",
                        help="run the command itself as --run-user (a probe)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.command:
        parser.error("no command given")
    if args.as_run_user and args.run_user is None:
        parser.error("--as-run-user needs --run-user")
    return args


def main(argv: list[str] | None = None) -> int:
    """Supervisor: ``python -m tools.grade.isolation --memory-mb N [...] -- cmd args...``.

    Exits with the command's status (128 + N if it died of signal N) once the
    command and everything it started are gone.
    """
    args = _parse(argv)
    limits = RunLimits(memory_mb=args.memory_mb, cpu_s=args.cpu_s, nproc=args.nproc,
                       nofile=args.nofile, fsize_mb=args.fsize_mb, output_mb=args.output_mb)
    if args.hold is not None:
        try:
            held = runfolder.hold(args.hold)  # noqa: F841 - kept open, never read
        except OSError as exc:
            print(f"raftlab grade supervisor: cannot hold the run folder: {exc}",
                  file=sys.stderr)
            return 125
    procs.become_subreaper()
    # The grader died: stop the run.
    libc.call("prctl", PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0,
              what="prctl(PR_SET_PDEATHSIG, SIGTERM)")
    if args.run_user is not None:
        try:
            # Held to our exit: the uid is not handed to another run before our sweep.
            lease = hold_run(args.run_user)  # noqa: F841 - kept open, never read
            private_view(args.run_user, interpreter_paths() + [Path.cwd()], args.hide)
        except (SandboxError, OSError) as exc:
            print(f"raftlab grade supervisor: {exc}", file=sys.stderr)
            return 125
    child = _start(args.command, limits, args.run_user if args.as_run_user else None)
    try:
        status, killed = _supervise(child, limits.output_mb << 20)
    except BaseException:
        _killpg(child[0], signal.SIGKILL)  # never leave the run behind
        sweep_children(timeout=10.0)
        raise
    killed += sweep_children(timeout=10.0)
    if args.run_user is not None:
        killed += kill_uid(args.run_user.uid)
        killed += sweep_children(timeout=5.0)
    if killed:
        _write_all(f"{SUPERVISOR_NOTE} killed {len(set(killed))} process(es) still running "
                   f"after the test process ended (a detached or leftover process)\n"
                   .encode())
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _start(command: list[str], limits: RunLimits, as_user: RunUser | None) -> tuple[int, int]:
    """Fork and exec ``command`` in its own process group, output to a pipe: (pid, read fd)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits
        try:
            os.setpgid(0, 0)
            os.dup2(w, 1)
            os.dup2(w, 2)
            os.close(r)
            os.close(w)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            limits.apply()
            if as_user is not None:
                os.setgroups([])
                os.setgid(as_user.gid)
                os.setuid(as_user.uid)
            # glibc reserves up to 8 x cores malloc arenas of 64 MiB address space each,
            # which count against RLIMIT_AS without being used; two are plenty here.
            env = dict(os.environ, MALLOC_ARENA_MAX=os.environ.get("MALLOC_ARENA_MAX", "2"))
            os.execvpe(command[0], command, env)
        except BaseException as exc:
            os.write(2, f"raftlab grade supervisor: cannot start {command[0]}: {exc}\n"
                     .encode())
        os._exit(127)
    os.close(w)
    return pid, r


def _supervise(child: tuple[int, int], cap: int) -> tuple[int, list[int]]:
    """Copy the child's output (up to ``cap`` bytes), forward signals.

    Returns the child's wait status and the pids of leftovers killed once it ended.
    """
    pid, fd = child

    def on_int(_sig: int, _frame: Any) -> None:
        _killpg(pid, signal.SIGINT)

    def on_term(_sig: int, _frame: Any) -> None:
        _killpg(pid, signal.SIGKILL)

    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGTERM, on_term)
    written = 0
    status: int | None = None
    eof = False
    drain_until: float | None = None
    killed: list[int] = []
    while not eof:
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                status = st
                # Kill what the run left behind (those hold the pipe open), then drain.
                killed += sweep_children(timeout=10.0)
                drain_until = time.monotonic() + 2.0
        if drain_until is not None and time.monotonic() > drain_until:
            break
        try:
            ready, _, _ = select.select([fd], [], [], 0.2)
        except InterruptedError:
            continue
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            eof = True
            continue
        if written < cap:
            keep = chunk[: cap - written]
            _write_all(keep)
            written += len(keep)
            if written >= cap:
                _write_all(f"\n{SUPERVISOR_NOTE} output capped at {cap >> 20} MiB; the "
                           f"rest of this run's output was discarded\n".encode())
    os.close(fd)
    if status is None:
        _, status = os.waitpid(pid, 0)
    return status, killed


def sweep_children(timeout: float) -> list[int]:
    """Kill and reap every child of this (subreaper) process; their pids.

    Killing one re-parents its own children to us, so it repeats until a scan
    finds none (or ``timeout`` passes, against a fork bomb).
    """
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        strays = procs.children()
        if not strays or time.monotonic() > deadline:
            return killed
        for pid, state in strays.items():
            if state != "Z":
                procs.kill(pid)
                killed.append(pid)
        for pid in strays:
            try:
                os.waitpid(pid, 0 if time.monotonic() < deadline else os.WNOHANG)
            except ChildProcessError:
                pass


def _write_all(data: bytes) -> None:
    while data:
        try:
            n = os.write(1, data)
        except InterruptedError:
            continue
        data = data[n:]


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main())
