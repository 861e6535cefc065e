"""Every command of the README's "Your first hour" and "Writing your own Raft" is run here.

The fenced ``bash`` blocks of those two sections are extracted and must be exactly
the commands listed in :data:`STEPS`, in order, so the README and this test cannot
drift apart: a command added to the README fails this test until it is run here.
Each runs in a temporary folder, in a shell, as a student would type it, with the
current folder carried from one command to the next (``cd``).

Short variants, where the README's command takes minutes (each says why):

* ``raftlab test 2A`` runs with ``--sim`` (the real-time run, 16 s of failing
  skeleton, is the done-when test in ``tests/test_workspace_e2e.py``);
* ``raftlab stress 2A -n 30`` runs 1 run per test instead of 30, in simulated time
  (a working Raft's real-time run can fail on a machine loaded by other runs; which
  code the command stresses does not depend on the clock);
* ``raftlab stress 2A -n 1000 --sim`` runs 2 per test instead of 1000;
* both stress commands get ``--no-live`` (no live display in a captured run).

The ``text`` block that shows a failure is checked against the real output of the
rerun command that follows it (paths and all).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.readme_commands import README, fenced, run_line, section, section_commands
from tests.test_workspace import clean_env
from tests.test_workspace_e2e import install_reference

SECTIONS = ("## Your first hour", "### Writing your own Raft")


def readme_commands() -> list[str]:
    return section_commands(SECTIONS)


@dataclass
class Step:
    readme: str                  # the command as the README shows it
    expect_rc: int               # its exit status at this point of the hour
    expect: str                  # text its output must contain
    run: str | None = None       # a short variant (see the module docstring), if any
    before: Callable[[Path], None] | None = None  # done to the folder first


def _write_a_working_raft(cwd: Path) -> None:
    """"Once the tests pass": the student's raft/ becomes a working Raft."""
    install_reference(cwd / "raft")


STEPS = [
    Step("raftlab init myraft && cd myraft", 0, "created"),
    Step("raftlab test 2A", 1, "RaftTestFailure: expected one leader, got none",
         run="raftlab test 2A --sim"),
    Step("raftlab test test_initial_election_2a --seed 1234", 1,
         "RaftTestFailure: expected one leader, got none"),
    Step("raftlab test test_initial_election_2a --seed 1234 --debug -- -s 2> run.log", 1,
         "seed 1234; rerun with:"),
    Step("raftlab logs run.log -c 3", 0, "FAIL: expected one leader, got none"),
    Step("raftlab stress 2A -n 30", 0, "0 of 3 failed", before=_write_a_working_raft,
         run="raftlab stress 2A -n 1 --sim --no-live"),
    Step("raftlab stress 2A -n 1000 --sim", 0, "0 of 6 failed",
         run="raftlab stress 2A -n 2 --sim --no-live"),
]


def test_the_readme_sections_hold_exactly_the_commands_run_here() -> None:
    assert readme_commands() == [s.readme for s in STEPS]


def test_every_command_of_the_first_hour_runs_as_the_readme_says(tmp_path: Path) -> None:
    cwd = tmp_path
    outputs: dict[str, str] = {}
    for step in STEPS:
        if step.before is not None:
            step.before(cwd)
        cwd, results = run_line(step.run or step.readme, cwd, clean_env(), timeout=600)
        for part, res in results:
            out = res.stdout + res.stderr
            outputs[step.readme] = out
            assert res.returncode == step.expect_rc, (part, out[-4000:])
            assert step.expect in out, (part, out[-4000:])
    # The debug log went to run.log, with the harness's lines and the skeleton's own.
    log = (cwd / "run.log").read_text()
    assert "TEST -- begin: Test (2A): initial election (seed 1234)" in log
    assert re.search(r"INFO S\d killed", log), log
    # The failure the README shows is what the student sees, their paths in place.
    text = README.read_text(encoding="utf-8")
    (shown,) = fenced(section(text, SECTIONS[0]), "text")
    seen = outputs["raftlab test test_initial_election_2a --seed 1234"]
    for line in shown.splitlines():
        if line.strip() == "...":
            continue
        assert line.replace("/home/you/myraft", str(cwd)) in seen.splitlines(), (line, seen)
