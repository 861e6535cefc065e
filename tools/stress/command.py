"""``raftlab stress``: run tests hundreds of times in parallel, with statistics and kept failures.

The command is a thin layer: it selects tests (via pytest collection), plans one
:class:`~tools.stress_backend.Job` per run with its own seed, hands the jobs to a
backend (local pytest-xdist today), and turns the results into a live display, a
JSON-lines results file, failure logs with a one-line rerun command, and a final
table with a bound on each test's failure rate.

Output directory (``-o``, default ``stress-<timestamp>``)::

    results.jsonl          one line per finished run (valid after Ctrl-C too)
    failures/<test>-s<seed>.log   log, seed, error and rerun command of each failure
    passed/...             logs of passing runs, with --archive
    rerun.sh               the rerun command of every failure
    summary.txt            the final table and bounds
    pytest-output.txt      pytest's own output (collection problems show up here)

Examples::

    raftlab stress -k 2A -n 300 -p 2
    raftlab stress test_backup_2b -n 100 --impl mysolution/raft.py
    raftlab stress 2C -n 50 -- -p no:randomly     # after --: extra pytest options
    raftlab stress 2B -n 2000 --impl raft.py --backend dask --scheduler tcp://head:8786

With ``--backend dask`` every run is one task on a Dask cluster (see
:mod:`tools.stress_dask`): raftlab must be installed on the workers; a single-file
``--impl`` is shipped to them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import random
import re
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressBar,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tools.console import make_console
from tools.stats import TestStats, bound_sentence, failure_rate_upper_bound, fmt_pct
from tools.stress_backend import (
    BACKENDS,
    Backend,
    BackendError,
    BackendUnavailable,
    Job,
    RunOptions,
    RunResult,
    check_backend,
    collect,
    make_backend,
)

_PART_RE = re.compile(r"^2[a-dA-D]$")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def default_test_paths() -> list[str]:
    """The graded suites of the installed ``labtests`` package."""
    spec = importlib.util.find_spec("labtests")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [str(Path(next(iter(spec.submodule_search_locations))))]


def selection_args(selectors: Sequence[str], keyword: str | None, marker: str | None,
                   extra: Sequence[str] = ()) -> list[str]:
    """pytest arguments for the user's selection.

    Paths and node ids pass through; a part (``2A``) or a test name becomes a ``-k``
    term; positional terms are alternatives (OR), and ``-k`` narrows them (AND).
    Without paths, the installed graded suites are used, without the harness
    self-tests unless ``-m`` says otherwise.
    """
    paths: list[str] = []
    terms: list[str] = []
    for sel in selectors:
        if "::" in sel or sel.endswith(".py") or os.path.exists(sel):
            paths.append(sel)
        elif _PART_RE.match(sel):
            terms.append(sel.upper())
        else:
            terms.append(sel)
    exprs = []
    if terms:
        exprs.append(" or ".join(terms))
    if keyword:
        exprs.append(keyword)
    args: list[str] = []
    if exprs:
        args += ["-k", " and ".join(f"({e})" for e in exprs) if len(exprs) > 1 else exprs[0]]
    if marker:
        args += ["-m", marker]
    elif not paths:
        args += ["-m", "not selftest"]
    return args + list(extra) + (paths or default_test_paths())


def plan_jobs(tests: Sequence[str], runs: int, seed: int, sequential: bool) -> list[Job]:
    """``runs`` jobs per test with distinct seeds drawn from ``seed``.

    By default rounds interleave (every test once, then again...) so that all tests
    progress together and a load spike does not hit one test's runs only.
    """
    rng = random.Random(seed)
    pairs = ([(t, r) for t in tests for r in range(runs)] if sequential
             else [(t, r) for r in range(runs) for t in tests])
    used: set[int] = set()
    jobs = []
    for index, (test, _r) in enumerate(pairs):
        s = rng.randrange(1, 2**31)
        while s in used:
            s = rng.randrange(1, 2**31)
        used.add(s)
        jobs.append(Job(index, test, s))
    return jobs


def rerun_command(test: str, seed: int, options: RunOptions) -> str:
    """One shell command that reruns exactly ``test`` with ``seed``, debug log on."""
    args = [sys.executable, "-m", "pytest", test, f"--seed={seed}"]
    harness = options.harness_args()
    if "--raft-debug" not in harness:
        harness.append("--raft-debug")
    return f"cd {shlex.quote(str(options.rootdir))} && " + shlex.join(args + harness)


def short_name(test: str) -> str:
    """``labtests/test_2a.py::test_x`` -> ``test_2a.py::test_x`` (for tables and bars)."""
    path, _, rest = test.partition("::")
    return f"{Path(path).name}::{rest}" if rest else test


def display_names(tests: Sequence[str]) -> dict[str, str]:
    """Bare test names when they are unique (the usual case), else ``file::name``."""
    bare = {t: t.rsplit("::", 1)[-1] for t in tests}
    if len(set(bare.values())) == len(bare):
        return bare
    return {t: short_name(t) for t in tests}


def safe_file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120]


class _StatusBar(BarColumn):
    """A bar that turns red as soon as its test has failed once."""

    def render(self, task: Task) -> ProgressBar:
        bar = super().render(task)
        if task.fields.get("failures"):
            bar.complete_style = bar.finished_style = bar.pulse_style = "red"
        return bar


class StressRun:
    """State of one stress run: statistics, output files and the live display."""

    def __init__(self, jobs: Sequence[Job], options: RunOptions, outdir: Path,
                 console: Console, workers: int, base_seed: int,
                 cluster: str | None = None) -> None:
        self.jobs = list(jobs)
        self.cluster = cluster
        self.options = options
        self.outdir = outdir
        self.console = console
        self.workers = workers
        self.base_seed = base_seed
        self.stats: dict[str, TestStats] = {}
        for job in self.jobs:
            self.stats.setdefault(job.test, TestStats(job.test)).planned += 1
        self.failures: list[tuple[RunResult, Path, str]] = []
        self.max_load = 0.0
        self.skipped = 0
        self.load_at_start = loadavg()
        self.started = time.monotonic()
        self.finished_at: float | None = None
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "failures").mkdir(exist_ok=True)
        self.results_file = open(outdir / "results.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.progress = Progress(
            TextColumn("{task.description}"), _StatusBar(bar_width=30), MofNCompleteColumn(),
            TextColumn("{task.fields[failtext]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, auto_refresh=False, transient=False,
        )
        self.overall = self.progress.add_task("[bold]all runs", total=len(self.jobs),
                                              failures=0, failtext="")
        self.names = display_names(list(self.stats))
        width = max(len(n) for n in self.names.values())
        self.tasks: dict[str, TaskID] = {
            test: self.progress.add_task(self.names[test].ljust(width), total=st.planned,
                                         failures=0, failtext="")
            for test, st in self.stats.items()
        }

    # -- results --

    def record(self, result: RunResult) -> None:
        """Account one finished run: results line, log file, statistics, display."""
        st = self.stats[result.test]
        if result.outcome == "skipped":
            self.skipped += 1
        else:
            st.add(result.duration, result.failed)
        if result.loadavg:
            self.max_load = max(self.max_load, float(result.loadavg[0]))
        log_path: Path | None = None
        rerun = rerun_command(result.test, result.seed, self.options)
        if result.failed:
            log_path = self._write_log("failures", result, rerun)
            self.failures.append((result, log_path, rerun))
            with open(self.outdir / "rerun.sh", "a", encoding="utf-8") as fh:
                fh.write(f"# {result.test} seed {result.seed}: {result.message}\n{rerun}\n")
        elif result.log is not None:
            log_path = self._write_log("passed", result, rerun)
        line = {
            "test": result.test, "seed": result.seed, "outcome": result.outcome,
            "duration": result.duration, "worker": result.worker,
            "loadavg": list(result.loadavg), "job": result.job,
            "message": result.message, "log": str(log_path) if log_path else None,
            "properties": result.properties,
        }
        self.results_file.write(json.dumps(line) + "\n")
        self.results_file.flush()
        self._update_display(result, log_path)

    def _write_log(self, sub: str, result: RunResult, rerun: str) -> Path:
        folder = self.outdir / sub
        folder.mkdir(exist_ok=True)
        name = f"{safe_file_part(short_name(result.test))}-s{result.seed}.log"
        path = folder / name
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

    def _update_display(self, result: RunResult, log_path: Path | None) -> None:
        task = self.tasks[result.test]
        st = self.stats[result.test]
        fails = st.failures
        self.progress.update(task, advance=1, failures=fails,
                             failtext=f"[red]{fails} failed[/red]" if fails else "")
        total_fails = sum(s.failures for s in self.stats.values())
        self.progress.update(self.overall, advance=1, failures=total_fails,
                             failtext=f"[red]{total_fails} failed[/red]" if total_fails else "")
        if result.failed:
            self.progress.console.print(
                f"[red]FAILED[/red] {short_name(result.test)} seed={result.seed} "
                f"({result.duration:.1f} s): {result.message or ''}\n  log: {log_path}",
                highlight=False, markup=True, soft_wrap=True)
        self.progress.refresh()

    # -- summary --

    def done_runs(self) -> int:
        return sum(st.runs for st in self.stats.values())

    def table(self) -> Table:
        table = Table(title="raftlab stress results", title_justify="left",
                      caption="fail rate: upper bound at 95 % confidence", caption_justify="left")
        table.add_column("Test", no_wrap=True,
                         min_width=max(len(n) for n in self.names.values()))
        table.add_column("Runs", justify="right", no_wrap=True)
        table.add_column("Fails", justify="right", no_wrap=True)
        table.add_column("Mean ± std s", justify="right", no_wrap=True)
        table.add_column("Max s", justify="right", no_wrap=True)
        table.add_column("Fail rate <", justify="right", no_wrap=True)
        for test, st in self.stats.items():
            failed = f"[red]{st.failures}[/red]" if st.failures else "0"
            bound = failure_rate_upper_bound(st.failures, st.runs) if st.runs else 1.0
            table.add_row(self.names[test], f"{st.runs}/{st.planned}", failed,
                          f"{st.mean:.2f} ± {st.std:.2f}", f"{st.max:.2f}",
                          fmt_pct(bound))
        return table

    def summary_lines(self, interrupted: bool) -> list[str]:
        end = self.finished_at or time.monotonic()
        wall = end - self.started
        runs = self.done_runs()
        fails = sum(st.failures for st in self.stats.values())
        lines = []
        if interrupted:
            lines.append(f"INTERRUPTED after {runs} of {len(self.jobs)} runs "
                         "(partial results below)")
        lines.append(bound_sentence(fails, runs) + " (exact one-sided Clopper-Pearson bound; "
                     "for 0 failures about the rule of three, 3/n)")
        rate = 60.0 * runs / wall if wall > 0 else 0.0
        lines.append(f"wall time {wall:.1f} s, {rate:.1f} runs/min, workers: {self.workers}, "
                     f"base seed {self.base_seed}")
        if self.cluster:
            lines.append(f"cluster: {self.cluster} (load averages in results.jsonl are the "
                         "workers' hosts')")
        now = loadavg()
        lines.append(
            f"machine: {machine_cores()} cores; load average at start {self.load_at_start[0]:.2f}, "
            f"highest seen {self.max_load:.2f}, now {now[0]:.2f} / {now[1]:.2f} / {now[2]:.2f}")
        lines.append(f"results: {self.outdir / 'results.jsonl'}")
        if self.failures:
            lines.append(f"failures ({len(self.failures)}), logs in {self.outdir / 'failures'}, "
                         f"all rerun commands in {self.outdir / 'rerun.sh'}:")
            for result, path, rerun in self.failures[:10]:
                lines.append(f"  {short_name(result.test)} seed {result.seed}: {result.message}")
                lines.append(f"    log:   {path}")
                lines.append(f"    rerun: {rerun}")
            if len(self.failures) > 10:
                lines.append(f"  ... and {len(self.failures) - 10} more")
        return lines

    def print_summary(self, interrupted: bool) -> None:
        self.finished_at = self.finished_at or time.monotonic()
        table = self.table()
        lines = self.summary_lines(interrupted)
        # Files and pipes get a width that fits the table (rich assumes 80 columns there).
        self.console.print(table, width=None if self.console.is_terminal
                           else max(self.console.width, 110))
        for line in lines:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        with open(self.outdir / "summary.txt", "w", encoding="utf-8") as fh:
            Console(file=fh, width=120, no_color=True, color_system=None).print(table)
            fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        self.results_file.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftlab stress",
        description="Run Raft tests many times in parallel (pytest-xdist), each run with its "
        "own seed; keep failure logs with a rerun command; print per-test statistics. "
        "Options after '--' go to pytest unchanged.",
    )
    parser.add_argument("tests", nargs="*", metavar="TEST",
                        help="test names, parts (2A..2D), files or node ids; default: all "
                        "graded tests")
    parser.add_argument("-k", dest="keyword", metavar="EXPR", help="pytest -k expression")
    parser.add_argument("-m", dest="marker", metavar="EXPR", help="pytest -m expression")
    parser.add_argument("-n", "--runs", type=int, default=10, help="runs per test (default 10)")
    parser.add_argument("-p", "--workers", type=int, default=None,
                        help="parallel workers (default: the number of cores)")
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
    parser.add_argument("-s", "--sequential", action="store_true",
                        help="run all runs of one test before the next (default: interleave)")
    parser.add_argument("--seed", type=int, help="base seed from which run seeds are drawn")
    parser.add_argument("--no-live", action="store_true", help="no live progress display")
    cluster = parser.add_argument_group("cluster (pip install 'raftlab[cluster]')")
    cluster.add_argument("--backend", choices=BACKENDS, default="local",
                         help="where runs execute: local (pytest-xdist on this machine, "
                         "default) or dask (one task per run on a Dask cluster)")
    cluster.add_argument("--scheduler", metavar="ADDR",
                         help="dask scheduler address (tcp://HOST:8786) or scheduler JSON file")
    cluster.add_argument("--workers-per-host", type=int, metavar="N",
                         help="dask: at most N concurrent runs per host (default: the "
                         "workers' RUNS resources, else their threads)")
    return parser


def _run_backend(backend: Backend, jobs: Sequence[Job], results: queue.Queue) -> None:
    try:
        backend.run(jobs, results.put)
        results.put(None)
    except BaseException as exc:  # handed to the main thread, which reports it
        results.put(exc)


def main(argv: list[str] | None = None, console: Console | None = None,
         backend: Backend | None = None) -> int:
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
    workers = args.workers or cores
    if args.runs < 1 or workers < 1:
        parser.error("--runs and --workers must be at least 1")
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
    impl = args.impl
    if impl and os.path.exists(impl):
        impl = str(Path(impl).resolve())  # the rerun command must work from the rootdir
    selection = selection_args(args.tests, args.keyword, args.marker, extra)
    try:
        rootdir, tests = collect(selection)
    except BackendError as exc:
        err.print(f"raftlab stress: {exc}", markup=False)
        return EXIT_USAGE
    base_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    jobs = plan_jobs(tests, args.runs, base_seed, args.sequential)
    options = RunOptions(impl=impl, timeout=args.timeout or None, debug=args.debug,
                         keep_passing_logs=args.archive,
                         pytest_args=(("--sim",) if args.sim else ()) + tuple(extra),
                         rootdir=rootdir)
    outdir = (args.output or Path(f"stress-{time.strftime('%Y%m%d-%H%M%S')}")).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    where = f"{workers} workers ({cores} cores)"
    cluster = None
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
    return _drive(run, backend, jobs, live=not args.no_live, err=err)


def _drive(run: StressRun, backend: Backend, jobs: Sequence[Job], live: bool,
           err: Console) -> int:
    """Feed results to ``run`` until the backend ends; Ctrl-C cancels and keeps results."""
    results: queue.Queue = queue.Queue()
    thread = threading.Thread(target=_run_backend, args=(backend, jobs, results),
                              name="raftlab-stress-backend", daemon=True)
    interrupted = False
    interrupts = 0
    backend_error: BaseException | None = None
    if live:
        run.progress.start()
    thread.start()
    try:
        while True:
            try:
                item = results.get(timeout=0.25)
            except queue.Empty:
                run.progress.refresh()  # keeps elapsed time and ETA moving
                continue
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts >= 3:  # stop waiting for the backend altogether
                    break
                interrupted = True
                err.print("\ninterrupted: stopping runs" if interrupts == 1
                          else "\nstopping harder")
                backend.cancel()
                continue
            if item is None:
                break
            if isinstance(item, BaseException):
                backend_error = item
                break
            run.record(item)
    except KeyboardInterrupt:
        interrupted = True
        backend.cancel()
    finally:
        run.finished_at = time.monotonic()
        if live:
            run.progress.stop()
        # Drain what finished before the stop, so the results file holds every run seen.
        while True:
            try:
                item = results.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, RunResult):
                run.record(item)
        run.close()
    thread.join(timeout=1.0 if interrupts >= 3 else 30.0)
    run.print_summary(interrupted)
    if backend_error is not None:
        err.print(f"raftlab stress: {backend_error}", markup=False)
        return EXIT_BACKEND
    if interrupted:
        return EXIT_INTERRUPTED
    if any(st.failures for st in run.stats.values()):
        return EXIT_FAILED
    if run.done_runs() + run.skipped < len(jobs):
        return EXIT_BACKEND
    return EXIT_OK


def results_of(path: Path | str) -> list[dict]:
    """Read a results.jsonl file (a helper for other tools and tests)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


if __name__ == "__main__":
    sys.exit(main())
