"""What a stress run shows: live progress bars while it runs, the results table at the end.

Only presentation lives here (rich); the figures come from :mod:`.stats`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

from tools.stress.backends.base import RunResult
from tools.stress.results import short_name
from tools.stress.stats import TestStats, failure_rate_upper_bound, fmt_pct

SHOWN_INCONCLUSIVE = 3  # runs listed by name in the summary; the rest are counted


def display_names(tests: Sequence[str]) -> dict[str, str]:
    """Bare test names when they are unique (the usual case), else ``file::name``."""
    bare = {t: t.rsplit("::", 1)[-1] for t in tests}
    if len(set(bare.values())) == len(bare):
        return bare
    return {t: short_name(t) for t in tests}


class _StatusBar(BarColumn):
    """A bar that turns red as soon as its test has failed once."""

    def render(self, task: Task) -> ProgressBar:
        bar = super().render(task)
        if task.fields.get("failures"):
            bar.complete_style = bar.finished_style = bar.pulse_style = "red"
        return bar


class LiveDisplay:
    """An overall bar with an ETA, and one bar per test (red once it has failed)."""

    def __init__(self, console: Console, planned: Mapping[str, int],
                 names: Mapping[str, str]) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), _StatusBar(bar_width=30), MofNCompleteColumn(),
            TextColumn("{task.fields[failtext]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, auto_refresh=False, transient=False,
        )
        self.overall = self.progress.add_task("[bold]all runs", total=sum(planned.values()),
                                              failures=0, failtext="")
        width = max(len(n) for n in names.values())
        self.tasks: dict[str, TaskID] = {
            test: self.progress.add_task(names[test].ljust(width), total=total,
                                         failures=0, failtext="")
            for test, total in planned.items()
        }

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def refresh(self) -> None:
        self.progress.refresh()

    def advance(self, test: str, failures: int, total_failures: int) -> None:
        self.progress.update(self.tasks[test], advance=1, failures=failures,
                             failtext=f"[red]{failures} failed[/red]" if failures else "")
        self.progress.update(self.overall, advance=1, failures=total_failures,
                             failtext=(f"[red]{total_failures} failed[/red]"
                                       if total_failures else ""))

    def note(self, text: str) -> None:
        """A line above the bars (a failure as it happens)."""
        self.progress.console.print(text, highlight=False, markup=True, soft_wrap=True)


def results_table(stats: Mapping[str, TestStats], names: Mapping[str, str]) -> Table:
    """Runs, failures, inconclusive runs, mean ± std and max time, and the failure-rate
    bound, per test (Runs counts conclusive runs: those the bound is over).  When a
    failure matched a known artifact of the lab's tests, an Artifacts column says how
    many of the Fails did (they stay failures)."""
    table = Table(title="raftlab stress results", title_justify="left",
                  caption="fail rate: upper bound at 95 % confidence", caption_justify="left")
    table.add_column("Test", no_wrap=True, min_width=max(len(n) for n in names.values()))
    table.add_column("Runs", justify="right", no_wrap=True)
    table.add_column("Fails", justify="right", no_wrap=True)
    artifacts = any(st.artifacts for st in stats.values())
    if artifacts:
        table.add_column("Artifacts", justify="right", no_wrap=True)
    table.add_column("Inconcl.", justify="right", no_wrap=True)
    table.add_column("Mean ± std s", justify="right", no_wrap=True)
    table.add_column("Max s", justify="right", no_wrap=True)
    table.add_column("Fail rate <", justify="right", no_wrap=True)
    for test, st in stats.items():
        failed = f"[red]{st.failures}[/red]" if st.failures else "0"
        bound = failure_rate_upper_bound(st.failures, st.runs) if st.runs else 1.0
        inconclusive = f"[yellow]{st.inconclusive}[/yellow]" if st.inconclusive else "0"
        if st.reruns:
            inconclusive += f" ({st.reruns} rerun)"
        extra = [f"[magenta]{st.artifacts}[/magenta]" if st.artifacts else "0"] if artifacts else []
        table.add_row(names[test], f"{st.runs}/{st.planned}", failed, *extra, inconclusive,
                      f"{st.mean:.2f} ± {st.std:.2f}", f"{st.max:.2f}", fmt_pct(bound))
    return table


def inconclusive_lines(runs: Sequence[tuple[RunResult, Path | None, str]], folder: Path,
                       shown: int = SHOWN_INCONCLUSIVE) -> list[str]:
    """The summary's list of the runs still inconclusive after the reruns (``runs``: each
    one's result, log and rerun command): the first ``shown`` by test, seed and reason,
    with the log (which says why the run was not judged and what to do) and the rerun
    command, as a failure is listed; the rest counted, so a run of thousands stays short."""
    if not runs:
        return []
    lines = [f"inconclusive runs ({len(runs)}): not judged, the machine was overloaded; "
             f"logs in {folder} (each says why, with the run's output); rerun one alone on a "
             "quieter machine:"]
    for result, log, rerun in runs[:shown]:
        lines.append(f"  {short_name(result.test)} seed {result.seed}: {result.message}")
        if log is not None:
            lines.append(f"    log:   {log}")
        lines.append(f"    rerun: {rerun}")
    if len(runs) > shown:
        lines.append(f"  ... and {len(runs) - shown} more")
    return lines
