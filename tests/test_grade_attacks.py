"""Dishonest submissions against ``raftlab grade``: each earns exactly what its Raft earns.

Every toy in tests/toys_grade_attacks/ is a Raft that never elects a leader (0 points
on 2A) and also tries one attack on the grade (see each file's docstring).  They are
graded as a batch, as the grader is run for a class, in a ``raftlab grade``
subprocess under a hard timeout (a precise failure, never a hang), ``--only 2A
--runs 1``.  Each toy prints ``ATTACK[name] ...`` lines, so the test sees that the
attack really ran, and what it achieved, in the run's failure log.

After each batch, /proc must hold no process that the grade started: every one
carries a marker in its environment (inherited through forks and the double fork
of a daemon), and none may be left, nor any process of the run users the reports
name.

Two attacks need the grader to run as root (a dedicated user per run, which is how
docs/grading.md tells to run it): forging the verdicts in the grader's events file
and reading another student's code.  Without root they would succeed -- the grader
says so in every report -- so those two are not run there.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tools.grade.sandbox import (
    choose_run_user,
    lease_after_runs,
    probe_run_user,
    process_uids,
)

ATTACKS = Path(__file__).parent / "toys_grade_attacks"
TOYS = Path(__file__).parent / "toys_grade"
REFERENCE = TOYS / "batch" / "correct" / "raft.py"
MARKER_ENV = "RAFTLAB_ATTACK_TEST"
GRADE_TIMEOUT_S = 900
VICTIM_MARK = "VICTIM-" + "CODE-7f3a"  # what reads_others looks for in a raft.py


def _run_users_available() -> str | None:
    user, why = choose_run_user()
    if user is None:
        return why
    try:
        return probe_run_user(user, [], [])
    finally:
        user.release()


NO_RUN_USERS = _run_users_available()
needs_root = pytest.mark.skipif(
    NO_RUN_USERS is not None,
    reason=f"needs the grader to run as root with dedicated run users: {NO_RUN_USERS}")


def _marked(marker: str) -> list[str]:
    """Processes whose environment carries ``marker`` (pid and command line)."""
    found = []
    needle = f"{MARKER_ENV}={marker}".encode()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # a zombie runs nothing
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{pid}: {command}")
        except OSError:
            continue
    return found


def _uid_processes(uids: set[int]) -> list[str]:
    """Processes of ``uids`` left by the runs that used them (pid and uid).

    Each uid is looked at while this test holds its lease: graders on other xdist
    workers (or anywhere on the machine) lease the same uids once a run gives them
    back, and the lease is held from before a run's first process of the uid until
    after its sweep (the grader's and its supervisors'), so while the test holds it
    no live run has a process of that uid: whatever is found was left behind.
    """
    found = []
    for uid in sorted(uids):
        lease = lease_after_runs(uid, GRADE_TIMEOUT_S)
        assert lease is not None, f"uid {uid} still in use by a run after {GRADE_TIMEOUT_S} s"
        try:
            found += [f"{pid} (uid {uid})" for pid, owner in process_uids().items()
                      if owner == uid]
        finally:
            lease.release()
    return found


def grade_batch(batch: Path, out: Path, *extra: str) -> dict[str, dict]:
    """``raftlab grade --batch`` in a subprocess under a hard timeout; reports by name.

    Asserts that nothing the grade started is still running afterwards.
    """
    marker = uuid.uuid4().hex
    env = dict(os.environ, **{MARKER_ENV: marker})
    cmd = [sys.executable, "-m", "tools.grade", "--batch", str(batch), "-o", str(out),
           "--only", "2A", "--runs", "1", *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        text, _ = proc.communicate(timeout=GRADE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        text, _ = proc.communicate()
        pytest.fail(f"raftlab grade did not finish within {GRADE_TIMEOUT_S} s:\n"
                    + text.decode(errors="replace")[-3000:])
    output = text.decode(errors="replace")
    reports = {d.name: json.loads((d / "report.json").read_text(encoding="utf-8"))
               for d in sorted(out.iterdir()) if (d / "report.json").is_file()}
    assert proc.returncode == 0, output[-3000:]  # every submission was graded
    assert _marked(marker) == [], "processes of the grade still running"
    uids = {r["run_user"] for r in reports.values() if r["run_user"] is not None}
    assert _uid_processes(uids) == [], "processes of the run users still running"
    return reports


def _logs(out: Path, name: str) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace")
                     for p in sorted((out / name / "logs").glob("*.log")))


def _reasons(report: dict) -> list[str]:
    return [r["reason"] or "" for part in report["parts"] for t in part["tests_detail"]
            for r in t["run_results"]]


def _zero_and_honest(out: Path, name: str, report: dict) -> None:
    """A never-electing Raft: 0 of 15 on 2A everywhere the grade is written."""
    assert report["status"] == "graded", report["error"]
    assert (report["score"], report["max_score"]) == (0, 15), (name, _reasons(report))
    assert (report["timing"], report["isolated"]) == ("real", True)
    assert report["schema"] == "raftlab-grade/1" and report["submission"] == name
    results = json.loads((out / name / "results.json").read_text(encoding="utf-8"))
    assert results["score"] == 0 and len(results["tests"]) == 3
    assert all(t["score"] == 0 for t in results["tests"])


def _csv(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", encoding="utf-8") as fh:
        return {row["submission"]: row for row in csv.DictReader(fh)}


def _batch(tmp_path: Path, names: list[str]) -> Path:
    batch = tmp_path / "batch"
    for name in names:
        shutil.copytree(ATTACKS / name, batch / name)
    return batch


def test_attacks_from_inside_the_tester_and_on_the_processes(tmp_path):
    """Hooks, patches and test-function rewrites run where no tester exists; an early
    exit, a self-kill, immortal threads and a deadlocked kill() each get a precise
    verdict; a detached daemon rewriting the reports is gone before they are written."""
    names = ["exits_early", "gc_tests", "kill_deadlock", "kills_itself", "leaves_threads",
             "patches_harness", "pytest_hook", "rewrites_results"]
    out = tmp_path / "out"
    reports = grade_batch(_batch(tmp_path, names), out)
    assert sorted(reports) == names
    rows = _csv(out)
    for name in names:
        _zero_and_honest(out, name, reports[name])
        assert (rows[name]["score"], rows[name]["timing"], rows[name]["isolated"]) == \
            ("0", "real", "yes")
    logs = {name: _logs(out, name) for name in names}
    # Each attack ran, and achieved nothing where the verdict is made.
    assert "hook in 0 pytest session(s); pytest loaded here: False" in logs["pytest_hook"]
    assert "replaced 0 test function(s)" in logs["gc_tests"]
    assert "patched Config.check_one_leader" in logs["patches_harness"]
    assert "kill() blocks forever" in logs["kill_deadlock"]
    assert "detached in its own session" in logs["rewrites_results"]
    # What is visible is said: an early exit and a killed process, by name and status ...
    assert any("exited with status 0" in r for r in _reasons(reports["exits_early"]))
    assert any(r.startswith("crashed:") and "killed by SIGKILL" in r
               for r in _reasons(reports["kills_itself"]))
    # ... and threads that outlive kill().
    assert "toy-immortal" in logs["leaves_threads"]
    assert "threads still running after cleanup" in logs["leaves_threads"]
    # The daemon was stopped before the reports were written, and stays stopped.
    time.sleep(2)
    for name in ("rewrites_results",):
        again = json.loads((out / name / "report.json").read_text(encoding="utf-8"))
        assert again == reports[name]
        _zero_and_honest(out, name, again)
    assert _csv(out) == rows


@needs_root
def test_forging_verdicts_and_reading_another_submission(tmp_path):
    """As root: the events file is out of the run user's reach, and so is every other
    submission (staged copies are private to their own run user and deleted after the
    run; the batch and report folders are covered in the run's mount namespace)."""
    batch = _batch(tmp_path, ["forges_events", "reads_others"])
    for victim in ("a_victim", "z_victim"):  # graded before and after the thief
        (batch / victim).mkdir()
        (batch / victim / "raft.py").write_text(
            f"# {VICTIM_MARK}\n" + REFERENCE.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "out"
    reports = grade_batch(batch, out)
    for victim in ("a_victim", "z_victim"):
        assert reports[victim]["score"] == 15, _reasons(reports[victim])
    for name in ("forges_events", "reads_others"):
        _zero_and_honest(out, name, reports[name])
        assert reports[name]["run_user"] is not None
    assert len({r["run_user"] for r in reports.values()}) == 4  # one uid per submission
    logs = {name: _logs(out, name) for name in ("forges_events", "reads_others")}
    assert "import: forged 0 passed event(s)" in logs["forges_events"]
    assert "Permission denied" in logs["forges_events"]
    assert "victim's code found: None" in logs["reads_others"]


def test_a_class_of_five_grades_isolated_and_leaves_nothing(tmp_path):
    """The bundled Raft twice, an honest never-elects and two attacks, graded as a class:
    right scores, every report real time and isolated, and nothing left running."""
    batch = tmp_path / "batch"
    for name in ("ref_1", "ref_2"):
        shutil.copytree(TOYS / "batch" / "correct", batch / name)
    shutil.copytree(TOYS / "never_elects", batch / "never_elects")
    for name in ("pytest_hook", "rewrites_results"):
        shutil.copytree(ATTACKS / name, batch / name)
    out = tmp_path / "out"
    reports = grade_batch(batch, out)  # asserts: no process of the grade is left
    rows = _csv(out)
    assert {n: rows[n]["score"] for n in rows} == {
        "never_elects": "0", "pytest_hook": "0", "ref_1": "15", "ref_2": "15",
        "rewrites_results": "0"}
    assert all((r["timing"], r["isolated"]) == ("real", "yes") for r in rows.values())
    for name in ("never_elects", "pytest_hook", "rewrites_results"):
        _zero_and_honest(out, name, reports[name])


@needs_root
def test_the_leftover_checks_find_a_process_a_run_left_behind():
    """The two checks of :func:`grade_batch` (the marker, the run users' uids) still see a
    leftover once the run that left it has given its uid back."""
    user, _why = choose_run_user()
    assert user is not None
    marker = uuid.uuid4().hex
    leftover = subprocess.Popen(["sleep", "600"], user=user.uid, group=user.gid,
                                extra_groups=[], env=dict(os.environ, **{MARKER_ENV: marker}))
    user.release()  # as a grader whose sweep missed it
    try:
        assert _uid_processes({user.uid}) == [f"{leftover.pid} (uid {user.uid})"]
        assert [m.split(":")[0] for m in _marked(marker)] == [str(leftover.pid)]
    finally:
        leftover.kill()
        leftover.wait()
    assert _uid_processes({user.uid}) == [] and _marked(marker) == []
