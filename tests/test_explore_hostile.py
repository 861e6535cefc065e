"""``raftlab explore`` against hostile Raft code: each ends in a precise finding or error.

The toys (tests/toys_explore/) are the bundled Raft plus one act as soon as a peer
leads a term >= 3, which every generated schedule reaches: ending the process
(``os._exit(3)``, ``os._exit(0)``, SIGKILL), ``sys.exit`` in a thread, a 50 MB
flood of stdout/stderr, a non-daemon thread that never ends, a debug-log call
that only misbehaves with logging on.  Every run of explore happens in a forked
child (tools/explore/guard.py), so none of these can take explore's workers
down, hang it, or flood its display; budgets are schedule counts (simulated
time is deterministic, so these verdicts do not depend on the machine's load).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("greenlet")

from labtests.explore.generator import generate  # noqa: E402
from labtests.explore.monitors import Violation, kind_of  # noqa: E402
from labtests.explore.runner import RunResult, run_schedule  # noqa: E402
from labtests.explore.schedule import FORMAT, Schedule, Step  # noqa: E402
from labtests.impl_loader import load  # noqa: E402
from tests.test_explore import PURE_SPIN  # noqa: E402
from tools.explore import work  # noqa: E402
from tools.explore.command import main  # noqa: E402
from tools.explore.guard import GuardError, run_guarded  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOYS = HERE / "toys_explore"


def toy(name: str) -> str:
    return str(TOYS / f"{name}.py")


def explore(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``raftlab explore`` in a process of its own (what a student runs)."""
    return subprocess.run([sys.executable, "-m", "tools.explore", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def replay_matches(out: Path, monitor: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run the printed replay command; its debug log must be the kept one, line for line."""
    summary = json.loads((out / "summary.json").read_text())["minimal"][monitor]
    assert summary["replay_matches"], summary
    log = tmp / f"replay-{monitor}.log"
    proc = explore(*shlex.split(summary["replay"])[2:], "--log", str(log))
    assert proc.returncode == 1, proc.stderr
    assert f"[{monitor}]" in proc.stderr
    kept = (out / "failures" / f"{monitor}.log").read_text().splitlines()
    assert [x for x in kept if not x.startswith("# ")] == log.read_text().splitlines()
    return proc


# -- a Raft that ends its process ---------------------------------------------------


@pytest.mark.parametrize("name, how", [
    ("exit3", "exit status 3"),
    ("exit0", "exit status 0"),
    ("sigkill", "signal 9 (SIGKILL)"),
])
def test_a_raft_that_ends_its_process_is_one_exit_finding_per_schedule(name, how, tmp_path):
    out = tmp_path / "out"
    proc = explore("--impl", toy(name), "-n", "3", "-p", "2", "-o", str(out),
                   "--shrink-runs", "40")
    assert proc.returncode == 1, proc.stderr
    got = rows(out)
    assert sorted(r["seed"] for r in got) == [0, 1, 2]  # each seed once, none retried
    for r in got:
        assert r["monitor"] == "exit" and r["outcome"] == "error", r
        assert r["message"].startswith(f"the Raft ended the run's process: {how} after step ")
    assert kind_of("exit") == "error"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["violations"] == {"exit": 3}
    minimal = summary["minimal"]["exit"]
    assert minimal["steps"] < minimal["original_steps"]
    assert how in minimal["violation"]
    # The replay runs guarded too: it prints the same finding and the same log.
    if name == "exit3":
        proc = replay_matches(out, "exit", tmp_path)
        assert "exit status 3" in " ".join(proc.stderr.split())  # rich wraps long lines


def test_a_raft_that_kills_its_process_group_kills_only_its_run(tmp_path):
    out = tmp_path / "out"
    # A session of its own: if the guard failed, the kill would end that session only.
    proc = subprocess.run([sys.executable, "-m", "tools.explore", "--impl", toy("killpg"),
                           "-n", "2", "-p", "1", "-o", str(out), "--no-shrink"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, start_new_session=True)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    for r in rows(out):
        assert r["monitor"] == "exit" and "signal 9 (SIGKILL)" in r["message"], r


GUARDED_SPIN = """
import sys
from labtests.explore.generator import generate
from labtests.impl_loader import load
from tools.explore.guard import run_guarded
run_guarded(generate(0), load(sys.argv[1]), timeout=120)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" in f.read()  # a zombie has ended
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc: Linux")
def test_a_guarded_run_does_not_outlive_a_killed_explore(tmp_path):
    spin = tmp_path / "explore_pure_spin.py"
    spin.write_text(PURE_SPIN)
    # A TMPDIR of its own: the run's work folder stays when its killed parent cannot remove it.
    parent = subprocess.Popen([sys.executable, "-c", GUARDED_SPIN, str(spin)], cwd=ROOT,
                              env=dict(os.environ, TMPDIR=str(tmp_path)))
    try:
        child = None
        for _ in range(300):  # the fork comes once the implementation is loaded
            got = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True,
                                 text=True).stdout.split()
            if got:
                child = int(got[0])
                break
            time.sleep(0.1)
        assert child is not None, "the guarded run never started"
    finally:
        parent.kill()
        parent.wait()
    for _ in range(100):
        if _gone(child):
            break
        time.sleep(0.1)
    outlived = not _gone(child)
    if outlived:
        os.kill(child, signal.SIGKILL)  # ours: it must not spin on after the test
    assert not outlived, f"the spinning child {child} outlived its killed parent"


def test_a_raft_that_kills_explores_worker_is_reported_after_two_deaths(tmp_path):
    """The guard cannot stop a Raft that kills its parent (the worker): the seed is
    retried once, then reported, never retried for ever; its schedule is kept."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "tools.explore", "--impl",
                           toy("kill_parent"), "-n", "1", "-p", "1", "-o", str(out),
                           "--shrink-runs", "3"], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, start_new_session=True)
    assert proc.returncode == 1, proc.stderr
    assert [(r["monitor"], r["message"]) for r in rows(out)] == [
        ("exit", "the worker process running it died 2 times while it ran alone (its run "
                 "ended the worker)")]
    assert Schedule.loads((out / "failures" / "exit.json").read_text()) == generate(0)
    minimal = json.loads((out / "summary.json").read_text())["minimal"]["exit"]
    assert minimal["error"] == ("shrinking did not finish (a run hung or ended its worker "
                                "process)")


def test_a_worker_killed_by_one_seed_blames_that_seed_only(tmp_path):
    """At -p 2 other seeds are in flight (running or queued) when the run of one seed
    kills the worker: they are rerun one at a time and pass; only the killer is blamed
    (the toy kills its worker on seed 1's schedule only)."""
    out = tmp_path / "out"
    env = dict(os.environ, RAFTLAB_TOY_KILL_SEED=str(generate(1).seed))
    proc = subprocess.run([sys.executable, "-m", "tools.explore", "--impl",
                           toy("kill_worker_on_one_seed"), "-n", "4", "-p", "2", "-o",
                           str(out), "--no-shrink"], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, start_new_session=True, env=env)
    assert proc.returncode == 1, proc.stderr
    got = {r["seed"]: r for r in rows(out)}
    assert sorted(got) == [0, 1, 2, 3]  # each seed accounted once
    assert [s for s, r in got.items() if r["outcome"] != "pass"] == [1], got
    assert got[1]["monitor"] == "exit"
    assert got[1]["message"] == ("the worker process running it died 2 times while it ran "
                                 "alone (its run ended the worker)")
    assert json.loads((out / "summary.json").read_text())["violations"] == {"exit": 1}


def test_exit_finding_names_the_step_and_keeps_the_debug_log_up_to_the_end():
    impl = load(toy("exit3"))
    schedule = generate(0)
    plain = run_guarded(schedule, impl, timeout=120)
    logged = run_guarded(schedule, impl, timeout=120, debug=True)
    assert plain.violation == logged.violation and plain.violation.monitor == "exit"
    # The log goes up to the Raft's last line: the new leader that called os._exit.
    assert "after step " in plain.violation.message
    assert " leader in term " in logged.log[-2]
    assert logged.log[-1].endswith(plain.violation.headline().splitlines()[0])
    assert run_guarded(schedule, impl, timeout=120).violation == plain.violation  # repeatable


def test_a_raft_that_allocates_without_end_is_an_exit_finding_at_the_memory_bound(
        monkeypatch):
    """Server 0 fills a list from make() on (tests/toys/eats_memory.py): the run's child
    grew until the machine's memory ran out, as explore's run timeout is wall time.  Now
    the memory bound ends the child and the finding says so, with the eater's stack."""
    monkeypatch.setenv("RAFTLAB_MEMORY_MB", "400")
    monkeypatch.setenv("RAFTLAB_TOY_EAT_MAX_MB", "1500")
    got = run_guarded(generate(0), load(str(HERE / "toys" / "eats_memory.py")), timeout=60)
    assert got.violation is not None and got.violation.monitor == "exit", got.violation
    reason, dump = got.violation.message.split("\n", 1)
    held = int(reason.split("it held ", 1)[1].split(" MiB", 1)[0])
    assert 400 < held < 1500, reason
    assert reason == (
        f"raftlab's memory bound ended the run's process: it held {held} MiB of memory, over "
        "its bound of 400 MiB (--raft-memory-mb, RAFTLAB_MEMORY_MB); most likely the Raft "
        "allocates without end (a log never trimmed, entries appended in a loop): see the "
        "stacks; ended while the peers started, before the first step")
    assert dump.startswith(f"Memory bound ({held} MiB > 400 MiB)!") and "in _eat_forever" in dump


MAKE_EXITS = """
import sys

def make(peers, me, persister, apply_ch):
    sys.exit(4)
"""


def test_sys_exit_where_the_run_starts_peers_ends_the_process_as_it_would(tmp_path):
    path = tmp_path / "explore_make_exits.py"
    path.write_text(MAKE_EXITS)
    got = run_guarded(generate(1), load(str(path)), timeout=60)
    assert got.violation == Violation(
        "exit", 0.0, "the Raft ended the run's process: exit status 4 while the peers "
                     "started, before the first step")


def test_a_run_that_cannot_start_is_an_error_not_an_exit_finding(tmp_path):
    path = tmp_path / "explore_no_make.py"
    path.write_text("x = 1\n")
    with pytest.raises(GuardError, match="lacks module function"):
        run_guarded(generate(1), load(str(path)), timeout=60)


def test_each_run_starts_from_the_untouched_module(tmp_path):
    """tests/toys_explore/module_state.py crashes a second run in the same process
    (module-level state); run after run in one worker, explore's runs all pass, as
    their replays (fresh processes) do."""
    impl = load(toy("module_state"))
    assert [run_guarded(generate(s), impl, timeout=120).violation for s in range(3)] == \
        [None, None, None]
    out = tmp_path / "out"
    proc = explore("--impl", toy("module_state"), "-n", "3", "-p", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert [r["monitor"] for r in rows(out)] == [None, None, None]


def test_a_make_that_raises_is_a_crash_finding_not_an_error_of_explore(tmp_path):
    path = tmp_path / "explore_make_raises.py"
    path.write_text("def make(peers, me, persister, apply_ch):\n"
                    "    raise RuntimeError('not today')\n")
    v = run_schedule(generate(1), load(str(path))).violation
    assert v is not None and v.monitor == "crash"
    assert v.message.startswith("S0: make() raised RuntimeError('not today')")


START_RETURNS_NONE = """
from raft.reference import raft as reference


class Raft(reference.Raft):
    def start(self, command):
        return None  # not (index, term, is_leader)


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
"""


def test_a_start_that_returns_junk_to_the_driver_is_a_crash_finding(tmp_path):
    path = tmp_path / "explore_start_junk.py"
    path.write_text(START_RETURNS_NONE)
    schedule = Schedule(3, 1, (), 1.0)  # no clients: the liveness probe calls start()
    v = run_guarded(schedule, load(str(path)), timeout=120).violation
    assert v is not None and v.monitor == "crash", v
    assert v.message.startswith("uncaught exception in explore's driver, in a call into the "
                                "Raft (see the traceback): TypeError('cannot unpack")
    assert "index, term, ok = rf.start(cmd)" in v.message


def test_sys_exit_in_a_thread_is_an_exit_finding_not_a_silent_thread_death():
    v = run_schedule(generate(0), load(toy("sysexit_thread"))).violation
    assert v is not None and v.monitor == "exit"
    assert "called sys.exit(5): SystemExit ends only that thread" in v.message


def test_a_finding_names_an_unnamed_thread_the_same_whatever_ran_before():
    impl = load(toy("unnamed_thread_raises"))
    first = run_schedule(generate(0), impl).violation
    threading.Thread(target=lambda: None).start()  # another Thread-N meanwhile
    again = run_schedule(generate(0), impl).violation
    assert first is not None and "uncaught exception in thread 'Thread-1 (_boom)'" in first.message
    assert again == first


def test_the_bundled_raft_passes_guarded_as_it_does_in_process():
    schedule = generate(3)
    guarded = run_guarded(schedule, load(None), timeout=120, debug=True)
    direct = run_schedule(schedule, None, debug=True)
    assert guarded.violation is None and direct.violation is None
    assert guarded.log == direct.log and guarded.virtual_s == direct.virtual_s


def test_a_run_past_the_timeout_is_killed_as_hung_with_its_log_so_far(tmp_path):
    path = tmp_path / "explore_pure_spin.py"
    path.write_text(PURE_SPIN)  # get_state never returns nor blocks
    got = run_guarded(generate(2), load(str(path)), timeout=3.0, debug=True)
    assert got.violation is not None and got.violation.monitor == "hang"
    assert got.violation.message.startswith(
        "no result within 3 s of wall time (a loop that never blocks?); its process was "
        "killed while the peers started, before the first step")
    assert got.log and got.log[0].endswith("=== explore: 5 peers, seed 1806787700")


def test_a_replay_timeline_of_a_run_that_died_says_there_is_none(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(generate(0).dumps())
    proc = explore("--replay", str(path), "--impl", toy("exit3"), "--log", str(tmp_path / "l"),
                   "--timeline", str(tmp_path / "t.html"))
    assert proc.returncode == 1
    assert "no timeline written: the run's process ended" in " ".join(proc.stderr.split())
    assert not (tmp_path / "t.html").exists()


# -- output floods and leftover threads -----------------------------------------------


def test_a_flood_of_stdout_and_stderr_never_reaches_explores_output(tmp_path):
    out = tmp_path / "out"
    proc = explore("--impl", toy("flood"), "-n", "2", "-p", "2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout) + len(proc.stderr) < 20_000
    assert "xxxxxxxx" not in proc.stdout + proc.stderr
    got = rows(out)
    assert [r["monitor"] for r in got] == [None, None]
    assert all(r["output_bytes"] >= 50 * 2**20 for r in got)  # counted, not shown


def test_a_replay_of_a_flooding_raft_says_how_much_it_wrote_and_shows_none(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(generate(0).dumps())
    proc = explore("--replay", str(path), "--impl", toy("flood"), "--log",
                   str(tmp_path / "log"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout) + len(proc.stderr) < 20_000
    assert "bytes to stdout/stderr; not shown" in " ".join(proc.stderr.split())


def test_non_daemon_threads_left_running_do_not_hang_explore(tmp_path):
    out = tmp_path / "out"
    proc = explore("--impl", toy("nondaemon"), "-n", "2", "-p", "1", "-o", str(out),
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [r["monitor"] for r in rows(out)] == [None, None]


# -- shrinking keeps its monitor, and the replay shows it ---------------------------------


def test_a_bad_debug_log_format_no_longer_changes_the_run():
    """The root of README's stale_replies case: a dlog call that raised only with logging
    on (the replay) made the replay fail [crash] where exploring saw another monitor."""
    impl = load(toy("bad_log_format"))
    schedule = generate(0)
    plain = run_schedule(schedule, impl)
    logged = run_schedule(schedule, impl, debug=True)
    assert plain.violation is None and logged.violation is None
    assert any("(bad log format: %d format: a real number is required, not NoneType)" in x
               for x in logged.log)


def _fake_runs(monkeypatch, verdict):
    """``work.run_guarded`` replaced: ``verdict(schedule, debug)`` is the failing monitor."""
    def fake(schedule, impl, *, timeout, race=False, debug=False, timeline=False):
        monitor = verdict(schedule, debug)
        v = Violation(monitor, 1.0, f"{monitor} with {len(schedule.steps)} steps") \
            if monitor else None
        return RunResult(v, 2.0, 0.0, 0, ["log line"] if debug else None, None)
    monkeypatch.setattr(work, "run_guarded", fake)


def _schedule(steps: int) -> Schedule:
    return Schedule(3, 1, tuple(Step(0.1 * (k + 1), "clients", {"count": 1})
                                for k in range(steps)), 5.0)


def test_shrinking_starts_over_with_logging_when_the_logged_run_breaks_another_monitor(
        monkeypatch):
    # Without logging any schedule with a step breaks liveness-commit; with logging, one
    # with fewer than 3 steps crashes instead (as stale_replies did).  The first shrink
    # ends at 1 step; its logged run crashes; the second, logged, shrink stops at 3.
    _fake_runs(monkeypatch, lambda s, debug: (
        None if not s.steps else "crash" if debug and len(s.steps) < 3 else "liveness-commit"))
    got = work._shrink(_schedule(8).to_json(), load(None), 200, 60.0, False, 10.0)
    assert got["monitor"] == "liveness-commit"
    assert got["violation"].startswith("liveness violation [liveness-commit]")
    assert got["steps"] == 3 and got["replay_matches"] is True
    assert "shrunk again with debug logging on" in got["note"]
    assert "broke [crash]" in got["note"]


def test_a_failure_that_logging_hides_is_reported_not_shrunk(monkeypatch):
    _fake_runs(monkeypatch, lambda s, debug: None if debug else "election-safety")
    got = work._shrink(_schedule(4).to_json(), load(None), 50, 60.0, False, 10.0)
    assert "schedule" not in got and got["unshrunk"] == _schedule(4).to_json()
    assert got["error"].startswith("not shrunk: with debug logging on (as its replay runs) "
                                   "the schedule passed instead of [election-safety]")


def test_the_command_keeps_an_unshrinkable_failure_and_says_why(tmp_path):
    out = tmp_path / "out"
    proc = explore("--impl", toy("debug_differs"), "-n", "1", "-p", "1", "-o", str(out),
                   "--shrink-runs", "20")
    assert proc.returncode == 1, proc.stderr
    assert [r["monitor"] for r in rows(out)] == ["exit"]
    minimal = json.loads((out / "summary.json").read_text())["minimal"]["exit"]
    assert "behaves differently when its debug log is on" in minimal["error"]
    assert "replay" not in minimal  # no command that would show something else
    kept = Schedule.loads((out / "failures" / "exit.json").read_text())
    assert kept == generate(0)
    assert "schedule (not shrunk)" in " ".join(proc.stdout.split())


# -- bad input: one line, exit status 2, no traceback ----------------------------------


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["-n", "0"], "--schedules must be at least 1 (got 0)"),
    (["-n", "-3"], "--schedules must be at least 1 (got -3)"),
    (["-p", "0"], "--workers must be at least 1 (got 0)"),
    (["--time-budget", "0"], "--time-budget must be a positive number of seconds (got 0.0)"),
    (["--time-budget", "-1"], "--time-budget must be a positive number of seconds (got -1.0)"),
    (["--time-budget", "nan"], "--time-budget must be a positive number of seconds"),
    (["--run-timeout", "0"], "--run-timeout must be positive"),
    (["--shrink-time", "-5"], "--shrink-time must be positive"),
    (["--log", "x.log"], "--log and --timeline go with --replay FILE"),
    (["--impl", "/nonexistent/myraft.py"], "cannot import the Raft implementation"),
])
def test_bad_options_are_one_line_usage_errors(argv, message, capsys):
    assert message in _usage_error(argv, capsys)


def test_an_impl_that_raises_on_import_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "broken_raft.py"
    bad.write_text("raise RuntimeError('half-written Raft')\n")
    line = _usage_error(["--impl", str(bad), "-n", "1", "-o", str(tmp_path / "o")], capsys)
    assert "half-written Raft" in line
    assert not (tmp_path / "o").exists()  # refused before anything ran


@pytest.mark.parametrize("content, message", [
    (None, "cannot read it (No such file or directory)"),
    ("{not json", "not a schedule raftlab explore wrote (Expecting property name"),
    ("[1, 2]", "a schedule is a JSON object, not list"),
    ('{"format": "raftlab-explore-schedule/9", "n": 3, "seed": 1, "horizon": 2.0, '
     '"steps": []}', "written in format 'raftlab-explore-schedule/9', another version"),
    ('{"format": "something-else/1"}', "not an explore schedule (format 'something-else/1')"),
    (f'{{"format": "{FORMAT}", "seed": 1, "horizon": 2.0, "steps": []}}', "no field 'n'"),
    (f'{{"format": "{FORMAT}", "n": 3, "seed": 1, "horizon": 2.0, '
     f'"steps": [{{"at": 1.0, "op": "explode"}}]}}', "unknown op"),
])
def test_a_bad_replay_file_is_a_one_line_usage_error(content, message, tmp_path, capsys):
    path = tmp_path / "f.json"
    if content is not None:
        path.write_text(content)
    line = _usage_error(["--replay", str(path)], capsys)
    assert line.startswith(f"raftlab explore: error: --replay {path}: ")
    assert message in line


def test_an_output_directory_that_cannot_be_written_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["-n", "1", "-o", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"raftlab explore: error: cannot write the output directory "
                   f"{blocker / 'out'}: Not a directory")
