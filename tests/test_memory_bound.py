"""labtests/memory_bound.py: a process past its memory bound is ended with every stack.

The process cases run in a child (the bound ends the process it watches); what the
commands make of it (``raftlab test`` in each mode) is in tests/test_verdicts.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from labtests import last_bound, memory_bound

ROOT = Path(__file__).resolve().parent.parent
TOYS = ROOT / "tests" / "toys"

# A thread that allocates (every page written) until it holds ``most`` MiB, then sleeps:
# a bound that did not act fails the test, not the machine.
EAT = """
    import threading
    def eat(most):
        held = []
        while len(held) * 4 < most:
            held.append(b"x" * (4 << 20))
        time.sleep(3600)
"""


def _child(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = ("import os, time\nfrom labtests import memory_bound\n" + textwrap.dedent(EAT)
              + textwrap.dedent(code))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**clean, **env})


def test_a_process_past_its_bound_is_ended_and_its_dump_says_why(tmp_path):
    res = _child("""
        memory_bound.watch(150, None)
        threading.Thread(target=eat, args=(1024,), daemon=True).start()
        time.sleep(60)
    """, {last_bound.ENV_DIR: str(tmp_path)})
    assert res.returncode == 1, res.stderr
    (path,) = tmp_path.iterdir()
    dump = last_bound.read_dump(tmp_path, int(path.stem.removeprefix("last-bound-")))
    assert dump is not None and dump.startswith("Memory bound ("), dump
    held = int(dump.split("(", 1)[1].split(" MiB", 1)[0])
    assert 150 < held < 1024, dump  # ended on the way, long before the eater stopped
    assert "in eat" in dump  # the culprit's frame
    assert last_bound.describe(dump) == (
        f"raftlab's memory bound ended the test process: it held {held} MiB of memory, over "
        "its bound of 150 MiB (--raft-memory-mb, RAFTLAB_MEMORY_MB); most likely the Raft "
        "allocates without end (a log never trimmed, entries appended in a loop): see the "
        "stacks")


def test_without_a_folder_the_stacks_go_to_the_given_descriptor():
    res = _child("""
        memory_bound.watch(150, 2)
        threading.Thread(target=eat, args=(1024,), daemon=True).start()
        time.sleep(60)
    """, {})
    assert res.returncode == 1
    assert "Memory bound (" in res.stderr and "in eat" in res.stderr, res.stderr


def test_under_the_bound_nothing_happens_and_stop_ends_the_watcher():
    """A process that stays under its bound runs on; the watcher is one thread of the
    process but not of ``threading`` (no test's leak check lists it), and ends on stop()
    without waiting out its look's wait (up to a second)."""
    res = _child("""
        import threading
        def tasks():
            return len(os.listdir("/proc/self/task"))
        before = tasks()
        memory_bound.watch(1024, None)
        time.sleep(0.05)
        during = tasks()
        held = [b"x" * (64 << 20)]  # well under the bound
        time.sleep(1.5)  # at least one look
        assert threading.active_count() == 1, threading.enumerate()
        memory_bound.stop()
        time.sleep(0.2)  # stop() ends its wait at once
        after = tasks()
        memory_bound.watch(0, None)  # no bound: no watcher
        time.sleep(0.05)
        print(before, during, after, tasks())
    """, {})
    assert res.returncode == 0, res.stderr
    before, during, after, off = map(int, res.stdout.split())
    assert (during, after, off) == (before + 1, before, before), res.stdout


def test_a_watcher_that_cannot_start_leaves_the_test_unwatched_and_is_tried_again(
        monkeypatch):
    """Out of threads (an earlier test's Raft leaked them): watch() at a test's start
    raised, and pytest ended the whole run with INTERNALERROR."""
    import _thread

    def refuse(*args: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_thread, "start_new_thread", refuse)
    memory_bound.watch(2048, None)  # no exception
    started = []
    monkeypatch.setattr(_thread, "start_new_thread", lambda *a: started.append(a))
    memory_bound.watch(2048, None)  # the next test's: tried again
    assert len(started) == 1
    memory_bound.stop()


def test_looks_come_more_often_as_the_bound_comes_near():
    assert memory_bound.next_look_s(48, 2048) == 2000 / 2048
    assert memory_bound.next_look_s(10, 8192) == 1.0  # never more than a second apart
    assert memory_bound.next_look_s(2000, 2048) == 0.05  # nor less than 50 ms
    assert memory_bound.next_look_s(2100, 2048) == 0.05


def test_a_forked_child_watches_again_once_asked():
    """After fork() the child has no watcher (threads do not survive a fork); the next
    watch() in it starts one -- what every graded test's start does in stress's forked
    workers -- and that one ends the child, not the parent, which watches at the same
    bound."""
    res = _child("""
        memory_bound.watch(150, None)
        pid = os.fork()
        if pid == 0:
            memory_bound.watch(150, None)
            threading.Thread(target=eat, args=(1024,), daemon=True).start()
            time.sleep(60)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """, {})
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == ["1"], res.stdout + res.stderr
    assert res.stderr.startswith("Memory bound (") and " > 150 MiB)!" in res.stderr
    assert "in eat" in res.stderr


def test_a_peak_the_process_inherited_is_not_its_own():
    """The kernel carries a process's peak resident size (getrusage's ru_maxrss) across
    fork and exec: a test process started by one that had once held more than the bound
    read that peak as its own and ended itself at its first look, having allocated
    nothing.  (A CI dry run's pytest worker had peaked at 234 MiB: a child it started,
    watching at 150 MiB, ended at once.)  The bound reads the resident size now."""
    res = _child("""
        import resource, subprocess, sys
        held = [b"x" * (4 << 20) for _ in range(75)]  # 300 MiB, then let go
        del held
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10 > 250
        child = subprocess.run([sys.executable, "-c",
            "import resource, time; from labtests import memory_bound; "
            "memory_bound.watch(200, None); time.sleep(1.5); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10)"],
            capture_output=True, text=True)
        print(child.returncode, child.stdout.strip())
        sys.stderr.write(child.stderr)
    """, {})
    assert res.returncode == 0, res.stderr
    status, inherited = res.stdout.split()
    assert int(inherited) > 250, res.stdout  # the child's peak is the parent's...
    assert status == "0", res.stderr  # ...and its bound of 200 MiB let it live


def test_stress_fails_a_run_whose_process_passed_the_bound(tmp_path):
    """stress's forked workers: the run fails naming the bound, the next run gets a new
    worker (and fails the same way: the toy eats in every run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "tools.cli", "stress", "test_initial_election_2a", "-n", "2",
         "-p", "1", "--impl", str(TOYS / "eats_memory.py"), "--", "--raft-memory-mb", "200"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env={**env, "PYTHONPATH": str(ROOT), "RAFTLAB_TOY_EAT_MAX_MB": "1024"})
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("FAILED ")
             and "raftlab's memory bound ended the run's process (forked worker gw" in ln]
    assert len(lines) == 2, res.stdout
    assert all("over its bound of 200 MiB" in ln for ln in lines)
    assert time.monotonic() - start < 120


def test_raftlab_tests_flag_passes_the_bound_on_and_refuses_a_bad_one(capsys):
    from tools.test_command import build_parser, command_args

    opts = build_parser().parse_args(["2A", "--memory-mb", "300"])
    assert command_args(opts, [])[-2:] == ["--raft-memory-mb", "300"]
    assert "--raft-memory-mb" not in command_args(build_parser().parse_args(["2A"]), [])
    for bad, says in (("-3", "-3: a number of MiB, or 0 for no bound"),
                      ("2G", "not a whole number of MiB: '2G'")):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["--memory-mb", bad])
        assert exc.value.code == 2
        assert says in capsys.readouterr().err
