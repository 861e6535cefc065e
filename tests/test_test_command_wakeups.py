"""``raftlab test``'s own process sleeps until its child has news (the doorbell).

It used to look at the events file and the child every 50 ms: about 4 ms of CPU a
second on the lab's VM, ~1.4 s over the whole lab.  Now the child rings a pipe after
each event and the parent sleeps on it and on the child's pidfd.  These tests use
real child processes and the parent's real loop (``follow._follow``); what would be
timing is made a handshake (the child waits until the parent has shown its event)
and the parent's fallback look is pushed out to a minute, so a doorbell that did not
work would show as a child that gave up waiting, not as a slow test.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tools.test_run import follow
from tools.test_run.channel import ENV_DOORBELL, Doorbell

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open") or not sys.platform.startswith(
    "linux"), reason="the doorbell's parent side sleeps on a pidfd (Linux)")

GAVE_UP = 3  # the child's exit status when the parent never showed its event


def _child(events: Path, seen: Path, *, close_bell: bool) -> str:
    """A child that writes one event, rings (or first closes its bell), waits to be seen."""
    return f"""
import json, os, sys, time
from tools.test_run.channel import Doorbell
bell = Doorbell.from_environment()
assert bell is not None, "no doorbell passed down"
if {close_bell}:
    os.close(bell.fd)  # what code under test that closes descriptors does
with open({str(events)!r}, "a") as f:
    f.write(json.dumps({{"event": "start", "nodeid": "t"}}) + "\\n")
bell.ring()
deadline = time.monotonic() + 30
while not os.path.exists({str(seen)!r}):
    if time.monotonic() > deadline:
        sys.exit({GAVE_UP})
    time.sleep(0.01)
"""


class _Display:
    """Records what the parent showed, and tells the child it was shown."""

    def __init__(self, proc_ref: list[subprocess.Popen[bytes]], seen: Path) -> None:
        self.proc_ref = proc_ref
        self.seen = seen
        self.shown: list[tuple[str, bool]] = []

    def event(self, event: dict, state: object) -> None:
        self.shown.append((event["event"], self.proc_ref[0].poll() is None))
        self.seen.touch()


class _State:
    def apply(self, event: dict) -> None:
        pass


def _run_parent(tmp_path: Path, child_code: str) -> tuple[int, _Display, int]:
    """The parent's loop over a child running ``child_code``; (status, display, wake-ups)."""
    events, seen = tmp_path / "events.jsonl", tmp_path / "seen"
    events.touch()
    with follow.Wakeup() as wakeup:
        proc = wakeup.spawn([sys.executable, "-c", child_code], dict(os.environ))
        display = _Display([proc], seen)
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
        status, _ = follow._follow(proc, follow.EventReader(events), _State(), display, wakeup)
        woke = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before
    return status, display, woke


def test_the_parent_shows_an_event_when_the_child_rings_not_at_its_next_look(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "LOOK_ANYWAY_S", 60.0)  # only the bell can wake it in time
    events, seen = tmp_path / "events.jsonl", tmp_path / "seen"
    status, display, woke = _run_parent(tmp_path, _child(events, seen, close_bell=False))
    assert status == 0, "the child never saw its event shown: the doorbell did not wake the parent"
    assert display.shown == [("start", True)], "shown while the child was still running"
    # One wake-up for the bell, one for the child's end, a few for the child's start-up
    # (its interpreter takes ~0.1 s: a 50 ms poll would have woken the parent 2-3 times
    # by then, and ~once per 10 ms of the handshake after).
    assert woke <= 6, f"the parent woke {woke} times"


def test_a_child_that_closed_its_doorbell_is_still_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "LOOK_ANYWAY_S", 60.0)
    events, seen = tmp_path / "events.jsonl", tmp_path / "seen"
    status, display, _ = _run_parent(tmp_path, _child(events, seen, close_bell=True))
    assert status == 0, "the parent stopped looking once the doorbell was closed"
    assert display.shown == [("start", True)]


def test_a_quiet_child_does_not_wake_the_parent(tmp_path: Path) -> None:
    """A test that runs for seconds without an event: the parent sleeps through it."""
    code = "import time; time.sleep(3)"
    fds_before = set(os.listdir("/proc/self/fd"))
    status, display, woke = _run_parent(tmp_path, code)
    assert set(os.listdir("/proc/self/fd")) == fds_before, "the doorbell or pidfd leaked"
    assert status == 0 and display.shown == []
    # At most one look a second (LOOK_ANYWAY_S) and the child's end; a 50 ms poll: ~60.
    assert woke <= 3 / follow.LOOK_ANYWAY_S + 3, f"the parent woke {woke} times in 3 s"


def test_the_doorbell_never_writes_to_a_descriptor_reused_after_it_was_closed(
        tmp_path: Path) -> None:
    bell_read, bell_write = os.pipe()
    bell = Doorbell(bell_write)
    os.close(bell_write)
    victim = tmp_path / "students-file"
    fd = os.open(victim, os.O_WRONLY | os.O_CREAT)
    if fd != bell_write:  # usually the lowest free number is the one just closed
        os.dup2(fd, bell_write)
        os.close(fd)
    try:  # the number now names someone else's file
        bell.ring()
        bell.ring()
    finally:
        os.close(bell_write)
    os.close(bell_read)
    assert victim.read_bytes() == b"", "the doorbell wrote into a file that is not its pipe"
    assert bell.fd is None  # and it stays silent from then on


def test_a_full_doorbell_does_not_block_the_child() -> None:
    bell_read, bell_write = os.pipe()
    os.set_blocking(bell_write, False)
    bell = Doorbell(bell_write)
    rung = threading.Thread(target=lambda: [bell.ring() for _ in range(200_000)], daemon=True)
    rung.start()
    rung.join(30)
    try:
        assert not rung.is_alive(), "ringing a full pipe blocked"
        assert bell.fd == bell_write, "a full pipe is a ringing bell, not a broken one"
    finally:
        os.close(bell_read)
        os.close(bell_write)


@pytest.mark.parametrize("value", ["", "x", "99999", "0"])
def test_no_usable_doorbell_in_the_environment_means_none(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Not set, not a number, not open, or not a pipe (fd 0 here is pytest's stdin)."""
    if value == "0" and Path("/proc/self/fd/0").exists() and \
            os.path.realpath("/proc/self/fd/0").startswith("pipe:"):
        pytest.skip("stdin is a pipe here")
    monkeypatch.setenv(ENV_DOORBELL, value)
    assert Doorbell.from_environment() is None


def test_raftlab_test_passes_the_doorbell_to_its_child(tmp_path: Path) -> None:
    """End to end: the child pytest of ``raftlab test`` finds a working doorbell."""
    probe = tmp_path / "probe.json"
    (tmp_path / "bellprobe.py").write_text(
        "import json, os, stat\n"
        "from tools.test_run.channel import Doorbell\n"
        "def pytest_configure(config):\n"
        "    bell = Doorbell.from_environment()\n"
        "    found = bell is not None and stat.S_ISFIFO(os.fstat(bell.fd).st_mode)\n"
        f"    open({str(probe)!r}, 'w').write(json.dumps(found))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "tools.cli", "test", "test_initial_election_2a",
                           "--sim", "--", "-p", "bellprobe", "-p", "no:cacheprovider"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert probe.exists(), "the probe plugin did not run in the child"
    assert json.loads(probe.read_text()) is True, "the child found no doorbell pipe"


def test_a_wakeup_starts_one_child_and_keeps_none_of_its_end() -> None:
    """``spawn`` passes the write end to the child and closes it here (else the parent
    would never see the bell closed); a second child would get no bell: refused."""
    fds_before = set(os.listdir("/proc/self/fd"))
    with follow.Wakeup() as wakeup:
        proc = wakeup.spawn([sys.executable, "-c", "import os, sys; "
                             f"os.write(int(os.environ['{ENV_DOORBELL}']), b'x')"],
                            dict(os.environ))
        assert proc.wait(timeout=60) == 0
        with pytest.raises(RuntimeError, match="already started its child"):
            wakeup.spawn([sys.executable, "-c", "pass"], dict(os.environ))
        assert wakeup.bell is not None
        assert os.read(wakeup.bell, 16) == b"x"
        assert os.read(wakeup.bell, 16) == b"", "the parent still holds the child's end"
    assert set(os.listdir("/proc/self/fd")) == fds_before, "the doorbell or pidfd leaked"
