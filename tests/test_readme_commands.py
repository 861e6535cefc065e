"""Every command the README shows is run here (the first hour's in test_workspace_readme.py).

:data:`TABLE` maps each command of the README's ``bash`` blocks (one part of an
``&&`` chain; ``cd`` is the shell's) to how it is run:

* ``AS_IS``: exactly as shown, in a temporary workspace prepared here (the bundled
  Raft as ``path/to/myraft.py``, ``myraft.py``, ``raft.py`` and ``alice/raft.py``;
  ``submissions/alice`` and ``submissions/bob``, a Raft that never elects; for
  *Exploring*, ``myraft.py`` is the bundled Raft with a bug explore finds);
* ``VARIANT``: a shorter command of the same shape, the reason in the row (fewer
  runs, one part or test, ``--sim`` where the command's shape allows it: the code
  a command runs does not depend on the clock, and the simulated clock makes a run
  take seconds and never fail for a loaded machine);
* ``CI``: run as shown by ``.ci/run`` (the two quick-start commands), whose line is
  named in the row and must be there.

A README command without a row, or a row whose command the README no longer shows,
fails :func:`test_every_readme_command_has_a_row`.  Each README section is one test
that runs its commands in order, in one workspace, each under a hard timeout, in a
process group of its own that must be empty when the command ends; every run checks
its exit status and a line of its output.  The pip commands run in a copy of the
checkout, into a new venv that sees this venv's dependencies (so only raftlab itself
is built: no download of dependencies, and the shared venv is not touched); the Dask
commands start a real scheduler and worker on 127.0.0.1 (the processes of
tests/test_stress_dask.py's ``Cluster``), stopped at the end of the test.

About two and a half minutes in all on this 2-core machine under a load of 3 to 6.
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.readme_commands import README, commands, group_members, parts, run_part
from tests.test_stress_dask import Cluster
from tests.test_workspace import clean_env
from tests.test_workspace_readme import SECTIONS as FIRST_HOUR_SECTIONS
from tests.test_workspace_readme import STEPS as FIRST_HOUR_STEPS

REPO = README.parent
CI_SCRIPT = REPO / ".ci" / "run"
TOYS = Path(__file__).resolve().parent / "toys_grade"

AS_IS, VARIANT, CI = "as_is", "variant", "ci"

# The bundled Raft as a student's single file would provide it.
SINGLE_FILE = '''"""The bundled Raft, standing in for a student's single-file implementation."""

from raft.reference import make  # noqa: F401 - the implementation's API
'''


@dataclass
class Ctx:
    """What a section's commands share: folders, the scratch venv, the Dask cluster."""

    workspace: Path
    tmp: Path
    checkout: Path | None = None
    venv: Path | None = None
    port: int = 0
    cluster: Cluster | None = None

    def fill(self, command: str) -> str:
        return command.format(python=sys.executable, venv=self.venv, port=self.port)


@dataclass(frozen=True)
class Row:
    readme: str                       # one command as the README shows it
    kind: str                         # AS_IS, VARIANT or CI
    expect: str | tuple[str, ...] = ""  # text (each text) its output must contain
    run: str | None = None            # VARIANT: the command run ({python} {venv} {port})
    why: str = ""                     # VARIANT: why it differs from the README's
    rc: int = 0                       # its exit status
    where: str = "workspace"          # or "checkout": a copy of this repository
    background: bool = False          # a server: started, checked, stopped at the end
    ci_line: str = ""                 # CI: the line of .ci/run that runs it
    check: Callable[[Ctx, str], None] | None = None  # more checks of the folder and output
    before: Callable[[Ctx], None] | None = None      # done to the workspace first
    timeout: float = 300


def _pip_installed_raftlab(ctx: Ctx, out: str) -> None:
    """The new venv's raftlab, not this checkout's, runs the graded tests from elsewhere."""
    assert ctx.venv is not None
    where = run_part(f"{ctx.venv}/bin/python -c 'import labtests; print(labtests.__file__)'",
                     ctx.workspace, clean_env(), timeout=60)
    assert where.stdout.startswith(str(ctx.venv)), where
    res = run_part(f"{ctx.venv}/bin/raftlab test 2A --sim", ctx.workspace,
                   clean_env(), timeout=300)
    assert res.returncode == 0 and "3 passed, 0 failed" in res.stdout, res.stdout + res.stderr


def _cluster_extra_resolved(ctx: Ctx, out: str) -> None:
    assert "does not provide the extra" not in out, out
    assert "dask[distributed]" in out, out  # the extra's requirement, satisfied


def _stress_folder(ctx: Ctx, out: str) -> None:
    folder = ctx.workspace / "out"
    rows = (folder / "results.jsonl").read_text().splitlines()
    assert len(rows) == 2, rows  # test_backup_2b and test_count_2b, one run each
    assert (folder / "summary.txt").is_file()


def _grades_csv(ctx: Ctx, out: str) -> None:
    with open(ctx.workspace / "grades" / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    scores = {row["submission"]: (row["score"], row["max_score"]) for row in rows}
    assert scores == {"alice": ("15", "15"), "bob": ("0", "15")}, rows  # bob never elects


def _race_detection_is_on(ctx: Ctx, out: str) -> None:
    """The same command against a Raft whose get_state skips the lock reports the race."""
    toy = Path(__file__).resolve().parent / "toys_race" / "unlocked_get_state.py"
    res = run_part(f"raftlab test test_concurrent_starts_2b --sim --race --seed 1 --impl {toy}",
                   ctx.workspace, clean_env(), timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-4000:]
    assert "FAILED -- DATA RACE" in out and "field Raft.term:" in out, out[-4000:]


def _only_chosen_topics(ctx: Ctx, out: str) -> None:
    assert " TEST " in out and (" VOTE " in out or " LEAD " in out), out[:2000]
    assert " CMIT " not in out and " LOG1 " not in out, out[:2000]


# The bundled Raft with the bug explore finds as election-safety (mutant
# no_persist_vote in tests/mutants/make_mutants.py), as one file.
VOTE_NOT_PERSISTED = '''"""The bundled Raft, except that votedFor is not persisted."""

from raft.reference import rules
from raft.reference.log import encode_state
from raft.reference.raft import Raft as _Reference


class Raft(_Reference):
    def _persist(self) -> None:
        state = encode_state(self.term, rules.NO_VOTE, self.log)  # the bug: the vote is lost
        self.persister.save(state, self.snapshot_data)


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
'''


def _buggy_myraft(ctx: Ctx) -> None:
    """Exploring needs a Raft with a bug: myraft.py loses its vote on a restart."""
    (ctx.workspace / "myraft.py").write_text(VOTE_NOT_PERSISTED)


def _forgetful_myraft(ctx: Ctx) -> None:
    """The timeline section's myraft.py forgets its state when restarted."""
    toy = Path(__file__).resolve().parent / "toys_timeline" / "forgets_state.py"
    (ctx.workspace / "myraft.py").write_text(toy.read_text())


def _bundle_written(ctx: Ctx, out: str) -> None:
    bundle = ctx.workspace / ".raftlab" / "failures" / "test_persist2_2c-seed7"
    assert f"timeline: {bundle / 'timeline.html'}" in out, out[-3000:]
    for name in ("timeline.html", "failure.txt", "rerun.txt", "meta.json", "events.jsonl",
                 "env.json"):
        assert (bundle / name).is_file(), name


def _parts_json(ctx: Ctx, out: str) -> None:
    """parts.json holds the measured part with every figure the table prints."""
    assert ctx.checkout is not None
    data = json.loads((ctx.checkout / "parts.json").read_text())
    row = data["parts"]["2A"]["current"]
    for key in ("real_s", "user_s", "system_s", "rss_mb", "voluntary_ctx", "threads_created"):
        assert key in row, (key, row)
    assert row["exit"] == 0 and "3 passed" in row["result"], row


def _stress_cpu_json(ctx: Ctx, out: str) -> None:
    assert ctx.checkout is not None
    data = json.loads((ctx.checkout / "stress-cpu.json").read_text())
    (step,) = data["rounds"]["new"]
    assert step["runs"] == 3 and step["cpu_s"] > 0, step
    assert data["median_cpu_per_run_s"]["new"] == step["cpu_per_run_s"]


def _ceiling_json(ctx: Ctx, out: str) -> None:
    """ceiling.json counts the 6 runs of the step, under the forked process model."""
    assert ctx.checkout is not None
    data = json.loads((ctx.checkout / "ceiling.json").read_text())
    assert data["process_model"] == "forked" and data["steps"][0]["runs"] == 6, data


_ONE_2A = "one 2A test: isolation runs in real time only (the three take 15 s)"
_SIM = "on the simulated clock: seconds instead of minutes of real time, same code run"

TABLE = [
    # Quick start
    Row("pip install .", VARIANT, "Successfully installed raftlab",
        run="{python} -m pip --python {venv}/bin/python install .", where="checkout",
        why="into a new venv that sees this venv's dependencies: only raftlab is built, "
            "nothing is downloaded but the build backend, the shared venv is untouched; then "
            "the new venv's raftlab runs part 2A from outside the checkout",
        check=_pip_installed_raftlab, timeout=600),
    Row("raftlab test", CI, ci_line="raftlab test"),
    Row("pip install -e '.[test]'", CI, ci_line="python -m pip install --quiet -e '.[test]'"),
    Row("pytest tests", CI, ci_line="pytest tests"),
    # Running the graded suites
    Row("raftlab test 2A", VARIANT, "3 passed, 0 failed", run="raftlab test 2A --sim", why=_SIM),
    Row("raftlab test 2B 2C", VARIANT, "18 passed, 0 failed", run="raftlab test 2B 2C --sim",
        why=_SIM),
    Row("raftlab test test_backup_2b", VARIANT, "1 passed, 0 failed",
        run="raftlab test test_backup_2b --sim", why=_SIM),
    Row("raftlab test 2C --seed 1234", VARIANT, ("seed 1234 (fixed)", "8 passed, 0 failed"),
        run="raftlab test 2C --seed 1234 --sim", why=_SIM),
    Row("raftlab test 2D --impl path/to/myraft.py", VARIANT,
        ("Raft implementation 'path/to/myraft.py'", "7 passed, 0 failed"),
        run="raftlab test 2D --impl path/to/myraft.py --sim", why=_SIM),
    Row("raftlab test -- -x -v", VARIANT, ("28 passed", "PASSED"),
        run="raftlab test --sim -- -x -v", why=_SIM),
    Row("raftlab test 2A --pytest-output", VARIANT, ("test session starts", "3 passed"),
        run="raftlab test 2A --pytest-output --sim", why=_SIM),
    Row("raftlab test 2A --isolate", VARIANT, "1 passed, 0 failed",
        run="raftlab test test_initial_election_2a --isolate", why=_ONE_2A),
    # Stress runs
    Row("raftlab stress 2A --runs 300 --workers 16", VARIANT, "0 of 3 failed",
        run="raftlab stress 2A --runs 1 --workers 2 --sim",
        why="one run per test on 2 workers (2 cores here), " + _SIM),
    Row("raftlab stress test_figure8_unreliable_2c -n 100 --impl myraft.py", VARIANT,
        "0 of 1 failed", run="raftlab stress test_figure8_unreliable_2c -n 1 --impl myraft.py "
        "--sim", why="one run, " + _SIM),
    Row('raftlab stress -k "backup or count" -n 50 -o out/', VARIANT, "0 of 2 failed",
        run='raftlab stress -k "backup or count" -n 1 -o out/ --sim', why="one run each, " + _SIM,
        check=_stress_folder),
    # Running on a cluster (Dask)
    Row("pip install '.[cluster]'", VARIANT, "Successfully installed raftlab",
        run="{python} -m pip --python {venv}/bin/python install '.[cluster]'", where="checkout",
        why="into a new venv that sees this venv's dependencies (dask among them): the "
            "extra resolves, nothing is downloaded but the build backend",
        check=_cluster_extra_resolved, timeout=600),
    Row("dask scheduler --port 8786", VARIANT, "Scheduler at:", background=True,
        run="dask scheduler --port {port} --host 127.0.0.1 --no-dashboard",
        why="a free port on 127.0.0.1 only, no dashboard (whose port other runs may hold)"),
    Row("dask worker tcp://HEAD:8786 --nthreads 2 --resources RUNS=2", VARIANT,
        "Registered to:", background=True,
        run="dask worker tcp://127.0.0.1:{port} --nthreads 2 --resources RUNS=2 "
            "--host 127.0.0.1 --no-dashboard", why="HEAD is 127.0.0.1; no dashboard"),
    Row("raftlab stress 2B -n 2000 --impl raft.py --backend dask --scheduler tcp://HEAD:8786",
        VARIANT, ("0 of 1 failed", "cluster: dask tcp://127.0.0.1:"),
        run="raftlab stress 2B -k test_basic_agree_2b -n 1 --impl raft.py --backend dask "
            "--scheduler tcp://127.0.0.1:{port}",
        why="one run of one 2B test, on the scheduler above"),
    # Grading (instructors)
    Row("raftlab grade alice/raft.py", VARIANT, ("15/15", "real time, isolated"),
        run="raftlab grade alice/raft.py --only 2A --runs 1",
        why="part 2A only, one run (real time, isolated: 20 s)"),
    Row("raftlab grade --batch submissions/ -o grades/", VARIANT, "grades.csv",
        run="raftlab grade --batch submissions/ -o grades/ --only 2A --runs 1 --sim",
        why="part 2A only, one run, " + _SIM, check=_grades_csv),
    Row("raftlab grade alice/ --only 2C --runs 5", VARIANT, "32/32",
        run="raftlab grade alice/ --only 2C --runs 1 --sim", why="one run, " + _SIM),
    Row("raftlab grade raft --runs 1", VARIANT, "100/100",
        run="raftlab grade raft --runs 1 --sim", why=_SIM),
    # Isolated peers
    Row("pytest --pyargs labtests --isolate", VARIANT, "1 passed, 27 deselected",
        run="pytest --pyargs labtests --isolate -k test_initial_election_2a", why=_ONE_2A),
    Row("pytest --pyargs labtests --isolate --raft-impl myraft.py -k 2D", VARIANT,
        "1 passed, 27 deselected",
        run="pytest --pyargs labtests --isolate --raft-impl myraft.py -k test_snapshot_basic_2d",
        why="one 2D test: isolation runs in real time only (part 2D takes 3 minutes)"),
    # Simulated time
    Row("raftlab test --sim", AS_IS, ("28 passed, 0 failed", "simulated time")),
    Row("raftlab stress 2A -n 1000 --sim", VARIANT, "0 of 6 failed",
        run="raftlab stress 2A -n 2 --sim", why="two runs per test instead of 1000"),
    Row("raftlab test test_backup_2b --sim --seed 42", AS_IS,
        ("seed 42 (fixed)", "1 passed, 0 failed")),
    # Exploring
    Row("raftlab explore --impl myraft.py --time-budget 600 -p 2 -o explore-out", VARIANT,
        ("safety violation [election-safety]",
         "replay: raftlab explore --replay explore-out/failures/election-safety.json "
         "--impl myraft.py"), rc=1, before=_buggy_myraft,
        run="raftlab explore --impl myraft.py -n 40 --shrink-time 20 -p 2 -o explore-out",
        why="40 schedules instead of 10 minutes, whatever the load: seeds 0-39 hold this "
            "Raft's first failures (20, 34); shrinking capped at 20 s; myraft.py is the "
            "bundled Raft with votedFor not persisted"),
    Row("raftlab explore -n 2000 --seed 7", VARIANT,
        ("against the bundled Raft", "No monitor reported a violation."),
        run="raftlab explore -n 20 --seed 7", why="20 schedules instead of 2,000"),
    Row("raftlab explore --replay explore-out/failures/election-safety.json --impl myraft.py",
        AS_IS, "safety violation [election-safety]", rc=1),
    # Finding data races
    Row("raftlab test 2B --race", VARIANT, "1 passed, 0 failed",
        run="raftlab test test_concurrent_starts_2b --race",
        why="one 2B test (the part takes 40 s of real time)"),
    Row("raftlab test 2B --sim --race", VARIANT, ("simulated time", "1 passed, 0 failed"),
        run="raftlab test test_concurrent_starts_2b --sim --race",
        why="one 2B test (the part takes 15 s under --race); then the same command finds "
            "the race of tests/toys_race/unlocked_get_state.py", check=_race_detection_is_on),
    Row("raftlab stress 2A -n 20 --sim --race", VARIANT, "0 of 3 failed",
        run="raftlab stress 2A -n 1 --sim --race", why="one run per test instead of 20"),
    # Seeing a failure: the timeline
    Row("raftlab test test_persist2_2c --impl myraft.py --seed 7", AS_IS,
        ("FAILED -- apply error:", "timeline: "), rc=1, before=_forgetful_myraft,
        check=_bundle_written),
    Row("raftlab timeline .raftlab/failures/test_persist2_2c-seed7", AS_IS,
        "test_persist2_2c-seed7/timeline.html"),
    # Debugging
    Row("raftlab stress -k 2A -n 300 -p 16", VARIANT, "0 of 3 failed",
        run="raftlab stress -k 2A -n 1 -p 2 --sim",
        why="one run per test on 2 workers (2 cores here), " + _SIM),
    Row("raftlab test test_backup_2b --seed 1234 --debug -- -s 2> run.log", VARIANT,
        "1 passed", run="raftlab test test_backup_2b --seed 1234 --debug --sim -- -s 2> run.log",
        why=_SIM + " (the same debug lines, in virtual milliseconds)"),
    Row("raftlab logs run.log -c 5", AS_IS, "=== test_backup_2b (seed 1234"),
    Row("raftlab logs run.log --just VOTE,LEAD,TEST", AS_IS, "=== test_backup_2b (seed 1234",
        check=_only_chosen_topics),
    # Performance
    Row("python benchmarks/raft_parts_bench.py --baseline f9fc2f4 --json parts.json", VARIANT,
        ("2A  (load before", "all parts CPU: current"),
        run="{python} benchmarks/raft_parts_bench.py 2A --json parts.json -- --sim",
        where="checkout", check=_parts_json,
        why="part 2A on the simulated clock and no baseline worktree (the copied checkout is "
            "not a git repository): the same measuring code, in seconds"),
    Row("python benchmarks/parallel_ceiling.py 48 96 192 --json ceiling.json", VARIANT,
        "raftlab parallel ceiling for 2A on this machine:",
        run="{python} benchmarks/parallel_ceiling.py 2 --json ceiling.json", where="checkout",
        check=_ceiling_json,
        why="2 concurrent 2A workers (6 real-time runs) instead of up to 192: the same code, "
            "without loading the shared machine"),
    Row("python benchmarks/stress_cpu.py new=. -n 12 --rounds 3 --json stress-cpu.json", VARIANT,
        ("round 1        new: 3 runs (0 failed", "median CPU per run"),
        run="{python} benchmarks/stress_cpu.py new=. -n 1 --rounds 1 --json stress-cpu.json",
        where="checkout", check=_stress_cpu_json,
        why="1 worker (3 real-time runs) in one round instead of 12 in three: the same code, "
            "without loading the shared machine"),
    Row("python benchmarks/wakeup_cost.py", AS_IS,
        ("Lock.acquire(timeout=)", "timer-lag probe tick"), where="checkout"),
]
ROWS = {row.readme: row for row in TABLE}


def expected(row: Row) -> tuple[str, ...]:
    return (row.expect,) if isinstance(row.expect, str) else row.expect


def readme_parts(first_hour: bool = False, text: str | None = None) -> list[tuple[str, str]]:
    """(section, command) for every README command outside (or in) the first-hour sections."""
    return [(c.section, part) for c in commands(text) for part in parts(c.line)
            if not part.startswith("cd ") and (c.section in FIRST_HOUR_SECTIONS) == first_hour]


def sections() -> list[str]:
    return list(dict.fromkeys(s for s, _ in readme_parts()))


def table_faults(text: str | None = None) -> list[str]:
    """What keeps README ``text`` and :data:`TABLE` from matching one to one."""
    shown = {cmd for _, cmd in readme_parts(text=text)}
    faults = [f"README command not run by any test (add a row to TABLE): {cmd!r}"
              for cmd in sorted(shown - ROWS.keys())]
    faults += [f"row for a command the README no longer shows: {row.readme!r}"
               for row in TABLE if row.readme not in shown]
    return faults


def test_every_readme_command_has_a_row() -> None:
    assert table_faults() == []
    assert len(ROWS) == len(TABLE), "two rows for one command"
    for row in TABLE:
        assert row.kind in (AS_IS, VARIANT, CI), row
        assert (row.kind == VARIANT) == bool(row.run and row.why), row
        assert row.kind == CI or all(expected(row)), f"{row.readme!r} checks no output"
    # The first-hour sections' commands are test_workspace_readme.py's steps.
    first_hour = [cmd for _, cmd in readme_parts(first_hour=True)]
    assert first_hour == [p for s in FIRST_HOUR_STEPS for p in parts(s.readme)
                          if not p.startswith("cd ")]


def test_a_command_added_to_the_readme_is_named_until_a_row_runs_it() -> None:
    text = README.read_text(encoding="utf-8").replace(
        "raftlab test 2B 2C      ", "raftlab test 2B 2D --seed 7 && cd x  ")
    assert text != README.read_text(encoding="utf-8")
    before = table_faults()
    assert [fault for fault in table_faults(text) if fault not in before] == [
        "README command not run by any test (add a row to TABLE): "
        "'raftlab test 2B 2D --seed 7'",
        "row for a command the README no longer shows: 'raftlab test 2B 2C'"]


def test_the_extractor_reads_commands_as_a_shell_would() -> None:
    text = (
        "# Title\n\n## One\n\n```bash\n# a comment line\n"
        "raftlab test 2A   # trailing comment\n"
        "raftlab stress -k \"a #b\" -n 2 &&  cd out\n"
        "raftlab grade x \\\n    --runs 1\n\n"
        "```\n\n```text\nnot a command\n```\n\n### Two\n\n```bash\necho a#b\n```\n")
    assert [(c.section, c.line) for c in commands(text)] == [
        ("## One", "raftlab test 2A"),
        ("## One", 'raftlab stress -k "a #b" -n 2 &&  cd out'),
        ("## One", "raftlab grade x --runs 1"),
        ("### Two", "echo a#b")]
    assert parts('raftlab stress -k "a #b" -n 2 &&  cd out') == [
        'raftlab stress -k "a #b" -n 2', "cd out"]


def test_a_command_that_hangs_or_leaves_a_process_fails_naming_it(tmp_path: Path) -> None:
    env = clean_env()
    with pytest.raises(AssertionError, match="'sleep 30' did not end within 0.5 s"):
        run_part("sleep 30", tmp_path, env, timeout=0.5)
    with pytest.raises(AssertionError, match=r"left processes \[\d+\] behind"):
        run_part("sleep 30 >/dev/null 2>&1 & echo started", tmp_path, env, timeout=30)
    res = run_part("echo out; echo err >&2; exit 3", tmp_path, env, timeout=30)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")


def test_ci_runs_the_quick_start_commands() -> None:
    lines = [line.strip() for line in CI_SCRIPT.read_text().splitlines()]
    for row in TABLE:
        if row.kind != CI:
            continue
        assert row.ci_line in lines, f".ci/run does not run {row.readme!r} ({row.ci_line!r})"
        words = iter(shlex.split(row.ci_line))
        assert all(w in words for w in shlex.split(row.readme)), (row.readme, row.ci_line)


# --- running a section --------------------------------------------------------------

def make_workspace(root: Path) -> Path:
    ws = root / "ws"
    for rel in ("path/to/myraft.py", "myraft.py", "raft.py", "alice/raft.py",
                "submissions/alice/raft.py"):
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(SINGLE_FILE)
    (ws / "submissions/bob").mkdir()
    shutil.copy(TOYS / "never_elects" / "raft.py", ws / "submissions/bob/raft.py")
    return ws


def copy_checkout(dest: Path) -> Path:
    """This repository's tracked files, as they are in the working tree: a checkout."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def make_venv(dest: Path) -> Path:
    """A new venv whose path also holds this venv's packages, except raftlab's install."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True,
                   capture_output=True, timeout=120)
    deps = dest.parent / (dest.name + "-deps")
    deps.mkdir()
    for site in {Path(sysconfig.get_path(key)) for key in ("purelib", "platlib")}:
        for entry in site.iterdir():
            if "raftlab" not in entry.name and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)  # not raftlab-*.dist-info, __editable__*
    (new_site,) = dest.glob("lib/python*/site-packages")
    (new_site / "deps.pth").write_text(f"{deps}\n")
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_background(ctx: Ctx, row: Row) -> str:
    """Start a server command as a process of the cluster; wait for its ready line."""
    assert ctx.cluster is not None
    name = row.readme.split()[1]  # scheduler / worker
    proc = ctx.cluster._spawn(name, shlex.split(ctx.fill(row.run or row.readme)))
    log = ctx.tmp / f"{name}.log"
    deadline = time.monotonic() + 60
    (ready,) = expected(row)
    while ready not in log.read_text():
        assert proc.poll() is None, f"{row.readme!r} ended: {log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"{row.readme!r}: no {ready!r} in 60 s"
        time.sleep(0.2)
    return log.read_text()


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Ctx]:
    c = Ctx(workspace=make_workspace(tmp_path), tmp=tmp_path)
    try:
        yield c
    finally:
        if c.cluster is not None:
            c.cluster.stop()
    if c.cluster is not None:  # the servers and every run they started are gone
        assert_groups_end([p.pid for p in c.cluster.procs], grace=5.0)


def assert_groups_end(pgids: list[int], grace: float) -> None:
    """Processes of the groups ``pgids`` (terminated) are gone within ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        left = [pid for pgid in pgids for pid in group_members(pgid)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if left:
        names = {pid: _cmdline(pid) for pid in left}
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        raise AssertionError(f"processes left behind {grace} s after the stop: {names}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


@pytest.mark.parametrize("heading", sections(),
                         ids=lambda h: h.lstrip("# ").split(":")[0].replace(" ", "-"))
def test_readme_section_commands_run(heading: str, ctx: Ctx) -> None:
    # The commands get a temporary directory of their own: what they leave there is checked.
    tmp = ctx.tmp / "tmp"
    tmp.mkdir()
    env = clean_env(TMPDIR=str(tmp))
    for section, command in readme_parts():
        if section != heading:
            continue
        row = ROWS[command]
        if row.kind == CI:
            continue  # test_ci_runs_the_quick_start_commands
        if row.before is not None:
            row.before(ctx)
        if row.where == "checkout" and ctx.checkout is None:
            ctx.checkout = copy_checkout(ctx.tmp / "checkout")
            ctx.venv = make_venv(ctx.tmp / "venv")
        if row.background:
            if ctx.cluster is None:
                ctx.cluster = Cluster(ctx.tmp, env)
                ctx.port = free_port()
            out = start_background(ctx, row)
        else:
            cwd = ctx.checkout if row.where == "checkout" else ctx.workspace
            assert cwd is not None
            res = run_part(ctx.fill(row.run or row.readme), cwd, env, row.timeout)
            out = res.stdout + res.stderr
            assert res.returncode == row.rc, (command, res.returncode, out[-4000:])
            for text in expected(row):
                assert text in out, (command, text, out[-4000:])
        if row.check is not None:
            row.check(ctx, out)
    # Nothing of theirs is left in the temporary directory once they have ended.  Not
    # theirs: Dask's folder (Dask removes its workers' folders itself; the servers are
    # stopped after this test) and pytest's own base folder, made by pytest-xdist's
    # controller (grade's runs), of which pytest keeps its last three sessions.
    # Before: the benchmarks left a folder per step, kept for good.
    theirs_not = {"dask-scratch-space", f"pytest-of-{getpass.getuser()}"}
    left = sorted(p.name for p in tmp.iterdir() if p.name not in theirs_not)
    assert not left, f"left in the commands' temporary directory: {left}"
