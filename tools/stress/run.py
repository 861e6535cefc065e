"""One stress run's state: each finished run goes to the statistics, the files and the display.

:class:`StressRun` is what the command feeds results to; it owns no threads and
knows no backend, so any backend (or a test's fake one) can drive it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from labtests.artifacts import ARTIFACT_KEY
from labtests.overload import LAG_BOUND_MS
from tools.machine import loadavg, machine_cores
from tools.stress.backends.base import Job, RunOptions, RunResult
from tools.stress.display import LiveDisplay, display_names, inconclusive_lines, results_table
from tools.stress.results import ResultFiles, rerun_for, short_name
from tools.stress.stats import TestStats, bound_sentence


class StressRun:
    """Statistics, output files and the live display of one stress run."""

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
        self.max_lag_ms = 0.0  # the worst timer lag any run measured (labtests.timing)
        self.inconclusive: list[RunResult] = []  # every inconclusive attempt
        self.rerun_notes: list[str] = []  # what the reruns of inconclusive runs did
        # planned job -> its latest attempt (result, log, rerun), while that is inconclusive
        self.still_inconclusive: dict[int, tuple[RunResult, Path | None, str]] = {}
        self.attempts: dict[int, int] = {}  # planned job index -> results recorded for it
        self.skipped = 0
        self.refused: list[RunResult] = []  # not run as asked: the source changed on disk
        self.load_at_start = loadavg()
        self.started = time.monotonic()
        self.finished_at: float | None = None
        self.files = ResultFiles(outdir)
        self.names = display_names(list(self.stats))
        self.display = LiveDisplay(console, {t: st.planned for t, st in self.stats.items()},
                                   self.names)

    def record(self, result: RunResult, attempt: int = 1) -> None:
        """Account one finished run: results line, log file, statistics, display.

        ``attempt`` > 1 marks a rerun of an inconclusive run, whose result replaces it.
        """
        st = self.stats[result.test]
        if attempt > 1:
            st.rerun_of_inconclusive()
        if result.outcome == "skipped":
            self.skipped += 1
        elif result.refused:
            self.refused.append(result)  # no verdict: neither a run nor a failure
        elif result.inconclusive:
            st.add_inconclusive()
            self.inconclusive.append(result)
        else:
            st.add(result.duration, result.failed)
            if result.failed and result.properties.get(ARTIFACT_KEY):
                st.add_artifact()  # still a failure; counted apart too (labtests.artifacts)
        if result.loadavg:
            self.max_load = max(self.max_load, float(result.loadavg[0]))
        lag = result.properties.get("timer_lag_max_ms")
        if isinstance(lag, (int, float)):
            self.max_lag_ms = max(self.max_lag_ms, float(lag))
        rerun = rerun_for(result.test, result.seed, self.options)
        log_path = self.files.add(result, rerun, attempt)
        if result.inconclusive:
            self.still_inconclusive[result.job] = (result, log_path, rerun)
        else:
            self.still_inconclusive.pop(result.job, None)
        if result.failed:
            assert log_path is not None
            self.failures.append((result, log_path, rerun))
        total_failures = sum(s.failures for s in self.stats.values())
        if attempt == 1:
            self.display.advance(result.test, st.failures, total_failures)
        if result.failed:
            self.display.note(
                f"[red]FAILED[/red] {short_name(result.test)} seed={result.seed} "
                f"({result.duration:.1f} s): {result.message or ''}\n  log: {log_path}")
        elif result.refused:
            self.display.note(
                f"[yellow]REFUSED[/yellow] {short_name(result.test)} seed={result.seed}: "
                f"{result.message or ''}")
        self.display.refresh()

    def inconclusive_runs(self) -> int:
        return sum(st.inconclusive for st in self.stats.values())

    def done_runs(self) -> int:
        return sum(st.runs for st in self.stats.values())

    def summary_lines(self, interrupted: bool, how: str = "") -> list[str]:
        end = self.finished_at or time.monotonic()
        wall = end - self.started
        runs = self.done_runs()
        fails = sum(st.failures for st in self.stats.values())
        lines = []
        if interrupted:
            why = f" ({how})" if how and how != "interrupted" else ""
            lines.append(f"INTERRUPTED{why} after {runs} of {len(self.jobs)} runs "
                         "(partial results below)")
        lines.append(bound_sentence(fails, runs) + " (exact one-sided Clopper-Pearson bound; "
                     "for 0 failures about the rule of three, 3/n)")
        artifacts = sum(st.artifacts for st in self.stats.values())
        if artifacts:
            lines.append(f"known artifacts: {artifacts} of the {fails} failure(s) match a known "
                         "artifact of the lab's tests (a correct Raft can fail so; the verdict "
                         "stands: docs/harness.md, Known artifacts)")
        still = self.inconclusive_runs()
        attempts = len(self.inconclusive)
        if attempts:
            lines.append(
                f"inconclusive: {still} run(s) still inconclusive after reruns ({attempts} "
                "inconclusive attempt(s) in all): failed while the machine made timers late "
                f"by {LAG_BOUND_MS:.0f} ms or more (worst {self.max_lag_ms:.0f} ms); not "
                "counted as failures nor in the bound; fewer workers (-p) avoid them")
        lines.extend(self.rerun_notes)
        if self.refused:
            lines.append(
                f"refused: {len(self.refused)} run(s) not made: the implementation's source "
                "changed on disk after a worker loaded it, so line preemption could not give "
                "it a fresh process's points (logs in refused/ name the functions); not "
                "counted as runs nor failures; rerun stress once the files are final")
        rate = 60.0 * runs / wall if wall > 0 else 0.0
        lines.append(f"wall time {wall:.1f} s, {rate:.1f} runs/min, workers: {self.workers}, "
                     f"base seed {self.base_seed}")
        if self.cluster:
            lines.append(f"cluster: {self.cluster} (load averages in results.jsonl are the "
                         "workers' hosts')")
        now = loadavg()
        lines.append(
            f"machine: {machine_cores()} cores; load average at start {self.load_at_start[0]:.2f}, "
            f"highest seen {self.max_load:.2f}, now {now[0]:.2f} / {now[1]:.2f} / {now[2]:.2f}; "
            f"worst timer lag {self.max_lag_ms:.0f} ms (bound {LAG_BOUND_MS:.0f} ms)")
        lines.append(f"results: {self.files.results_path}")
        lines.extend(inconclusive_lines(list(self.still_inconclusive.values()),
                                        self.files.outdir / "inconclusive"))
        if self.failures:
            lines.append(f"failures ({len(self.failures)}), logs in {self.files.failures_dir}, "
                         f"all rerun commands in {self.files.rerun_path}:")
            for result, path, rerun in self.failures[:10]:
                lines.append(f"  {short_name(result.test)} seed {result.seed}: {result.message}")
                lines.append(f"    log:   {path}")
                lines.append(f"    rerun: {rerun}")
            if len(self.failures) > 10:
                lines.append(f"  ... and {len(self.failures) - 10} more")
            lines.extend(self.files.groups.summary_lines(short_name))
        return lines

    def print_summary(self, interrupted: bool, how: str = "") -> None:
        """Write summary.txt, then print the table and lines (``how``: e.g. ``terminated
        by SIGTERM``, said on the INTERRUPTED line).  The file comes first, so that a
        console that can no longer be written to (a closed terminal) cannot lose it."""
        self.finished_at = self.finished_at or time.monotonic()
        table = results_table(self.stats, self.names)
        lines = self.summary_lines(interrupted, how)
        plain = io.StringIO()
        Console(file=plain, width=120, no_color=True, color_system=None).print(table)
        self.files.write_summary(plain.getvalue(), lines)
        # Files and pipes get a width that fits the table (rich assumes 80 columns there).
        self.console.print(table, width=None if self.console.is_terminal
                           else max(self.console.width, 110))
        for line in lines:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        self.files.close()

