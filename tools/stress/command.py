"""``raftlab stress``: run tests hundreds of times in parallel, with statistics and kept failures.

The command is a thin layer: it selects tests (:mod:`tools.selection`, then pytest
collection), plans one :class:`~tools.stress.backends.base.Job` per run with its own
seed (:mod:`.planning`), hands the jobs to a backend (:mod:`.backends`), and feeds
the results to a :class:`~tools.stress.run.StressRun`: live display, a JSON-lines
results file, failure logs with a one-line rerun command, and a final table with a
bound on each test's failure rate.

Output directory (``-o``, default ``stress-<timestamp>``)::

    results.jsonl          one line per finished run (valid after Ctrl-C too); outcome
                           passed, failed, error, skipped, inconclusive or refused
                           (the source changed on disk during the run), and attempt
    failures/<test>-s<seed>.log   log, seed, error, rerun command, group and bundle of
                           each failure
    bundles/<test>-s<seed>/ the failure bundle of a failing run (timeline, events, debug
                           log...), at most 3 per signature and 30 in all
    groups.json            failures grouped by signature (tools.stress.signatures): count,
                           first seed and its rerun command, kept bundles
    inconclusive/...       the same for runs that failed while the machine made timers
                           late beyond the lab's tolerance (labtests.overload): counted
                           apart, rerun with the same seed (--retries) on half the workers
    passed/...             logs of passing runs, with --archive
    rerun.sh               the rerun command of every failure
    summary.txt            the final table and bounds
    pytest-output.txt      pytest's own output (collection problems show up here)

Examples::

    raftlab stress -k 2A -n 300 -p 2
    raftlab stress -k 2A -n 300 -p auto        # calibrate: most workers keeping timers on time
    raftlab stress test_backup_2b -n 100 --impl mysolution/raft.py
    raftlab stress 2C -n 50 -- -p no:randomly     # after --: extra pytest options
    raftlab stress 2B -n 2000 --impl raft.py --backend dask --scheduler tcp://head:8786

With ``--backend dask`` every run is one task on a Dask cluster (see
:mod:`tools.stress.backends.dask_client`): raftlab must be installed on the workers;
a single-file ``--impl`` is shipped to them.
"""

from __future__ import annotations

import argparse
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from labtests.options import (
    RACE_WITH_ISOLATE,
    HarnessOptions,
    OptionError,
    from_env,
    looks_like_path,
)
from labtests.overload import EXIT_INCONCLUSIVE as OVERLOAD_EXIT
from labtests.overload import LAG_BOUND_MS
from tools.console import make_console
from tools.machine import loadavg, machine_cores
from tools.selection import SelectionError, pytest_selection
from tools.stress.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    Job,
    RunOptions,
    RunResult,
)
from tools.stress.backends.factory import BACKENDS, check_backend, make_backend
from tools.stress.backends.pytest_runs import collect
from tools.stress.calibrate import PROBE_TEST, calibrate
from tools.stress.planning import plan_jobs
from tools.stress.reruns import RerunRound, Reruns
from tools.stress.run import StressRun
from tools.termination import (
    describe,
    exit_status,
    interrupts_deferred,
    stop_signals_as_interrupts,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_INCONCLUSIVE = OVERLOAD_EXIT  # 6: no failure, but runs still inconclusive after reruns
DEFAULT_RETRIES = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftlab stress",
        description="Run Raft tests many times in parallel (warm forked workers of one pytest "
        "session, or a Dask cluster), each run with its own seed; keep failure logs with a "
        "rerun command; print per-test statistics. Options after '--' go to pytest "
        "unchanged. Exit status: 0 all passed, 1 a run failed, 2 usage, 3 backend error "
        "or runs refused (the implementation changed on disk after a worker loaded it), "
        "6 no failure but runs still inconclusive after reruns, 130 Ctrl-C, 143 SIGTERM, "
        "129 SIGHUP (partial table written in each case).",
    )
    parser.add_argument("tests", nargs="*", metavar="TEST",
                        help="parts (2A..2D, 2a, part2a), all, or graded test names with or "
                        "without test_ (default: all graded tests); or files and node ids of "
                        "one's own suites, where the other names pick tests")
    parser.add_argument("-k", dest="keyword", metavar="EXPR", help="pytest -k expression")
    parser.add_argument("-m", dest="marker", metavar="EXPR", help="pytest -m expression")
    parser.add_argument("-n", "--runs", type=int, default=10, help="runs per test (default 10)")
    parser.add_argument("-p", "--workers", type=workers_value, default=None, metavar="N|auto",
                        help="parallel workers (default: the number of cores); 'auto' first "
                        "measures how many concurrent runs keep timer lag in bounds on this "
                        "machine (a calibration of about a minute) and uses that")
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES, metavar="N",
                        help="rerun an inconclusive run (failed while the machine made timers "
                        f"late) up to N times, with half the workers each time (default "
                        f"{DEFAULT_RETRIES}, 0 = never)")
    parser.add_argument("--impl", help="Raft implementation (module or .py path), passed to "
                        "pytest as --raft-impl")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="per-run timeout in seconds (pytest-timeout; default 300, 0 = none)")
    parser.add_argument("-o", "--output", type=Path,
                        help="output directory (default: stress-<timestamp>)")
    parser.add_argument("-a", "--archive", action="store_true",
                        help="keep the logs of passing runs too")
    parser.add_argument("-d", "--debug", action="store_true",
                        help="run with --raft-debug so logs contain the debug lines "
                        "(slower; may hide timing bugs)")
    parser.add_argument("--sim", action="store_true",
                        help="run on the simulated clock (labtests.sim): fast, and each "
                        "failure replays exactly from its seed")
    parser.add_argument("--isolate", action="store_true",
                        help="run each Raft peer in its own process (real time only)")
    parser.add_argument("--race", action="store_true",
                        help="detect data races (docs/race.md): a race fails its run, with the "
                        "report in the run's log (not with --isolate)")
    parser.add_argument("--race-warn", action="store_true",
                        help="--race, but a race is a warning: the run passes (keep its log "
                        "with -a to read the report)")
    parser.add_argument("-s", "--sequential", action="store_true",
                        help="run all runs of one test before the next (default: interleave)")
    parser.add_argument("--seed", type=int, help="base seed from which run seeds are drawn")
    parser.add_argument("--no-live", action="store_true", help="no live progress display")
    cluster = parser.add_argument_group("cluster (pip install '.[cluster]' in a raftlab checkout)")
    cluster.add_argument("--backend", choices=BACKENDS, default="local",
                         help="where runs execute: local (workers forked from one pytest "
                         "session on this machine, default; RAFTLAB_STRESS_XDIST=1 uses "
                         "pytest-xdist instead) or dask (one task per run on a Dask cluster)")
    cluster.add_argument("--scheduler", metavar="ADDR",
                         help="dask scheduler address (tcp://HOST:8786) or scheduler JSON file")
    cluster.add_argument("--workers-per-host", type=int, metavar="N",
                         help="dask: at most N concurrent runs per host (default: the "
                         "workers' RUNS resources, else their threads)")
    return parser


def workers_value(text: str) -> int | str:
    """``-p``: a positive number, or ``auto``; 0 and negatives are errors, not "all cores"."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'auto'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (or 'auto'), not {value}")
    return value


def _run_backend(backend: Backend, jobs: Sequence[Job], results: queue.Queue) -> None:
    try:
        backend.run(jobs, results.put)
        results.put(None)
    except BaseException as exc:  # handed to the main thread, which reports it
        results.put(exc)


def main(argv: list[str] | None = None, console: Console | None = None,
         backend: Backend | None = None) -> int:
    """``raftlab stress``; SIGTERM and SIGHUP end it like Ctrl-C (tools.termination)."""
    with stop_signals_as_interrupts():
        try:
            return _main(argv, console, backend)
        except KeyboardInterrupt as exc:  # outside the runs (collecting, calibrating): none to stop
            make_console(stderr=True).print(f"raftlab stress: {describe(exc)}", markup=False)
            return exit_status(exc)


def _main(argv: list[str] | None, console: Console | None, backend: Backend | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    console = console or make_console()
    err = make_console(stderr=True)
    cores = machine_cores()
    auto = args.workers == "auto"
    workers = cores if auto or args.workers is None else int(args.workers)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if (args.race or args.race_warn) and args.isolate:
        parser.error(RACE_WITH_ISOLATE)
    if args.retries < 0:
        parser.error("--retries must be at least 0")
    if auto and (args.backend != "local" or backend is not None):
        parser.error("--workers auto calibrates this machine: local backend only")
    try:
        selection = pytest_selection(args.tests, args.keyword, args.marker) + extra
    except SelectionError as exc:
        err.print(f"raftlab stress: {exc}", markup=False, soft_wrap=True)
        return EXIT_USAGE
    if args.backend == "dask":
        if not args.scheduler:
            parser.error("--backend dask needs --scheduler tcp://HOST:8786 (or a scheduler file)")
        if args.workers_per_host is not None and args.workers_per_host < 1:
            parser.error("--workers-per-host must be at least 1")
        try:
            check_backend("dask")
        except BackendUnavailable as exc:
            err.print(f"raftlab stress: {exc}", markup=False)
            return EXIT_USAGE
    elif args.scheduler or args.workers_per_host:
        parser.error("--scheduler and --workers-per-host need --backend dask")
    if args.backend == "local" and workers > cores:
        err.print(f"[yellow]warning:[/yellow] {workers} workers on {cores} cores: the tests are "
                  "timing-based and runs starved of CPU can fail without a Raft bug; "
                  f"confirm a failure with its rerun command or -p {cores} before blaming Raft.")
    start_load = loadavg()[0]
    if args.backend == "local" and start_load > cores:
        err.print(f"[yellow]warning:[/yellow] load average is already {start_load:.2f} on "
                  f"{cores} cores before starting.")
    try:  # not given: the environment's, else the project config's ([tool.raftlab]), read
        # here because the runs happen in the framework's folder, where it is not found
        impl = args.impl or from_env().impl
    except OptionError as exc:
        err.print(f"raftlab stress: {exc}", markup=False, soft_wrap=True)
        return EXIT_USAGE
    if impl and looks_like_path(impl):
        impl = str(Path(impl).resolve())  # the rerun command must work from the rootdir
    try:
        rootdir, tests = collect(selection)
    except BackendError as exc:
        err.print(f"raftlab stress: {exc}", markup=False)
        return EXIT_USAGE
    base_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    jobs = plan_jobs(tests, args.runs, base_seed, args.sequential)
    if auto:
        workers = _auto_workers(console, cores, len(jobs), impl, args.sim, args.isolate)
    options = RunOptions(harness=HarnessOptions(impl=impl, sim=args.sim, debug=args.debug,
                                                isolate=args.isolate,
                                                race=args.race or args.race_warn,
                                                race_warn=args.race_warn),
                         timeout=args.timeout or None, keep_passing_logs=args.archive,
                         pytest_args=tuple(extra), rootdir=rootdir)
    outdir = (args.output or Path(f"stress-{time.strftime('%Y%m%d-%H%M%S')}")).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    where = f"{workers} workers ({cores} cores)"
    cluster = None
    injected = backend is not None
    if backend is None:
        backend = make_backend(args.backend, options, workers=workers, scheduler=args.scheduler,
                               workers_per_host=args.workers_per_host,
                               output_log=outdir / "pytest-output.txt")
        connect = getattr(backend, "connect", None)
        if connect is not None:  # a cluster: fail early, and say what runs where
            try:
                where = cluster = connect()
            except BackendError as exc:
                err.print(f"raftlab stress: {exc}", markup=False)
                return EXIT_BACKEND
            workers = getattr(backend, "slots", workers)
    console.print(f"stress: {len(tests)} test(s) x {args.runs} runs = {len(jobs)} runs on "
                  f"{where}; output in {outdir}", highlight=False, soft_wrap=True)
    run = StressRun(jobs, options, outdir, console, workers, base_seed, cluster=cluster)
    rerun_backend = None
    if args.backend == "local" and not injected:
        def rerun_backend(n: int) -> Backend:
            return make_backend("local", options, workers=n,
                                output_log=outdir / "pytest-output-rerun.txt")
    return _drive(run, backend, jobs, live=not args.no_live, err=err, retries=args.retries,
                  rerun_backend=rerun_backend)


def _auto_workers(console: Console, cores: int, runs: int, impl: str | None, sim: bool,
                  isolate: bool) -> int:
    """``-p auto``: calibrate (tools.stress.calibrate) and say what was chosen and why."""
    if sim:
        console.print(f"workers auto: {cores} (simulated time has no timer lag; its runs use "
                      "the CPU all the time, so one per core)", highlight=False)
        return cores
    console.print(f"workers auto: calibrating with concurrent runs of {PROBE_TEST} "
                  f"(real time{', not isolated' if isolate else ''}) ...", highlight=False)
    result = calibrate(cores, runs, impl, seed=1,
                       on_step=lambda step: console.print(
                           "  " + step.describe(LAG_BOUND_MS), highlight=False))
    console.print(f"workers auto: {result.workers} -- {result.reason}", highlight=False,
                  soft_wrap=True)
    return result.workers


@dataclass
class _Round:
    """What one pass of jobs through a backend ended with."""

    results: list[RunResult] = field(default_factory=list)
    interrupted: bool = False
    interrupts: int = 0
    stop: BaseException | None = None  # the first interruption: Ctrl-C, or a Terminated
    backend_error: BaseException | None = None


def _run_round(run: StressRun, backend: Backend, jobs: Sequence[Job], live: bool,
               err: Console, rerun: RerunRound | None = None) -> _Round:
    """Feed one round's results to ``run`` until the backend ends; Ctrl-C cancels.

    ``rerun`` (a rerun round) maps the round's job indices back to the planned
    jobs, so results.jsonl names each run by its planned job.
    """
    attempt_of = run.attempts
    results: queue.Queue = queue.Queue()
    thread = threading.Thread(target=_run_backend, args=(backend, jobs, results),
                              name="raftlab-stress-backend", daemon=True)
    state = _Round()

    def record(item: RunResult) -> None:
        # Whole or not at all: a stop signal cutting it in two would leave the summary
        # counting a run that results.jsonl lacks (a CI dry run saw the two differ).
        with interrupts_deferred():
            if rerun is not None:
                item = rerun.planned(item)
            attempt_of[item.job] = attempt_of.get(item.job, 0) + 1
            run.record(item, attempt=attempt_of[item.job])
            state.results.append(item)

    if live:
        run.display.start()
    thread.start()
    try:
        while True:
            try:
                # A run taken off the queue is recorded before a stop signal acts (it
                # waits at most this get's timeout): raised in between, it dropped the run.
                with interrupts_deferred():
                    item = results.get(timeout=0.25)
                    if isinstance(item, RunResult):
                        record(item)
            except queue.Empty:
                run.display.refresh()  # keeps elapsed time and ETA moving
                continue
            except KeyboardInterrupt as exc:
                if _interrupt(state, exc, backend, err):
                    break
                continue
            if item is None:
                break
            if isinstance(item, BaseException):
                state.backend_error = item
                break
    except KeyboardInterrupt as exc:
        _interrupt(state, exc, backend, err)
    finally:
        if live:
            run.display.stop()
        # Drain what finished before the stop, so the results file holds every run seen.
        while True:
            try:
                item = results.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, RunResult):
                record(item)
    deadline = time.monotonic() + (1.0 if state.interrupts >= 3 else 30.0)
    while thread.is_alive() and time.monotonic() < deadline:
        try:  # the backend stops its pytest (and that pytest's workers) before it returns
            thread.join(timeout=0.25)
        except KeyboardInterrupt as exc:  # another Ctrl-C or signal: stop harder
            if _interrupt(state, exc, backend, err):
                deadline = min(deadline, time.monotonic() + 1.0)
    for note in getattr(backend, "notes", ()):  # e.g. pytest restarted after dying part-way
        if note not in run.rerun_notes:
            run.rerun_notes.append(note)
            err.print(f"raftlab stress: {note}", markup=False, soft_wrap=True)
    return state


def _interrupt(state: _Round, exc: BaseException, backend: Backend, err: Console) -> bool:
    """Ctrl-C (or SIGTERM/SIGHUP): cancel the backend, harder each time; True on the
    third, when the caller stops waiting for the backend altogether."""
    state.interrupts += 1
    state.stop = state.stop or exc
    if state.interrupts >= 3:
        return True
    state.interrupted = True
    backend.cancel()  # first: nothing below may keep the runs from being stopped
    try:
        err.print(f"\n{describe(exc)}: stopping runs" if state.interrupts == 1
                  else "\nstopping harder", markup=False)
    except OSError:
        pass
    return False


def _drive(run: StressRun, backend: Backend, jobs: Sequence[Job], live: bool,
           err: Console, retries: int = 0,
           rerun_backend: Callable[[int], Backend] | None = None) -> int:
    """Run the jobs, then rerun inconclusive ones up to ``retries`` times; print the summary.

    Each rerun round runs only the runs that were inconclusive in the round before,
    with the same seeds, on ``rerun_backend(n)`` (the local backend with half the
    workers of the round before: the point is a less loaded machine).
    """
    state = _Round()
    try:
        state = _run_round(run, backend, jobs, live, err)
        round_jobs: Sequence[Job] = jobs
        planner = Reruns(run.workers, retries)
        while not state.interrupted and state.backend_error is None:
            plan = planner.next_round(round_jobs, state.results)
            if plan is None:
                break
            note = plan.note()
            run.rerun_notes.append(note)
            run.console.print(note, highlight=False, soft_wrap=True)
            # A backend runs jobs 0..n-1; results are mapped back to the planned jobs.
            next_backend = rerun_backend(plan.workers) if rerun_backend is not None else backend
            state = _run_round(run, next_backend, plan.renumbered, False, err, rerun=plan)
            round_jobs = plan.jobs
    except KeyboardInterrupt as exc:  # between rounds: no backend running
        state.interrupted, state.stop = True, state.stop or exc
    finally:
        run.finished_at = time.monotonic()
        run.close()
    run.print_summary(state.interrupted, describe(state.stop) if state.interrupted else "")
    if state.backend_error is not None:
        err.print(f"raftlab stress: {state.backend_error}", markup=False)
        return EXIT_BACKEND
    if state.interrupted:
        return exit_status(state.stop)  # 130 for Ctrl-C, 128 + N for signal N
    if any(st.failures for st in run.stats.values()):
        return EXIT_FAILED
    if run.done_runs() + run.inconclusive_runs() + run.skipped < len(jobs):
        return EXIT_BACKEND
    if run.inconclusive_runs():
        return EXIT_INCONCLUSIVE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
