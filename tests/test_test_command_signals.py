"""A stop signal or a kill of ``raftlab test`` never leaves its pytest child running.

Found by running ``raftlab test --sim --race`` in the background and ending it with
``kill``: the command died and its pytest child, re-parented to init, kept running the
graded suite for half an hour with nobody reading its verdicts.  Now SIGTERM and
SIGHUP stop the child the way Ctrl-C does (the command prints what was stopped and
exits with 128 + the signal), and SIGKILL of the command takes the child with it
(``PR_SET_PDEATHSIG``).

Each test starts ``raftlab test 2A`` in real time in a session of its own, waits for
the first test's line (the child is then running graded code) -- and, where the
stop line must name the running test, for the second test's start in the child's
events file -- signals the command, and reads /proc: no live process may remain in
that session.  Load-proof: the signal
goes out once a test has started, and the three 2A tests take over 10 s even on an
idle machine; a loaded machine only makes them longer.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.session_procs import killed_on_exit, left_after
from tools.test_run.channel import ENV_EVENTS

REPO = Path(__file__).resolve().parents[1]
FIRST_LINE_S = 300  # start-up only: importing and collecting on a loaded machine


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's background job starts


def _raftlab_test(tmp_path: Path, *, background: bool = False) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "test", "2A", "--seed", "5"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=_ignore_sigint if background else None)


def _wait_for_first_test(proc: subprocess.Popen[str]) -> str:
    """Read the command's output until the first graded test has started."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + FIRST_LINE_S
    while "Test (2A)" not in seen:
        assert time.monotonic() < deadline, f"no test started in {FIRST_LINE_S} s:\n{seen}"
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            assert line, f"the command ended before a test started:\n{seen}"
            seen += line
    return seen


def _wait_for_second_test(proc: subprocess.Popen[str]) -> None:
    """Wait until the child has started the second test, as its events file says.

    The first test's line shows as soon as that test ended (the command wakes on the
    child's doorbell), so a signal sent then can fall between two tests, where "stopped
    during" has no test to name; the events file (named in the child's environment)
    says when the next one began.
    """
    children = _children(proc.pid)
    assert children, "raftlab test should run pytest in a child process"
    environ = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\0")
    path = next(Path(v.split(b"=", 1)[1].decode()) for v in environ
                if v.startswith(ENV_EVENTS.encode() + b"="))
    deadline = time.monotonic() + FIRST_LINE_S
    while True:
        text = path.read_text()
        complete = text[:text.rfind("\n") + 1].splitlines()  # not a line being written
        if any(e.get("event") == "start" and "test_re_election_2a" in e.get("nodeid", "")
               for e in map(json.loads, complete)):
            return
        assert time.monotonic() < deadline, f"the second test did not start in {FIRST_LINE_S} s"
        time.sleep(0.01)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize(("sig", "background"), [
    (signal.SIGTERM, False), (signal.SIGHUP, False),
    # `raftlab test ... &` in a script, then `kill`: the command starts with SIGINT
    # ignored, and its child must still hear the SIGINT it is stopped with.
    (signal.SIGTERM, True)], ids=["SIGTERM", "SIGHUP", "SIGTERM-background-job"])
def test_a_stop_signal_stops_the_test_process_and_says_so(tmp_path, sig, background):
    with killed_on_exit(_raftlab_test(tmp_path, background=background)) as proc:
        head = _wait_for_first_test(proc)
        _wait_for_second_test(proc)
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=120)
    text = head + rest
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, text[-3000:]
    assert f"raftlab: terminated by {name}: the test process was stopped" in text, text[-3000:]
    # The line names the test it stopped and the tests not run (the output shows a
    # test's line once it has ended, so the stop came during the second or third
    # test); nothing is blamed on the Raft.
    stop_line = next(ln for ln in text.splitlines() if "the test process was stopped" in ln)
    assert re.search(r"stopped during test_\w+_2a", stop_line), stop_line
    assert "test_many_elections_2a" in stop_line, stop_line
    assert "the test process ended with" not in text, text[-3000:]
    assert left_after({proc.pid}, 5) == {}, text[-3000:]


def test_killing_the_command_outright_takes_its_test_process_with_it(tmp_path):
    with killed_on_exit(_raftlab_test(tmp_path)) as proc:
        _wait_for_first_test(proc)
        assert _children(proc.pid), "raftlab test should run pytest in a child process"
        proc.kill()  # SIGKILL: no handler runs; only the kernel can end the child now
        proc.wait(timeout=30)
    left = left_after({proc.pid}, 10)  # the session is the command's pid
    for pid in left:  # do not leave a stray to the tests after this one
        os.kill(pid, signal.SIGKILL)
    assert left == {}, f"the test process outlived the command: {left}"


def test_a_stop_signal_while_events_are_shown_loses_none_of_them(tmp_path):
    """A SIGTERM arriving while the parent folds the events it just read waits until they
    are all folded and shown; raised in the middle, it lost the rest of that read (the
    reader had passed them), and the stop line could name no running test."""
    from tools.termination import Terminated, stop_signals_as_interrupts
    from tools.test_run import follow

    events = tmp_path / "events.jsonl"
    names = ["start a", "end a", "start b"]
    events.write_text("".join(json.dumps({"event": n}) + "\n" for n in names))
    folded: list[str] = []
    shown: list[str] = []

    class State:
        def apply(self, event: dict) -> None:
            if not folded:
                os.kill(os.getpid(), signal.SIGTERM)  # as the first event is folded
            folded.append(event["event"])

    class Display:
        def event(self, event: dict, state: object) -> None:
            shown.append(event["event"])

    with stop_signals_as_interrupts(), follow.Wakeup() as wakeup:
        # A child that ends on the SIGINT the parent passes on (its Ctrl-C).
        proc = wakeup.spawn([sys.executable, "-c", "import time; time.sleep(120)"],
                            dict(os.environ))
        status, stop = follow._follow(proc, follow.EventReader(events), State(), Display(),
                                      wakeup)
    assert isinstance(stop, Terminated) and stop.signum == signal.SIGTERM
    assert status != 0  # the child was stopped
    assert folded == shown == names
