"""``raftlab explore``: options, the worker loop, shrinking, replay.

    raftlab explore [--impl X] [--schedules N | --time-budget S] [--seed S] [-p WORKERS]
                    [--race] [--backend dask --scheduler ADDR]
    raftlab explore --replay FILE [--impl X] [--race] [--log FILE]

Schedule ``k`` of a run is generated from seed ``seed + k``, so a run is
repeatable and two runs with different ``--seed`` explore different schedules.
Each distinct failure (one per monitor; of its schedules, the lowest seed's, so the
choice does not depend on the workers' timing) is shrunk to a minimal schedule, written
to ``<out>/failures/<monitor>.json`` with the debug log of its run next to it,
and printed with the command that replays it exactly.  The exit status is 1 if
any monitor reported a violation, 2 for a usage error (one line: a bad option
value, a --replay file that is not a schedule, an --impl that does not import),
0 otherwise.

Every run, replays included, happens in a forked child (:mod:`tools.explore.guard`):
a Raft that ends its process is a finding of monitor ``exit``, its output is
counted and not shown, and a hung run is killed where it runs.

With ``--backend dask --scheduler ADDR`` (the spelling of ``raftlab stress``)
each schedule is one task on a Dask cluster and shrinking runs there too; the
results, the failure files and the printed replay command are the same as for
a local run (:mod:`tools.explore.pools`).

With ``--race`` every run also has the data-race detector of ``raftlab test
--race`` (:mod:`labtests.race`, with seeded line preemption): races are a
finding of their own kind (``data-race``), shrunk like the others, and the
printed replay command carries ``--race``.

Ctrl-C, SIGTERM and SIGHUP stop it (:mod:`tools.termination`): the workers are killed
with the runs they had forked (not waited for: a run may take up to --run-timeout),
every finished run stays in results.jsonl (each line written whole, at once), a
failure not shrunk yet is kept as found in ``failures/``, summary.json says
``stopped``, and the last line says what ran and what was stopped; exit status 130,
or 128 + the signal.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, NoReturn

from rich.markup import escape

from labtests.explore import timeline
from labtests.explore.generator import generate
from labtests.explore.schedule import Schedule
from labtests.options import OptionError, from_env, looks_like_path
from tools.console import make_console
from tools.explore import display, hashseed, work
from tools.explore.guard import GuardError, run_guarded
from tools.explore.pools import PoolError, make_pool
from tools.explore.remote import shrink_limit
from tools.termination import (
    describe,
    exit_status,
    interrupts_deferred,
    stop_signals_as_interrupts,
)

DEFAULT_SCHEDULES = 1000
MAX_WORKER_DEATHS = 2  # a seed whose worker died this often while it ran alone is reported


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="raftlab explore",
        description="Run a Raft under random fault schedules in simulated time, check safety "
                    "and liveness monitors, shrink each failure to a minimal replayable schedule.")
    p.add_argument("--impl", help="the Raft under test: module, .py file or package directory "
                                  "(default: env RAFTLAB_IMPL, else [tool.raftlab] impl in the "
                                  "nearest pyproject.toml, else the bundled Raft)")
    p.add_argument("--schedules", "-n", type=int, help=f"how many schedules "
                                                         f"(default {DEFAULT_SCHEDULES})")
    p.add_argument("--time-budget", type=float, metavar="S",
                   help="explore for S seconds of wall time instead of a schedule count")
    p.add_argument("--seed", type=int, default=0, help="first schedule seed (default 0)")
    p.add_argument("-p", "--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: one per core)")
    p.add_argument("-o", "--output", help="output directory (default explore-<timestamp>)")
    p.add_argument("--shrink-runs", type=int, default=300,
                   help="most reruns spent shrinking one failure (default 300)")
    p.add_argument("--shrink-time", type=float, default=120.0,
                   help="most seconds spent shrinking one failure (default 120)")
    p.add_argument("--no-shrink", action="store_true", help="report failures unshrunk")
    p.add_argument("--run-timeout", type=float, metavar="S",
                   help="wall seconds after which one run counts as hung (default 300; "
                        "3000 with --race)")
    p.add_argument("--race", action="store_true",
                   help="also detect data races in the implementation's fields (docs/race.md; "
                        "runs are several times slower): a race is a finding of its own "
                        "kind, shrunk and replayable like the others")
    p.add_argument("--backend", choices=("local", "dask"), default="local",
                   help="where schedules run: local worker processes (default) or dask (one "
                        "task per schedule on a Dask cluster; pip install '.[cluster]')")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="dask scheduler address (tcp://HOST:8786) or scheduler JSON file")
    p.add_argument("--replay", metavar="FILE", help="run one schedule file with debug logging")
    p.add_argument("--log", metavar="FILE", help="with --replay: write the debug log here "
                                                "(default: stdout)")
    p.add_argument("--timeline", metavar="FILE",
                   help="with --replay: also write the run's timeline page (HTML) here")
    args = p.parse_args(argv)

    def error(message: str) -> NoReturn:
        # One line, no usage block: the option was spelled right, its value is wrong.
        p.exit(2, f"raftlab explore: error: {message}\n")

    if args.schedules is not None and args.time_budget is not None:
        error("give --schedules or --time-budget, not both")
    if args.schedules is not None and args.schedules < 1:
        error(f"--schedules must be at least 1 (got {args.schedules})")
    if args.time_budget is not None and not args.time_budget > 0:  # also NaN
        error(f"--time-budget must be a positive number of seconds (got {args.time_budget})")
    if args.workers < 1:
        error(f"--workers must be at least 1 (got {args.workers})")
    for name in ("shrink_runs", "shrink_time", "run_timeout"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            error(f"--{name.replace('_', '-')} must be positive (got {value})")
    if args.run_timeout is None:
        args.run_timeout = work.default_run_timeout(args.race)
    if (args.log or args.timeline) and not args.replay:
        error("--log and --timeline go with --replay FILE")
    if args.backend == "dask" and not args.scheduler and not args.replay:
        error("--backend dask needs --scheduler tcp://HOST:8786 (or a scheduler file)")
    if args.scheduler and args.backend != "dask":
        error("--scheduler needs --backend dask")
    if args.impl is None:  # else RAFTLAB_IMPL, else the project's [tool.raftlab] impl
        try:
            args.impl = from_env().impl
        except OptionError as exc:
            error(str(exc))
    if args.replay:
        args.schedule, args.hash_seed = _read_schedule(error, args.replay)
    # Loaded here once (local workers inherit it): an --impl that does not import is a
    # usage error now, not a traceback from every worker later.  (A module name given
    # to Dask need only import on the workers.)
    args.implementation = None
    if args.backend == "local" or args.replay or looks_like_path(args.impl or ""):
        args.implementation = work.implementation(args.impl)
        if args.implementation.error is not None:
            error(args.implementation.error.strip().splitlines()[0])
    return args


def _read_schedule(error: Callable[[str], NoReturn], path: str) -> tuple[Schedule, int]:
    """The schedule file given to --replay and the hash seed it records, or a usage error
    that says what is wrong."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        error(f"--replay {path}: cannot read it ({exc.strerror or exc})")
    try:
        data = json.loads(text)
        return Schedule.from_json(data), hashseed.recorded(data)
    except KeyError as exc:
        error(f"--replay {path}: not a schedule raftlab explore wrote (no field {exc})")
    except (ValueError, TypeError, AttributeError) as exc:  # ScheduleError is a ValueError
        error(f"--replay {path}: not a schedule raftlab explore wrote ({exc})")


def replay_command(path: str, impl: str | None, race: bool = False) -> str:
    cmd = ["raftlab", "explore", "--replay", path]
    if impl:
        cmd += ["--impl", impl]
    if race:
        cmd.append("--race")
    return shlex.join(cmd)


def _guarded_replay(schedule_json: dict[str, Any], impl: str | None, timeout: float,
                    race: bool, timeline: bool) -> Any:
    """The replay's guarded run, in a process started with the recorded hash seed."""
    return run_guarded(Schedule.from_json(schedule_json), work.implementation(impl),
                       timeout=timeout, debug=True, race=race, timeline=timeline)


def _replay_run(schedule: Schedule, args: argparse.Namespace) -> Any:
    """Run the schedule as explore ran it: under the hash seed its file records.

    In this process if it started with that seed; else in a process spawned with it
    (strings hash, and sets of strings iterate, as in the run explore found).
    """
    if hashseed.current() == args.hash_seed:
        return run_guarded(schedule, args.implementation, timeout=args.run_timeout,
                           debug=True, race=args.race, timeline=bool(args.timeline))
    with hashseed.pinned_executor(1, args.hash_seed) as pool:
        return pool.submit(_guarded_replay, schedule.to_json(), args.impl, args.run_timeout,
                           args.race, bool(args.timeline)).result()


def replay(args: argparse.Namespace) -> int:
    schedule: Schedule = args.schedule
    console = make_console(stderr=True)
    try:
        # Guarded as every explore run is: a Raft that ends its process is the finding.
        result = _replay_run(schedule, args)
    except GuardError as exc:
        console.print(f"raftlab explore: the run could not start: {exc}", markup=False)
        return 2
    except KeyboardInterrupt as exc:  # its child (and worker) killed: tools/explore/guard.py
        console.print(f"raftlab explore: {describe(exc)}; the replay was stopped, nothing "
                      f"written", markup=False)
        return exit_status(exc)
    if args.timeline and result.timeline is not None:
        with open(args.timeline, "w") as f:
            f.write(timeline.page(*result.timeline))
    elif args.timeline:
        console.print(f"no timeline written: the run's process ended before it could build "
                      f"one ({args.timeline})", markup=False)
    text = "\n".join(result.log or []) + "\n"
    if args.log:
        with open(args.log, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    console.print(schedule.describe(), markup=False)
    if result.output_bytes:
        console.print(f"(the Raft wrote {result.output_bytes} bytes to stdout/stderr; not "
                      f"shown)", markup=False)
    if result.violation is None:
        console.print(f"[green]no violation[/] ({result.virtual_s:.1f} virtual s)")
        return 0
    console.print(f"[bold red]{escape(result.violation.headline())}[/]")
    return 1


def _write_failure(out: str, monitor: str, shrunk: dict[str, Any], impl: str | None,
                   race: bool) -> None:
    fdir = os.path.join(out, "failures")
    os.makedirs(fdir, exist_ok=True)
    path = os.path.join(fdir, f"{monitor}.json")
    schedule = Schedule.from_json(shrunk["schedule"])
    with open(path, "w") as f:
        f.write(hashseed.with_hash_seed(schedule.dumps()))
    log_file = os.path.join(fdir, f"{monitor}.log")
    replay = replay_command(path, impl, race)
    with open(log_file, "w") as f:
        f.write(f"# {shrunk['violation'].splitlines()[0]}\n# replay: {replay}\n")
        f.write("\n".join(shrunk["log"]) + "\n")
    shrunk.update(replay=replay, log_file=log_file, description=schedule.describe())
    built = shrunk.pop("timeline", None)
    if built:
        head, events = built
        html_file = os.path.join(fdir, f"{monitor}.timeline.html")
        with open(html_file, "w") as f:
            f.write(timeline.page(head, events))
        with open(os.path.join(fdir, f"{monitor}.events.jsonl"), "w") as f:
            f.write(timeline.jsonl(head, events))
        shrunk["timeline_file"] = html_file


def _write_unshrunk(out: str, monitor: str, schedule_json: dict[str, Any]) -> str:
    path = os.path.join(out, "failures", f"{monitor}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(hashseed.with_hash_seed(Schedule.from_json(schedule_json).dumps()))
    return path


def _lost(exc: BaseException) -> str | None:
    """Why a Dask task gave no result (its worker kept dying, or it was cancelled)."""
    name = type(exc).__name__
    if name in ("KilledWorker", "CancelledError", "FutureCancelledError"):
        return f"{name}: {exc}"
    return None


def explore(args: argparse.Namespace) -> int:
    console = make_console()
    out = args.output or time.strftime("explore-%Y%m%d-%H%M%S")
    try:
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "results.jsonl"), "w").close()  # noqa: SIM115 - a probe
    except OSError as exc:
        sys.stderr.write(f"raftlab explore: error: cannot write the output directory {out}: "
                         f"{exc.strerror or exc}\n")
        return 2
    total = args.schedules if args.time_budget is None else None
    if total is None and args.time_budget is None:
        total = DEFAULT_SCHEDULES
    deadline = time.monotonic() + args.time_budget if args.time_budget else None
    counts: Counter[str] = Counter()
    first_failure: dict[str, dict[str, Any]] = {}
    runs = 0
    virtual = 0.0
    t0 = time.monotonic()
    next_seed = args.seed
    try:
        pool = make_pool(args.backend, workers=args.workers, scheduler=args.scheduler,
                         impl=args.impl, run_timeout=args.run_timeout)
    except (PoolError, ValueError) as exc:
        sys.stderr.write(f"raftlab explore: error: {exc}\n")  # one line, never wrapped
        return 2
    except KeyboardInterrupt as exc:  # no worker is left (hashseed.pinned_pool)
        hashseed.stop_resource_tracker()
        make_console(stderr=True).print(f"raftlab explore: {describe(exc)} while its workers "
                                        f"started; no schedule ran", markup=False)
        return exit_status(exc)
    results = open(os.path.join(out, "results.jsonl"), "w")  # noqa: SIM115 - closed below
    progress = display.make_progress(console, total, args.time_budget)
    # The first stop signal (Ctrl-C, SIGTERM, SIGHUP) ends the runs and decides the exit
    # status; from then on signals wait (_finishing) until what finished is written.
    stops: list[KeyboardInterrupt] = []
    stopped_in_flight = 0
    minimal: dict[str, dict[str, Any]] = {}
    elapsed = 0.0
    try:
        if pool.kind == "dask":
            console.print(pool.description, markup=False)
        with progress:
            task = progress.add_task("explore", total=total, failures=display.failures_text(counts))
            pending: dict[Future[dict[str, Any]], tuple[int, float]] = {}
            retry: list[int] = []
            # Seeds that were in flight when a worker process died, to be rerun one at a
            # time: a worker's death is blamed only on a run that was alone in the pool.
            suspects: list[int] = []
            died: Counter[int] = Counter()  # worker deaths while the seed ran alone
            alone: set[Future[dict[str, Any]]] = set()  # a suspect's run: nothing beside it

            def more() -> bool:
                if retry or suspects:
                    return True
                if total is not None:
                    return next_seed - args.seed < total
                return deadline is not None and time.monotonic() < deadline

            def account(rec: dict[str, Any], schedule: Any = None) -> None:
                nonlocal runs, virtual
                # Whole or not at all, and on disk at once: a stop signal cutting it in
                # two would leave the summary counting a run results.jsonl lacks.
                with interrupts_deferred():
                    runs += 1
                    virtual += rec.get("virtual_s") or 0.0
                    results.write(json.dumps(rec) + "\n")
                    results.flush()
                    if rec["monitor"]:
                        counts[rec["monitor"]] += 1
                        # The lowest seed, not the first to finish: the same failure is
                        # shrunk whatever the workers' timing (locally, on Dask, at any -p).
                        kept = first_failure.get(rec["monitor"])
                        if schedule is not None and (kept is None or rec["seed"] < kept["seed"]):
                            first_failure[rec["monitor"]] = {**rec, "schedule": schedule}

            def take(done: Any) -> list[int]:
                """Account the finished runs among ``done`` (each taken off ``pending`` and
                written whole); the seeds whose future says the pool broke."""
                broken: list[int] = []
                for fut in done:
                    with interrupts_deferred():
                        seed, _t = pending.pop(fut)
                        alone.discard(fut)
                        try:
                            rec = fut.result()
                        except BrokenProcessPool:
                            # Runs are guarded (tools/explore/guard.py), so a worker that
                            # dies is rare: see _worker_died below.
                            broken.append(seed)
                            continue
                        except Exception as exc:  # noqa: BLE001 - a Dask task that was lost
                            why = _lost(exc)
                            if why is None:
                                raise
                            account({"seed": seed, "outcome": "error", "monitor": "crash",
                                     "message": f"the run's Dask task gave no result ({why}); "
                                                f"a Raft that kills its process does this",
                                     "virtual_s": 0.0})
                            continue
                        schedule = rec.pop("schedule", None)
                        account(rec, schedule)
                return broken

            try:
                while True:
                    if suspects and not pending:
                        seed = suspects.pop(0)
                        fut = pool.submit(work.explore_one, seed, pool.impl_arg, args.race,
                                          args.run_timeout)
                        pending[fut] = (seed, time.monotonic())
                        alone.add(fut)
                    while not suspects and not alone and len(pending) < 2 * pool.slots \
                            and more():
                        seed = retry.pop() if retry else next_seed
                        if seed == next_seed:
                            next_seed += 1
                        fut = pool.submit(work.explore_one, seed, pool.impl_arg, args.race,
                                          args.run_timeout)
                        pending[fut] = (seed, time.monotonic())
                    if not pending:
                        break
                    done, _ = wait(set(pending), timeout=1.0, return_when=FIRST_COMPLETED)
                    broken = take(done)  # seeds whose future says the pool broke
                    # A hung run is stopped where it runs (tools/explore/guard.py); this
                    # loop steps in only if a whole task gives nothing much later.
                    limit = (args.run_timeout + 60 if pool.kind == "local"
                             else 2 * args.run_timeout + 120)
                    hung = [(f, s) for f, (s, t) in pending.items()
                            if time.monotonic() - t > limit]
                    if hung and pool.kind == "dask":
                        # A Dask worker's thread cannot be killed from here: report and
                        # cancel the hung runs, the others go on.
                        for f, s in hung:
                            pending.pop(f)
                            pool.cancel(f)
                            account({"seed": s, "outcome": "error", "monitor": "hang",
                                     "message": f"its Dask task gave no result within "
                                                f"{limit:.0f} s of wall time (the worker is "
                                                f"stuck or gone); cancelled",
                                     "virtual_s": 0.0})
                    elif broken:
                        # Every run in flight (the pool's other futures break too) is a
                        # suspect; only one that was alone is blamed.
                        flight = broken + [s for s, _t in pending.values()]
                        pending.clear()
                        alone.clear()
                        pool.replace_workers()
                        if len(flight) > 1:
                            suspects.extend(sorted(flight))
                        else:
                            seed = flight[0]
                            died[seed] += 1
                            if died[seed] < MAX_WORKER_DEATHS:
                                suspects.append(seed)
                            else:
                                account({"seed": seed, "outcome": "error", "monitor": "exit",
                                         "message": f"the worker process running it died "
                                                    f"{died[seed]} times while it ran alone "
                                                    f"(its run ended the worker)",
                                         "virtual_s": 0.0}, generate(seed).to_json())
                    elif hung:
                        # A run that never blocks cannot be stopped inside the simulation:
                        # replace the workers, count the oldest run as hung, retry the others.
                        for f, s in hung[:1]:
                            pending.pop(f)
                            account({"seed": s, "outcome": "error", "monitor": "hang",
                                     "message": f"no result within {limit:.0f} s of "
                                                f"wall time (a loop that never blocks?)",
                                     "virtual_s": 0.0})
                        retry.extend(s for s, _t in pending.values())
                        pending.clear()
                        alone.clear()
                        pool.replace_workers()
                    progress.update(task, completed=runs,
                                    failures=display.failures_text(counts))
            except KeyboardInterrupt as exc:
                stops.append(exc)
            with _finishing(stops):
                if stops:
                    # Runs that finished as the signal came are kept; the others are
                    # stopped where they run, not waited for (up to --run-timeout each).
                    take([f for f in pending if f.done() and not f.cancelled()
                          and not isinstance(f.exception(), BaseException)])
                    stopped_in_flight = len(pending)
                    pool.stop()
                    progress.update(task, completed=runs, failures=display.failures_text(counts))
                    console.print(f"[yellow]{describe(stops[0])}: summarising what finished[/]")
                elapsed = time.monotonic() - t0
            if first_failure and not args.no_shrink and not stops:
                console.print(f"shrinking {len(first_failure)} distinct failure(s)...")
                _shrink_all(pool, args, out, first_failure, minimal, stops)
            with _finishing(stops):
                # A failure not shrunk (--no-shrink, or a stop first) keeps the schedule found.
                for monitor, f in first_failure.items():
                    if monitor in minimal:
                        continue
                    path = _write_unshrunk(out, monitor, f["schedule"])
                    if not args.no_shrink:
                        minimal[monitor] = {"error": f"not shrunk: explore was "
                                                     f"{describe(stops[0])}",
                                            "schedule_file": path}
    finally:
        with _finishing(stops):
            results.close()
            pool.shutdown()
    with _finishing(stops):
        display.summary(console, runs=runs, elapsed=elapsed, counts=counts, minimal=minimal,
                        out_dir=out, impl=args.impl, virtual=virtual)
        summary = {"runs": runs, "elapsed_s": round(elapsed, 1), "violations": dict(counts),
                   "minimal": {m: {k: v for k, v in d.items() if k != "log"}
                               for m, d in minimal.items()}}
        if stops:
            summary["stopped"] = describe(stops[0])
        _write_whole(os.path.join(out, "summary.json"), json.dumps(summary, indent=1))
    if stops:
        make_console(stderr=True).print(
            _stopped_words(stops[0], runs, total, stopped_in_flight, out,
                           unshrunk=sum("schedule_file" in m for m in minimal.values())),
            markup=False)
        return exit_status(stops[0])  # 130 for Ctrl-C, 128 + N for signal N
    return 1 if counts else 0


def _shrink_all(pool: Any, args: argparse.Namespace, out: str,
                first_failure: dict[str, dict[str, Any]], minimal: dict[str, dict[str, Any]],
                stops: list[KeyboardInterrupt]) -> None:
    """Shrink each distinct failure (in ``minimal``: the result, its files written whole).

    A stop signal ends the shrinking at once (the workers are killed, not waited for up to
    ``--shrink-time``); it is noted in ``stops`` and the failures not shrunk by then are
    left out of ``minimal``, for the caller to keep as found."""
    jobs: dict[str, Future[Any]] = {}
    try:
        jobs = {m: pool.submit(work.shrink_one, f["schedule"], pool.impl_arg,
                               args.shrink_runs, args.shrink_time, args.race,
                               args.run_timeout)
                for m, f in first_failure.items()}
        for monitor, fut in jobs.items():
            try:
                shrunk = fut.result(timeout=shrink_limit(args.shrink_time, args.run_timeout))
            except (TimeoutError, BrokenProcessPool):
                shrunk = {"error": "shrinking did not finish (a run hung or ended "
                                   "its worker process)"}
                pool.cancel(fut)
                pool.replace_workers()
            except Exception as exc:  # noqa: BLE001 - a lost Dask task
                why = _lost(exc)
                if why is None:
                    raise
                shrunk = {"error": f"shrinking gave no result ({why})"}
            with interrupts_deferred():  # a failure's files are written whole
                if "schedule" in shrunk:
                    _write_failure(out, monitor, shrunk, args.impl, args.race)
                else:  # not shrunk: the schedule found is kept as it was
                    shrunk.pop("unshrunk", None)
                    shrunk["schedule_file"] = _write_unshrunk(
                        out, monitor, first_failure[monitor]["schedule"])
                minimal[monitor] = shrunk
    except KeyboardInterrupt as exc:
        stops.append(exc)
        with _finishing(stops):
            pool.stop()


@contextmanager
def _finishing(stops: list[KeyboardInterrupt]) -> Iterator[None]:
    """Stop signals wait until the block is done; one that came meanwhile is noted in
    ``stops`` (the first decides the exit status) and the command goes on to write
    what finished -- a second Ctrl-C while the first is being summarised changes
    nothing, and every step after a stop takes bounded time (workers are killed)."""
    try:
        with interrupts_deferred():
            yield
    except KeyboardInterrupt as exc:
        stops.append(exc)


def _write_whole(path: str, text: str) -> None:
    """``text`` in ``path``, written whole or not at all (temp file, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _stopped_words(stop: KeyboardInterrupt, runs: int, total: int | None, in_flight: int,
                   out: str, unshrunk: int) -> str:
    """The last line after a stop signal: what was done, what was not, where it is."""
    of = f" of {total}" if total is not None else ""
    words = (f"raftlab explore: {describe(stop)}; {runs}{of} schedules ran, their results "
             f"kept in {os.path.join(out, 'results.jsonl')}")
    if in_flight:
        words += f"; {in_flight} run(s) in flight were stopped and not counted"
    if unshrunk:
        words += (f"; {unshrunk} failure(s) kept unshrunk in "
                  f"{os.path.join(out, 'failures')}")
    return words


def main(argv: list[str] | None = None) -> int:
    # SIGTERM and SIGHUP stop explore as Ctrl-C does (tools/termination.py): its workers
    # and their runs are killed, what finished is written, the exit status says which.
    with stop_signals_as_interrupts():
        try:
            args = parse_args(sys.argv[1:] if argv is None else argv)
            if args.replay:
                return replay(args)
            return explore(args)
        except KeyboardInterrupt as exc:  # loading the Raft (explore and replay say more)
            make_console(stderr=True).print(f"raftlab explore: {describe(exc)}", markup=False)
            return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
