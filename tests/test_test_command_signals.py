"""A stop signal or a kill of ``raftlab test`` never leaves its pytest child running.

Found by running ``raftlab test --sim --race`` in the background and ending it with
``kill``: the command died and its pytest child, re-parented to init, kept running the
graded suite for half an hour with nobody reading its verdicts.  Now SIGTERM and
SIGHUP stop the child the way Ctrl-C does (the command prints what was stopped and
exits with 128 + the signal), and SIGKILL of the command takes the child with it
(``PR_SET_PDEATHSIG``).

Each test starts ``raftlab test 2A`` in real time in a session of its own, waits for
the first test's line (the child is then running graded code) -- and, where the
stop line must name the running test, freezes the child (SIGSTOP) inside a later
test and lets it go once the stop waits in it -- signals the command, and reads
/proc: no live process may remain in that session.  Load-proof: the signal goes out
once a test has started, and where the test it stops matters, the child cannot move
on before it arrives, however late this process sends it.
"""

from __future__ import annotations

import json
import os
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
FIRST_TEST = "test_initial_election_2a"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's background job starts


def _raftlab_test(tmp_path: Path, *, background: bool = False) -> subprocess.Popen[str]:
    # Its temporary files in the test's folder: a command killed outright cannot remove
    # its own (raftlab-test-* stayed in the machine's /tmp).
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path / "tmp"))
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


def _events_of(proc: subprocess.Popen[str]) -> Path:
    """The child's events file (named in its environment)."""
    children = _children(proc.pid)
    assert children, "raftlab test should run pytest in a child process"
    environ = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\0")
    return next(Path(v.split(b"=", 1)[1].decode()) for v in environ
                if v.startswith(ENV_EVENTS.encode() + b"="))


def _running_tests(path: Path) -> list[str]:
    """Tests the events file shows started and not ended (complete lines only)."""
    text = path.read_text()
    running: dict[str, bool] = {}
    for event in map(json.loads, text[:text.rfind("\n") + 1].splitlines()):
        nodeid = event.get("nodeid", "")
        if event.get("event") == "start":
            running[nodeid] = True
        elif event.get("event") == "report" and event.get("when") == "teardown":
            running.pop(nodeid, None)
    return [n.rsplit("::", 1)[-1] for n in running]


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def _freeze_during_a_later_test(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Stop the child (SIGSTOP) while a test after the first runs; return its pid and
    that test's name.

    The first test's line shows as soon as that test ended (the command wakes on the
    child's doorbell), so a signal sent then can fall between two tests, where "stopped
    during" has no test to name; and a signal sent "while the second test runs" is
    late if this process is descheduled for the seconds the rest of the run takes (the
    command then stops a child that had finished: CI saw a stop line naming nothing).
    Frozen, the child is in the test its events file shows running until it is let go.
    """
    child = _children(proc.pid)[0]
    path = _events_of(proc)
    deadline = time.monotonic() + FIRST_LINE_S
    while True:
        assert proc.poll() is None, "the command ended before a test could be stopped"
        if [t for t in _running_tests(path) if t != FIRST_TEST]:
            os.kill(child, signal.SIGSTOP)
            while _state(child) not in "Tt":
                time.sleep(0.001)
            running = [t for t in _running_tests(path) if t != FIRST_TEST]  # now frozen
            if running:
                return child, running[0]
            os.kill(child, signal.SIGCONT)  # between two tests: try the next one
        assert time.monotonic() < deadline, f"no second test started in {FIRST_LINE_S} s"
        time.sleep(0.01)


def _pending(pid: int, sig: int) -> bool:
    """Is ``sig`` pending for the process (sent to it, not yet delivered)?"""
    status = Path(f"/proc/{pid}/status").read_text()
    shared = next(ln for ln in status.splitlines() if ln.startswith("ShdPnd:"))
    return bool(int(shared.split()[1], 16) >> (sig - 1) & 1)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize(("sig", "background", "group"), [
    (signal.SIGTERM, False, False), (signal.SIGHUP, False, False),
    # `kill -INT` of the command alone: it was ignored until the whole suite had run,
    # and the command then exited 0.
    (signal.SIGINT, False, False),
    # Ctrl-C at the terminal: SIGINT to the whole group.  It used to end with pytest's
    # status 2, its KeyboardInterrupt banner and a summary that read like a finished
    # run.  (That the child takes the terminal's SIGINT and the command's as one stop
    # is the next test's: frozen, the child gets the two as one.)
    (signal.SIGINT, False, True),
    # `raftlab test ... &` in a script, then `kill`: the command starts with SIGINT
    # ignored, and its child must still hear the SIGINT it is stopped with.
    (signal.SIGTERM, True, False)],
    ids=["SIGTERM", "SIGHUP", "SIGINT", "ctrl-c-to-group", "SIGTERM-background-job"])
def test_a_stop_signal_stops_the_test_process_and_says_so(tmp_path, sig, background, group):
    with killed_on_exit(_raftlab_test(tmp_path, background=background)) as proc:
        head = _wait_for_first_test(proc)
        child, running = _freeze_during_a_later_test(proc)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        # The command passes the stop on as SIGINT; it waits in the frozen child, which
        # then hears it in the test that was running.
        deadline = time.monotonic() + 60
        while not _pending(child, signal.SIGINT):
            assert time.monotonic() < deadline, "the command did not pass the stop on"
            time.sleep(0.01)
        os.kill(child, signal.SIGCONT)
        rest, _ = proc.communicate(timeout=120)
    text = head + rest
    said = ("interrupted" if sig == signal.SIGINT
            else f"terminated by {signal.Signals(sig).name}")
    assert proc.returncode == 128 + sig, text[-3000:]
    assert f"raftlab: {said}: the test process was stopped" in text, text[-3000:]
    # The line names the test it stopped and the tests not run (the output shows a
    # test's line once it has ended, so the stop came during the second or third
    # test); nothing is blamed on the Raft, and pytest's own words stay its own.
    stop_line = next(ln for ln in text.splitlines() if "the test process was stopped" in ln)
    assert f"stopped during {running}" in stop_line, text[-3000:]
    assert "test_many_elections_2a" in stop_line, text[-3000:]
    assert "the test process ended with" not in text, text[-3000:]
    assert "KeyboardInterrupt" not in text and "Traceback" not in text, text[-3000:]
    assert left_after({proc.pid}, 5) == {}, text[-3000:]


SLOW_TEARDOWN = """
import os, time, pytest

@pytest.fixture
def slow_cleanup():
    yield
    print("cleanup started", flush=True)
    time.sleep(1.0)  # the second SIGINT lands here
    print("cleanup finished", flush=True)

def test_waits(slow_cleanup):
    open(os.environ["READY"], "w").close()
    time.sleep(60)
"""


def test_the_test_process_takes_two_sigints_as_one_stop(tmp_path):
    """The child of ``raftlab test`` gets the terminal's Ctrl-C and the command's a moment
    apart: the second must not cut short the running test's clean-up (without
    tools/test_run/child_stop.py it raised a second KeyboardInterrupt there)."""
    from tools.test_run import follow

    (tmp_path / "test_slow.py").write_text(SLOW_TEARDOWN)
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        follow.child_command(["-q", "-s", "-p", "no:cacheprovider", str(tmp_path)]),
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO), READY=str(ready)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=follow._child_setup(os.getpid()))
    with killed_on_exit(proc):
        deadline = time.monotonic() + FIRST_LINE_S
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the test did not start"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # the clean-up is sleeping now
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, text  # pytest's status for an interrupted session
    assert "cleanup finished" in text, text
    assert text.count("!! KeyboardInterrupt !!") == 1 and "Traceback" not in text, text


def test_a_ctrl_c_while_the_test_process_starts_ends_it_without_a_traceback():
    """SIGINT the moment the child is spawned, before its interpreter is up: it is held
    (blocked) until the child's first line has made it one stop, and ends the child with
    pytest's status for it -- not a traceback from the middle of an import."""
    from tools.test_run import follow

    proc = subprocess.Popen(follow.child_command(["--version"]), cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=follow._child_setup(os.getpid()))
    with killed_on_exit(proc):
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text


def test_a_ctrl_c_while_pytest_starts_ends_the_test_process_without_a_traceback(tmp_path):
    """SIGINT while pytest loads its plugins (here: a plugin that sends it as it is
    imported) is outside pytest's own handling: the child printed a traceback of
    pytest's start-up, shown by the command as the test process's stderr (seen with a
    Ctrl-C half a second into `raftlab test 2A --isolate`)."""
    from tools.test_run import follow

    (tmp_path / "sigint_at_import.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n")
    proc = subprocess.Popen(follow.child_command(["-p", "sigint_at_import", "--co", "-q"]),
                            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(tmp_path)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=follow._child_setup(os.getpid()))
    with killed_on_exit(proc):
        text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text


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
    # Its folder stays (no handler ran) -- until the next raftlab test reclaims it.
    tmp = tmp_path / "tmp"
    assert [p.name[:13] for p in tmp.iterdir()] == ["raftlab-test-"]
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp))
    again = subprocess.run([sys.executable, "-m", "tools.cli", "test", "--", "--co"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert list(tmp.iterdir()) == []


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
