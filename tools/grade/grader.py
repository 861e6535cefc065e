"""Grading one submission after another: run each part's tests, then score them here.

:class:`Grader` stages a submission into a private per-run folder, runs every
graded test of the rubric N times per part on a backend (the supervised local one
of :mod:`.isolation`, or Dask under the same supervisor), and scores the per-run
results in this process (:mod:`.score`), never inside a process that runs student
code.  Real-time grading is always isolated (each Raft peer in its own process, as
a dedicated user when the grader is root: :mod:`.sandbox`); ``--sim`` grading is
in-process, and every report says which it was.  Result files are written only
after the run's supervisor has swept every process the run started.  It shares the
stress runner's job planning and backends (:mod:`tools.stress.planning`,
:mod:`tools.stress.backends`), not its command.

Inconclusive runs (failed while the machine made timers late beyond the lab's
tolerance, :mod:`labtests.overload`) are the machine's fault, not the
submission's: like ``raftlab stress``, the grader reruns them with the same seed
on half the workers, up to :data:`INCONCLUSIVE_RETRIES` times, and every report
counts them.  A run still inconclusive after that earns no points, and the report
says so in words (never a silent fail or pass).  Each failed run's failure bundle
is kept under ``bundles/`` of the report folder (a few per failure signature,
:mod:`tools.stress.groups`), and known artifacts of the lab's tests are counted
apart.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from labtests.options import HarnessOptions
from labtests.rerun import rerun_command
from tools.grade.isolation import (
    STALL_GRACE_S,
    SUPERVISOR_NOTE,
    IsolatedBackend,
    Limits,
    run_part,
    wrapper_command,
)
from tools.grade.report import remove_reports, table, write_reports
from tools.grade.rubric import Rubric
from tools.grade.runfolder import REMOVE_WAIT_S, RunFolder, reclaim_stale
from tools.grade.sandbox import (
    RunUser,
    choose_run_user,
    describe_hardening,
    kill_uid,
    make_private,
    probe_run_user,
)
from tools.grade.score import PartGrade, RunGrade, SubmissionGrade, TestGrade, grade_part
from tools.grade.stopping import whole
from tools.grade.submission import Submission, SubmissionError, stage
from tools.grade.submission import resolve as resolve_submission
from tools.selection import PARTS, part_of_file, pytest_args, resolve
from tools.stress import bundles
from tools.stress.backends.base import WORKER_PYTHON, Backend, Job, RunOptions, RunResult
from tools.stress.backends.factory import make_backend
from tools.stress.backends.pytest_runs import collect
from tools.stress.planning import plan_jobs
from tools.stress.reruns import Reruns
from tools.stress.results import safe_file_part, signature_of
from tools.termination import interrupts_deferred

INCONCLUSIVE_RETRIES = 2  # reruns of an inconclusive run (as raftlab stress's default)


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
                 scheduler: str | None = None, workers_per_host: int | None = None,
                 hide: Sequence[Path] = ()) -> None:
        self.rubric = rubric
        self.catalog = catalog
        self.workers = workers
        self.base_seed = base_seed
        self.console = console
        self.sim = sim
        self.backend = backend
        self.scheduler = scheduler
        self.workers_per_host = workers_per_host
        self.isolate = not sim  # real time is always graded isolated; --sim is in-process
        self.hide: list[Path] = list(hide)
        self._last_uid: int | None = None
        self.stopped_runs = False  # a stop signal came while a part's tests were running
        # Private run folders of grade runs that were killed (SIGKILL): never one in use.
        self.reclaimed = reclaim_stale()
        self.run_users, self.fallback_why = self._check_run_users()

    def _check_run_users(self) -> tuple[bool, str]:
        """Whether runs get a dedicated user; if not, why (said in every report)."""
        if not self.isolate:
            return False, ("simulated time, in-process: the submission runs inside the "
                           "tester's process (feedback, not final marks)")
        if self.backend != "local":
            return False, ("runs on Dask workers as the workers' user (a dedicated user per "
                           "run is a local-backend fence)")
        user, why = choose_run_user()
        if user is None:
            return False, why
        try:
            problem = probe_run_user(user, [], self.hide)
        finally:
            user.release()
        if problem is not None:
            return False, problem + "; runs use the grader's own user"
        return True, ""

    def grade(self, source: str, outdir: Path, name: str | None,
              record: Callable[[SubmissionGrade], None] | None = None) -> SubmissionGrade:
        """Grade one submission into ``outdir``; never raises for a bad submission.

        The staged code and the scratch folder live in a per-run folder readable by
        the run's user alone and removed afterwards, so no later submission of a
        batch can read this one; every process of the run is gone before the
        reports are written.

        Once the last part's runs are in, a stop signal (Ctrl-C, SIGTERM, SIGHUP)
        waits until the reports are written and ``record`` (the batch's grades.csv
        row) has seen the grade, then acts: raised in between, it lost a grade whose
        runs had all finished, or left some report files without the others.  A
        submission stopped during its runs gets no report at all (not a partial one a
        Gradescope upload would take for its score), and no earlier grading's either.
        """
        started = time.monotonic()
        self.stopped_runs = False
        outdir.mkdir(parents=True, exist_ok=True)
        for stale in ("submission", "logs", "work", "bundles"):  # the grader's own subfolders
            shutil.rmtree(outdir / stale, ignore_errors=True)
        remove_reports(outdir)
        grade = SubmissionGrade(name=name or source, source=source, impl="",
                                runs=self.rubric.runs, base_seed=self.base_seed,
                                timing="simulated" if self.sim else "real",
                                isolated=self.isolate)
        self.console.rule(f"grading {grade.name}")
        with ExitStack() as recording:
            deferring = False

            def runs_done() -> None:  # from here to the record, stop signals wait
                nonlocal deferring
                if not deferring:
                    recording.enter_context(interrupts_deferred())
                    deferring = True

            self._run_and_score(source, name, outdir, grade, runs_done)
            runs_done()  # also when nothing ran (the submission could not be staged)
            grade.elapsed_s = time.monotonic() - started
            write_reports(grade, self.rubric, outdir)
            if record is not None:
                record(grade)
        self.console.print(table(grade))
        for note in grade.verdict_notes():
            self.console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
        return grade

    def _run_and_score(self, source: str, name: str | None, outdir: Path,
                       grade: SubmissionGrade, runs_done: Callable[[], None]) -> None:
        """Stage the submission, run and score every part into ``grade``; clean up.

        ``runs_done`` is called once the last part's runs (reruns included) are in.
        """
        user = self._next_user()
        grade.run_user = user.uid if user is not None else None
        grade.hardening = describe_hardening(
            user, self.fallback_why, None if self.sim else self.limits(user, 0).run_limits())
        folder = RunFolder.make()  # 0711: the run user may enter, not list
        run_root = folder.path
        stop: BaseException | None = None
        try:
            try:
                sub = resolve_submission(source, name)
                grade.name = sub.name
                stage(sub, run_root / "code")
                if sub.kind != "installed":
                    make_private(run_root / "code", user)
                (run_root / "work").mkdir()
                make_private(run_root / "work", user)
            except (SubmissionError, OSError) as exc:
                grade.error = str(exc)
                grade.parts = [self._ungraded_part(p.name, grade.error)
                               for p in self.rubric.parts]
            else:
                grade.impl = sub.impl
                grade.notes += sub.notes
                for note in sub.notes:
                    self.console.print(f"note: {note}", markup=False, soft_wrap=True)
                last = self.rubric.parts[-1].name if self.rubric.parts else None
                for part in self.rubric.parts:
                    grade.parts.append(self._grade_part(
                        sub, part.name, outdir, folder, user, grade,
                        runs_done=runs_done if part.name == last else None))
        except BaseException as exc:
            stop = exc
            raise
        finally:
            self._clean_up(user, folder, grade, stop)

    def _clean_up(self, user: RunUser | None, folder: RunFolder, grade: SubmissionGrade,
                  stop: BaseException | None) -> None:
        """Kill what is left of the run user's processes, give the uid back, remove the
        private run folder: whole, whatever signal comes meanwhile (:mod:`.stopping`).

        A signal before the first step (a few bytecodes) or a SIGKILL of the grader
        still leaves nothing for good: the supervisor kills every process of the uid
        at its end, and the next grade run removes the folder (:mod:`.runfolder`)."""
        with whole(stop):
            if user is not None:
                left = kill_uid(user.uid)
                user.release()
                if left:
                    grade.notes.append(f"{len(left)} process(es) of the run's user were "
                                       "still alive after the run and were killed")
            if not folder.remove():
                grade.notes.append(f"the run folder {folder.path} could not be removed in "
                                   f"{REMOVE_WAIT_S:.0f} s (a run's supervisor still sweeping); "
                                   "the next grade run removes it")

    def _next_user(self) -> RunUser | None:
        if not self.run_users:
            return None
        user, _why = choose_run_user(self._last_uid)
        if user is not None:
            self._last_uid = user.uid
        return user

    def limits(self, user: RunUser | None, budget_s: float) -> Limits:
        """The fences of one part's run: the rubric's memory, CPU from the budget."""
        return Limits(memory_mb=self.rubric.memory_mb,
                      per_run_timeout_s=self.rubric.per_run_timeout_s,
                      # Twice the wall-clock budget (two busy cores), at least two minutes.
                      cpu_s=int(max(120.0, 2 * budget_s)), run_user=user,
                      hide=tuple(self.hide))

    def _ungraded_part(self, part: str, why: str) -> PartGrade:
        spec = next(p for p in self.rubric.parts if p.name == part)
        grade = PartGrade(part, spec.budget_s * self.rubric.runs)
        for test, pts in spec.tests.items():
            grade.tests.append(TestGrade(test, part, pts, runs=[
                RunGrade(run=0, seed=0, outcome="error", duration=0.0,
                         reason=f"not graded: {why}")]))
        return grade

    def _grade_part(self, sub: Submission, part: str, outdir: Path, folder: RunFolder,
                    user: RunUser | None, grade: SubmissionGrade,
                    runs_done: Callable[[], None] | None = None) -> PartGrade:
        spec = next(p for p in self.rubric.parts if p.name == part)
        tests = list(spec.tests)
        nodeids = [self.catalog.nodeid[t] for t in tests]
        seed = (self.base_seed * 31 + PARTS.index(part)) % (2**31)
        jobs = plan_jobs(nodeids, self.rubric.runs, seed, sequential=False)
        work = folder.path / "work"  # pytest's working directory: the student code's scratch
        options = RunOptions(harness=self.harness(sub), timeout=self.rubric.per_run_timeout_s,
                             rootdir=work)
        limits = self.limits(user, spec.budget_s * self.rubric.runs)
        output_log = outdir / f"pytest-{part}.txt"

        logs_used: list[Path] = []

        def backend_for(workers: int) -> Backend:
            # Each round its own pytest output (a rerun round must not overwrite the first).
            log = output_log if not logs_used else outdir / (
                f"pytest-{part}-rerun{len(logs_used)}.txt")
            logs_used.append(log)
            if self.backend == "dask":
                # Each run is a fresh pytest on a worker, under the same supervisor.
                return make_backend(
                    "dask", replace(options, rootdir=self.catalog.rootdir),
                    scheduler=self.scheduler, workers_per_host=self.workers_per_host,
                    command_prefix=wrapper_command(limits, python=WORKER_PYTHON))
            return IsolatedBackend(workers, options, self.catalog.rootdir, limits,
                                   output_log=log, hold=folder.lock)

        budget = spec.budget_s * self.rubric.runs
        self.console.print(f"{part}: {len(tests)} test(s) x {self.rubric.runs} run(s), "
                           f"budget {budget:.0f} s", highlight=False)
        stall = self.rubric.per_run_timeout_s + STALL_GRACE_S
        results, elapsed = self._run_part(jobs, backend_for(self.workers), budget, stall,
                                          on_result=self._progress(part))
        results, attempts = self._rerun_inconclusive(part, jobs, results, backend_for,
                                                     spec.budget_s, stall, grade)
        if runs_done is not None:
            runs_done()
        by_test: dict[str, list[RunResult]] = {t: [] for t in tests}
        name_of = {self.catalog.nodeid[t]: t for t in tests}
        logs: dict[tuple[str, int], str] = {}
        reruns: dict[tuple[str, int], str] = {}
        kept: dict[tuple[str, int], str] = {}
        for res in results:
            test = name_of[res.test]
            by_test[test].append(res)
            packed = res.properties.pop(bundles.PACKED_KEY, None) if res.properties else None
            if not (res.failed or res.inconclusive):
                continue
            rerun = rerun_command(test, res.seed, self.rerun_harness(sub), debug=True)
            reruns[(test, res.job)] = rerun
            run_no = len(by_test[test])
            if res.failed:
                bundle = self._keep_bundle(grade, res, rerun, packed, outdir,
                                           f"{test}-run{run_no}-s{res.seed}")
                if bundle is not None:
                    kept[(test, res.job)] = bundle
            if res.log:
                rel = f"logs/{test}-run{run_no}-s{res.seed}.log"
                (outdir / "logs").mkdir(exist_ok=True)
                (outdir / rel).write_text(f"test: {test}\nseed: {res.seed}\n"
                                          f"error: {res.message}\nrerun: {rerun}\n\n{res.log}",
                                          encoding="utf-8")
                logs[(test, res.job)] = rel
        for log in logs_used:
            grade.notes += [n for n in supervisor_notes(log, part) if n not in grade.notes]
        return grade_part(self.rubric, part, by_test, elapsed, logs, reruns,
                          bundles=kept, attempts=attempts)

    def _run_part(self, jobs: Sequence[Job], backend: Backend, budget_s: float,
                  stall_s: float, on_result: Callable[[RunResult], None]
                  ) -> tuple[list[RunResult], float]:
        """:func:`.isolation.run_part`, noting a stop that came while the runs ran (the
        last words then say the running tests were stopped: :attr:`stopped_runs`)."""
        try:
            return run_part(jobs, backend, budget_s, stall_s, on_result=on_result)
        except KeyboardInterrupt:
            self.stopped_runs = True
            raise

    def _rerun_inconclusive(self, part: str, jobs: Sequence[Job], results: list[RunResult],
                            backend_for: Callable[[int], Backend], pass_budget_s: float,
                            stall_s: float, grade: SubmissionGrade
                            ) -> tuple[list[RunResult], dict[int, int]]:
        """Rerun inconclusive runs (same seed, half the workers each round), like stress.

        Returns the results with each rerun's result in place of the inconclusive one,
        and the attempts per job index that was rerun.  A rerun that did not happen
        (budget, stall: worker ``-``) leaves the run inconclusive, never failed.
        """
        results = list(results)
        position = {job.index: i for i, job in enumerate(jobs)}
        attempts: dict[int, int] = {}
        planner = Reruns(self.workers, INCONCLUSIVE_RETRIES)
        grade.inconclusive_attempts += sum(1 for r in results if r.inconclusive)
        while (plan := planner.next_round(jobs, results)) is not None:
            note = plan.note(f"{part}: ")
            grade.rerun_notes.append(note)
            self.console.print(note, highlight=False, soft_wrap=True)
            # Not the student's time: a whole pass of the part's budget per rerun, at least.
            budget = pass_budget_s * max(1, len(plan.jobs))
            again, _elapsed = self._run_part(plan.renumbered, backend_for(plan.workers),
                                             budget, stall_s, on_result=self._progress(part))
            for res in again:
                if res.worker == "-":  # did not run (budget, stall): still inconclusive
                    continue
                res = plan.planned(res)
                attempts[res.job] = attempts.get(res.job, 1) + 1
                grade.inconclusive_attempts += res.inconclusive
                results[position[res.job]] = res
        return results, attempts

    def _keep_bundle(self, grade: SubmissionGrade, res: RunResult, rerun: str, packed: Any,
                     outdir: Path, name: str) -> str | None:
        """Group a failed run by signature; keep its bundle if the caps allow (a path
        relative to the report folder)."""
        groups = grade.groups
        sig = signature_of(res, packed)
        groups.add(sig, res.test.rsplit("::", 1)[-1], res.seed, rerun)
        if not bundles.valid(packed):
            return None
        if not groups.may_keep(sig):
            groups.not_kept += 1
            return None
        rel = f"bundles/{safe_file_part(name)}"
        if (outdir / rel).exists():
            shutil.rmtree(outdir / rel)
        if bundles.unpack(packed, outdir / rel) is None:
            return None
        groups.kept_bundle(sig, rel)
        return rel

    def harness(self, sub: Submission) -> HarnessOptions:
        """The harness options of a submission's runs: isolated unless in simulated time."""
        return HarnessOptions(impl=sub.impl, sim=self.sim, isolate=self.isolate)

    def rerun_harness(self, sub: Submission) -> HarnessOptions:
        """As :meth:`harness`, naming the submission where the student has it (the staged
        copy is gone after the run)."""
        impl = str(sub.entry) if sub.entry is not None else sub.impl
        return HarnessOptions(impl=impl, sim=self.sim, isolate=self.isolate)

    def _progress(self, part: str) -> Callable[[RunResult], None]:
        def show(res: RunResult) -> None:
            name = res.test.rsplit("::", 1)[-1]
            colour = {"passed": "green", "inconclusive": "yellow"}.get(res.outcome, "red")
            self.console.print(f"  {part} {name} seed {res.seed}: [{colour}]{res.outcome}"
                               f"[/{colour}] ({res.duration:.1f} s)"
                               + (f" {res.message}" if (res.failed or res.inconclusive)
                                  and res.message else ""),
                               highlight=False, soft_wrap=True)
        return show


def supervisor_notes(output_log: Path, part: str) -> list[str]:
    """What the run's supervisor had to do (kill leftovers, cap output), from its log."""
    try:
        text = output_log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = re.findall(re.escape(SUPERVISOR_NOTE) + r" (.*)", text)
    return [f"{part}: {line.strip()}" for line in dict.fromkeys(found)]
