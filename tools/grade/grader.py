"""Grading one submission after another: run each part's tests, then score them here.

:class:`Grader` stages a submission, runs every graded test of the rubric N times
per part on a backend (the isolated local one of :mod:`.isolation`, or Dask
under the same limits wrapper), and scores the per-run results in this process
(:mod:`.score`), never inside a process that runs student code.  It shares the
stress runner's job planning and backends (:mod:`tools.stress.planning`,
:mod:`tools.stress.backends`), not its command.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from labtests.options import HarnessOptions
from labtests.rerun import rerun_command
from tools.grade.isolation import STALL_GRACE_S, IsolatedBackend, Limits, run_part, wrapper_command
from tools.grade.report import table, write_reports
from tools.grade.rubric import Rubric
from tools.grade.score import PartGrade, RunGrade, SubmissionGrade, TestGrade, grade_part
from tools.grade.submission import Submission, SubmissionError, stage
from tools.grade.submission import resolve as resolve_submission
from tools.selection import PARTS, part_of_file, pytest_args, resolve
from tools.stress.backends.base import WORKER_PYTHON, Backend, RunOptions, RunResult
from tools.stress.backends.factory import make_backend
from tools.stress.backends.pytest_runs import collect
from tools.stress.planning import plan_jobs


class Catalog:
    """The graded tests as collected from the installed suites (no student code runs)."""

    def __init__(self, rootdir: Path, nodeids: list[str]) -> None:
        self.rootdir = rootdir
        self.nodeid: dict[str, str] = {}
        self.by_part: dict[str, list[str]] = {p: [] for p in PARTS}
        for nodeid in nodeids:
            path, _, name = nodeid.partition("::")
            part = part_of_file(path)
            if part is not None and "[" not in name:
                self.by_part[part].append(name)
                self.nodeid[name] = nodeid

    @classmethod
    def collect(cls) -> Catalog:
        rootdir, nodeids = collect(pytest_args(resolve([])))
        return cls(rootdir, nodeids)


class Grader:
    """Grades submissions one after the other with one rubric."""

    def __init__(self, rubric: Rubric, catalog: Catalog, *, workers: int, base_seed: int,
                 console: Console, sim: bool = False, backend: str = "local",
                 scheduler: str | None = None, workers_per_host: int | None = None) -> None:
        self.rubric = rubric
        self.catalog = catalog
        self.workers = workers
        self.base_seed = base_seed
        self.console = console
        self.sim = sim
        self.backend = backend
        self.scheduler = scheduler
        self.workers_per_host = workers_per_host

    def grade(self, source: str, outdir: Path, name: str | None) -> SubmissionGrade:
        """Grade one submission into ``outdir``; never raises for a bad submission."""
        started = time.monotonic()
        outdir.mkdir(parents=True, exist_ok=True)
        for stale in ("submission", "logs", "work"):  # the grader's own subfolders
            shutil.rmtree(outdir / stale, ignore_errors=True)
        grade = SubmissionGrade(name=name or source, source=source, impl="",
                                runs=self.rubric.runs, base_seed=self.base_seed)
        self.console.rule(f"grading {grade.name}")
        try:
            sub = resolve_submission(source, name)
            grade.name = sub.name
            stage(sub, outdir / "submission")
        except (SubmissionError, OSError) as exc:
            grade.error = str(exc)
            grade.parts = [self._ungraded_part(p.name, grade.error) for p in self.rubric.parts]
        else:
            grade.impl = sub.impl
            grade.notes += sub.notes
            for note in sub.notes:
                self.console.print(f"note: {note}", markup=False, soft_wrap=True)
            for part in self.rubric.parts:
                grade.parts.append(self._grade_part(sub, part.name, outdir))
        grade.elapsed_s = time.monotonic() - started
        write_reports(grade, self.rubric, outdir)
        self.console.print(table(grade))
        return grade

    def _ungraded_part(self, part: str, why: str) -> PartGrade:
        spec = next(p for p in self.rubric.parts if p.name == part)
        grade = PartGrade(part, spec.budget_s * self.rubric.runs)
        for test, pts in spec.tests.items():
            grade.tests.append(TestGrade(test, part, pts, runs=[
                RunGrade(run=0, seed=0, outcome="error", duration=0.0,
                         reason=f"not graded: {why}")]))
        return grade

    def _grade_part(self, sub: Submission, part: str, outdir: Path) -> PartGrade:
        spec = next(p for p in self.rubric.parts if p.name == part)
        tests = list(spec.tests)
        nodeids = [self.catalog.nodeid[t] for t in tests]
        seed = (self.base_seed * 31 + PARTS.index(part)) % (2**31)
        jobs = plan_jobs(nodeids, self.rubric.runs, seed, sequential=False)
        work = outdir / "work"  # pytest's working directory: the student code's scratch
        work.mkdir(exist_ok=True)
        options = RunOptions(harness=self.harness(sub), timeout=self.rubric.per_run_timeout_s,
                             rootdir=work)
        limits = Limits(memory_mb=self.rubric.memory_mb,
                        per_run_timeout_s=self.rubric.per_run_timeout_s)
        backend: Backend
        if self.backend == "dask":
            # Each run is a fresh pytest on a worker, under the same limits wrapper.
            backend = make_backend(
                "dask", replace(options, rootdir=self.catalog.rootdir),
                scheduler=self.scheduler, workers_per_host=self.workers_per_host,
                command_prefix=wrapper_command(limits, python=WORKER_PYTHON))
        else:
            backend = IsolatedBackend(self.workers, options, self.catalog.rootdir, limits,
                                      output_log=outdir / f"pytest-{part}.txt")
        budget = spec.budget_s * self.rubric.runs
        self.console.print(f"{part}: {len(tests)} test(s) x {self.rubric.runs} run(s), "
                           f"budget {budget:.0f} s", highlight=False)
        results, elapsed = run_part(jobs, backend, budget,
                                    self.rubric.per_run_timeout_s + STALL_GRACE_S,
                                    on_result=self._progress(part))
        by_test: dict[str, list[RunResult]] = {t: [] for t in tests}
        name_of = {self.catalog.nodeid[t]: t for t in tests}
        logs: dict[tuple[str, int], str] = {}
        reruns: dict[tuple[str, int], str] = {}
        for res in results:
            test = name_of[res.test]
            by_test[test].append(res)
            if not res.failed:
                continue
            rerun = rerun_command(test, res.seed, options.harness, debug=True)
            reruns[(test, res.job)] = rerun
            if res.log:
                rel = f"logs/{test}-run{len(by_test[test])}-s{res.seed}.log"
                (outdir / "logs").mkdir(exist_ok=True)
                (outdir / rel).write_text(f"test: {test}\nseed: {res.seed}\n"
                                          f"error: {res.message}\nrerun: {rerun}\n\n{res.log}",
                                          encoding="utf-8")
                logs[(test, res.job)] = rel
        return grade_part(self.rubric, part, by_test, elapsed, logs, reruns)

    def harness(self, sub: Submission) -> HarnessOptions:
        """The harness options of a submission's runs (and of their rerun commands)."""
        return HarnessOptions(impl=sub.impl, sim=self.sim)

    def _progress(self, part: str) -> Callable[[RunResult], None]:
        def show(res: RunResult) -> None:
            name = res.test.rsplit("::", 1)[-1]
            colour = "green" if res.outcome == "passed" else "red"
            self.console.print(f"  {part} {name} seed {res.seed}: [{colour}]{res.outcome}"
                               f"[/{colour}] ({res.duration:.1f} s)"
                               + (f" {res.message}" if res.failed and res.message else ""),
                               highlight=False, soft_wrap=True)
        return show
