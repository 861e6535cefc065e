"""The live progress line and the final summary of ``raftlab explore``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from labtests.explore.monitors import kind_of


def make_progress(console: Console, total: int | None, budget: float | None) -> Progress:
    what = f"{total} schedules" if total else f"{budget:.0f} s budget"
    return Progress(
        TextColumn(f"[bold]explore[/] ({what})"),
        BarColumn(),
        TextColumn("{task.completed} run"),
        TextColumn("{task.fields[failures]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def failures_text(counts: Counter[str]) -> str:
    if not counts:
        return "[green]no violations[/]"
    return "[red]" + ", ".join(f"{m}: {c}" for m, c in sorted(counts.items())) + "[/]"


def summary(console: Console, *, runs: int, elapsed: float, counts: Counter[str],
            minimal: dict[str, dict[str, Any]], out_dir: str, impl: str | None,
            virtual: float) -> None:
    rate = runs / elapsed * 60 if elapsed > 0 else 0.0
    console.print(f"\n[bold]{runs}[/] schedules in {elapsed:.1f} s ({rate:.0f}/min, "
                  f"{virtual:.0f} virtual s) against {impl or 'the bundled Raft'}")
    if not counts:
        console.print("[green]No monitor reported a violation.[/]")
    else:
        table = Table(title="violations by monitor")
        for col in ("monitor", "kind", "schedules", "minimal steps", "replay"):
            table.add_column(col)
        for monitor, count in sorted(counts.items()):
            m = minimal.get(monitor, {})
            steps = (f"{m['steps']} (from {m['original_steps']})" if "steps" in m
                     else m.get("error", "-"))
            table.add_row(monitor, kind_of(monitor), str(count), steps,
                          escape(m.get("replay", "-")))
        console.print(table)
        for monitor, m in sorted(minimal.items()):
            if "description" not in m:
                if "error" in m:
                    console.print(f"\n[bold red]{escape(monitor)}[/]: {escape(m['error'])}")
                if "schedule_file" in m:
                    console.print(f"schedule (not shrunk): {escape(m['schedule_file'])}")
                continue
            console.print(f"\n[bold red]{escape(m['violation'].splitlines()[0])}[/]")
            if "note" in m:
                console.print(escape(m["note"]))
            console.print(m["description"], markup=False)
            console.print(f"replay: [bold]{escape(m['replay'])}[/]")
            console.print(f"debug log: {escape(m['log_file'])}")
            if "timeline_file" in m:
                console.print(f"timeline: {escape(m['timeline_file'])}")
    console.print(f"\nresults: {out_dir}/results.jsonl")
