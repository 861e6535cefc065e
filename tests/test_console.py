"""The tools' consoles (tools/console.py) in a pipe or file: 120 columns for tables, and
no line broken inside a path or a command (a rerun command copied from a CI log must
run as printed; found when a long temporary path was cut mid-word in explore's output)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
from rich.table import Table
from tools.console import make_console
console = make_console()
path = "/tmp/" + "/".join(["a-rather-long-folder-name"] * 8) + "/raft.py"
console.print(f"1 schedules in 0.2 s (280/min, 27 virtual s) against {path}")
console.print(f"replay: raftlab explore --replay {path}.json --impl {path}", markup=False)
table = Table("monitor", "kind")
table.add_row("liveness-leader", "liveness")
console.print(table)
"""


def test_a_piped_console_never_breaks_a_path_or_command_and_tables_fit_120_columns():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                         text=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    path = "/tmp/" + "/".join(["a-rather-long-folder-name"] * 8) + "/raft.py"
    lines = out.splitlines()
    assert f"1 schedules in 0.2 s (280/min, 27 virtual s) against {path}" in lines
    assert f"replay: raftlab explore --replay {path}.json --impl {path}" in lines
    table = [line for line in lines if "liveness-leader" in line]
    assert table and all(len(line) <= 120 for line in table)
