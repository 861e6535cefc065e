"""``raftlab grade``: grade a Raft implementation, or a whole class of them, part by part.

This module is the command line; the grading itself is :mod:`tools.grade.grader`.
Every graded test of the rubric runs N times (each run with its own seed) in
separate, limited and supervised pytest processes (see :mod:`tools.grade.isolation`),
always in isolated mode in real time (each Raft peer in its own process, as a
dedicated user when the grader is root: :mod:`tools.grade.sandbox`), reusing the
stress runner's backend; a test earns its points only if all N runs pass; each
part has a wall-clock budget.  Scores are computed here, in the grader's process,
from the per-run results, after every process of the run is gone.  ``--sim``
grades in simulated time, in-process; every report says which.

Examples::

    raftlab grade alice/raft.py                  # one submission (file, package or folder)
    raftlab grade raft --runs 1                  # the bundled reference Raft
    raftlab grade --batch submissions/ -o grades # one subfolder per student -> grades.csv
    raftlab grade alice/ --only 2A --runs 5      # a part (or test names) only
    raftlab grade alice/ --rubric my-course.toml # points, runs and budgets from a rubric

A submission is a ``.py`` module, a package folder, or a folder holding ``raft.py``
or one package (see :mod:`tools.grade.submission`).  Reports go to ``-o`` (default
``grade-<timestamp>``): report.json, results.json (Gradescope), junit.xml,
summary.txt and logs/ of failed runs; with ``--batch`` one such folder per student
plus grades.csv.

Exit status: 0 full marks (batch: every submission graded), 1 points lost (batch:
some submission could not be graded), 2 bad usage or rubric, 3 the submission could
not be graded (single) or the tests could not be collected; stopped: 130 (Ctrl-C),
143 (SIGTERM), 129 (SIGHUP).  A stop keeps every submission whose reports were
written (a signal after a submission's last runs waits until its reports and its
grades.csv row are), writes no report for the one being graded, and says which,
and whether tests were running.  A second or third signal during a stop does not
cut its clean-up short (:mod:`tools.grade.stopping`); the private run folder of a
grader killed outright is removed by the next one (:mod:`tools.grade.runfolder`).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from tools.console import make_console
from tools.grade.grader import Catalog, Grader
from tools.grade.report import batch_table, write_csv
from tools.grade.rubric import RubricError, load, resolve, restrict
from tools.grade.score import SubmissionGrade
from tools.grade.submission import SubmissionError, discover_batch
from tools.machine import machine_cores
from tools.stress.backends.base import BackendError, BackendUnavailable
from tools.stress.backends.factory import BACKENDS, check_backend
from tools.stress.results import safe_file_part
from tools.termination import (
    describe,
    exit_status,
    stop_signals_as_interrupts,
)

EXIT_FULL, EXIT_LOST, EXIT_USAGE, EXIT_UNGRADED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftlab grade",
        description="Grade a Raft implementation (or --batch a folder of them) with a rubric: "
        "every graded test runs N times in isolated, limited processes and earns its points "
        "only if all runs pass. Writes a terminal table, report.json, junit.xml and a "
        "Gradescope results.json (batch: plus grades.csv).")
    parser.add_argument("submission", nargs="?",
                        help="a .py file, a package folder, a folder holding raft.py or one "
                        "package, or an installed module name (e.g. raft, the reference)")
    parser.add_argument("--batch", type=Path, metavar="DIR",
                        help="grade every subfolder of DIR as one submission: a subfolder "
                        "holds raft.py (with any helper modules beside it) or one package "
                        "(a folder with __init__.py); grades.csv gets one row each")
    parser.add_argument("--rubric", type=Path, help="rubric TOML file (default: the shipped "
                        "tools/grade/rubrics/default.toml)")
    parser.add_argument("-n", "--runs", type=int, help="runs per test (default: the rubric's)")
    parser.add_argument("--only", action="append", default=[], metavar="PART|TEST",
                        help="grade only this part (2A) or test; repeatable")
    parser.add_argument("-o", "--output", type=Path,
                        help="report folder (default: grade-<timestamp>)")
    parser.add_argument("-p", "--workers", type=int, default=1,
                        help="parallel test processes per submission (default 1: the tests "
                        "are timing-based; more than the free cores makes them unfair)")
    parser.add_argument("--timeout", type=float,
                        help="per-run watchdog in seconds (default: the rubric's)")
    parser.add_argument("--memory-mb", type=int,
                        help="address-space limit per test process (default: the rubric's)")
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="multiply every part's time budget (e.g. 2 on a slow machine)")
    parser.add_argument("--seed", type=int, help="base seed of the run seeds")
    parser.add_argument("--list", action="store_true",
                        help="print the resolved rubric (tests and points) and exit")
    parser.add_argument("--sim", action="store_true",
                        help="run on the simulated clock (labtests.sim), in-process (not "
                        "isolated): fast and exactly reproducible feedback; grade final marks "
                        "in real time, which is always isolated")
    cluster = parser.add_argument_group("cluster (pip install '.[cluster]' in a raftlab checkout)")
    cluster.add_argument("--backend", choices=BACKENDS, default="local",
                         help="where runs execute: local (default) or dask")
    cluster.add_argument("--scheduler", metavar="ADDR",
                         help="dask scheduler address (tcp://HOST:8786) or scheduler file")
    cluster.add_argument("--workers-per-host", type=int, metavar="N",
                         help="dask: at most N concurrent runs per host")
    return parser


def main(argv: list[str] | None = None, console: Console | None = None) -> int:
    """``raftlab grade``; SIGTERM and SIGHUP end it like Ctrl-C (tools.termination):
    the running tests stopped and swept, finished reports kept, exit 128 + the signal."""
    with stop_signals_as_interrupts():
        try:
            return _main(argv, console)
        except KeyboardInterrupt as exc:  # before or after the runs: none of ours to stop
            make_console(stderr=True).print(f"raftlab grade: {describe(exc)}", markup=False)
            return exit_status(exc)


def _main(argv: list[str] | None, console: Console | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    console = console or make_console()
    err = make_console(stderr=True)
    if not args.list and (args.submission is None) == (args.batch is None):
        parser.error("give one submission or --batch DIR")
    if args.workers < 1 or (args.runs is not None and args.runs < 1):
        parser.error("--workers and --runs must be at least 1")
    if args.workers > machine_cores():
        err.print(f"[yellow]warning:[/yellow] {args.workers} workers on {machine_cores()} "
                  "cores: timing-based tests starved of CPU fail without a Raft bug.")
    try:
        rubric = load(args.rubric)
        if args.runs:
            rubric.runs = args.runs
        if args.timeout:
            rubric.per_run_timeout_s = args.timeout
        if args.memory_mb:
            rubric.memory_mb = args.memory_mb
        catalog = Catalog.collect()
        resolve(rubric, catalog.by_part)
        restrict(rubric, args.only)
    except RubricError as exc:
        err.print(f"raftlab grade: {exc}", markup=False, soft_wrap=True)
        return EXIT_USAGE
    except BackendError as exc:
        err.print(f"raftlab grade: cannot collect the graded tests: {exc}", markup=False)
        return EXIT_UNGRADED
    for part in rubric.parts:
        part.budget_s *= args.budget_scale
    if args.list:
        for part in rubric.parts:
            console.print(f"{part.name}: {part.max_points:g} points, budget "
                          f"{part.budget_s:g} s per pass")
            for test, pts in part.tests.items():
                console.print(f"  {test} {pts:g}")
        console.print(f"total {rubric.max_points:g} points; {rubric.runs} run(s) per test")
        return EXIT_FULL
    base_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    outdir = (args.output or Path(f"grade-{time.strftime('%Y%m%d-%H%M%S')}")).resolve()
    try:
        check_backend(args.backend)
    except BackendUnavailable as exc:
        err.print(f"raftlab grade: {exc}", markup=False, soft_wrap=True)
        return EXIT_USAGE
    if args.backend == "dask" and not args.scheduler:
        err.print("raftlab grade: --backend dask needs --scheduler tcp://HOST:8786", markup=False)
        return EXIT_USAGE
    outdir.mkdir(parents=True, exist_ok=True)
    # Covered for every run (own mount namespace, with a dedicated run user): the other
    # submissions and every report.
    hide = [outdir] + ([args.batch.resolve()] if args.batch is not None else [])
    grader = Grader(rubric, catalog, workers=args.workers, base_seed=base_seed,
                    console=console, sim=args.sim, backend=args.backend,
                    scheduler=args.scheduler, workers_per_host=args.workers_per_host,
                    hide=hide)
    if grader.reclaimed:
        err.print(f"note: removed {len(grader.reclaimed)} private run folder(s) left in "
                  f"{grader.reclaimed[0].parent} by grade runs that were killed",
                  markup=False, soft_wrap=True)
    if grader.fallback_why and not args.sim:
        err.print(f"note: {grader.fallback_why}", markup=False, soft_wrap=True)
    progress = Progress()
    try:
        return _grade_all(args, grader, outdir, console, err, progress)
    except KeyboardInterrupt as exc:
        # Only a stop during a part's runs stopped tests; one that waited for a
        # submission's reports (or came between runs) found none running.
        what = ("the running tests were stopped" if grader.stopped_runs
                else "no test was running")
        try:
            err.print(f"raftlab grade: {describe(exc)}; {what}; "
                      f"{progress.stopped_words(outdir)}", markup=False, soft_wrap=True)
        except OSError:  # the terminal is gone
            pass
        return exit_status(exc)  # EXIT_INTERRUPTED for Ctrl-C, 128 + N for signal N


@dataclass
class Progress:
    """What is graded and recorded so far: said in the last words after a stop."""

    batch: int | None = None  # the batch's number of submissions (None: a single one)
    graded: list[SubmissionGrade] = field(default_factory=list)  # reports written

    def stopped_words(self, outdir: Path) -> str:
        done = len(self.graded)
        if self.batch is None:
            return (f"the submission's reports were written before the stop: {outdir}" if done else
                    "the submission was not graded to the end: no report was written")
        if not done:
            return (f"none of the {self.batch} submission(s) was graded to the end: no "
                    f"report was written, grades.csv in {outdir} has no row")
        return (f"{done} of {self.batch} submission(s) graded: their reports and grades.csv "
                f"are in {outdir}")


def _grade_all(args: argparse.Namespace, grader: Grader, outdir: Path, console: Console,
               err: Console, progress: Progress) -> int:
    rubric = grader.rubric
    if args.batch is None:
        grade = grader.grade(args.submission, outdir, name=None, record=progress.graded.append)
        console.print(f"reports in {outdir}", soft_wrap=True)
        if grade.error:
            return EXIT_UNGRADED
        return EXIT_FULL if grade.score >= grade.max_score else EXIT_LOST
    try:
        subs, notes = discover_batch(args.batch)
    except SubmissionError as exc:
        err.print(f"raftlab grade: {exc}", markup=False)
        return EXIT_USAGE
    for note in notes:
        err.print(f"note: {note}", markup=False)
    outdir.mkdir(parents=True, exist_ok=True)
    part_names = [p.name for p in rubric.parts]
    progress.batch = len(subs)
    grades = progress.graded

    def record(grade: SubmissionGrade) -> None:
        # Rewritten after every submission (before a stop signal acts: Grader.grade), so
        # an interrupted batch keeps every grade that is done.
        grades.append(grade)
        write_csv(grades, part_names, outdir / "grades.csv")

    write_csv([], part_names, outdir / "grades.csv")  # no earlier batch's rows survive a stop
    for name, path in subs:
        grader.grade(str(path), outdir / safe_file_part(name), name=name, record=record)
    console.print(batch_table(grades, part_names))
    console.print(f"grades: {outdir / 'grades.csv'}; per-submission reports in {outdir}",
                  soft_wrap=True)
    return EXIT_LOST if any(g.error for g in grades) else EXIT_FULL


if __name__ == "__main__":
    sys.exit(main())
