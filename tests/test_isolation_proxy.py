"""The tester's side of an isolated peer, driven message by message (no Raft, no fork).

The end-to-end tests (tests/test_isolation.py) run real peer processes, where the order
in which two of the tester's threads see things is up to the machine; here the order
is forced, so a verdict that depends on it is checked every time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labrpc.pool import ThreadPool
from labtests.failures import FailureChannel, RaftTestFailure
from labtests.isolation import wire
from labtests.isolation.proxy import PeerProxy
from raft.apply_channel import ApplyChannel
from raft.persister import Persister

REASON = "Raft object (toy.Raft) lacks required method(s): snapshot"


def _exited_child() -> subprocess.Popen[bytes]:
    """A child of this process that has exited and is not reaped yet (as a peer that quit).

    Keep the Popen while the test runs: collecting it would reap the child."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return child
        time.sleep(0.01)
    raise AssertionError("the child did not exit")


class _LookAfterReader(threading.Event):
    """The hello's event, as start_peer() waits on it: it looks only once the reader thread
    has read the whole conversation (the make failure, then the closed connection)."""

    def __init__(self, proxy: PeerProxy) -> None:
        super().__init__()
        self._proxy = proxy

    def wait(self, timeout: float | None = None) -> bool:
        self._proxy._reader.join(timeout)
        assert not self._proxy._reader.is_alive()
        return super().wait(timeout)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_a_make_failure_stays_the_verdict_when_the_peers_exit_is_read_first(tmp_path: Path):
    """The peer reports make()'s failure, then exits; the reader thread sees both before
    the tester's main thread looks (what a loaded machine does).  The verdict is the
    reason, not "exited with status 0" (CI saw the latter once)."""
    mine, theirs = socket.socketpair()
    wire.Connection(theirs).send(("make_failed", REASON))
    theirs.close()
    child = _exited_child()
    pid = child.pid
    failures = FailureChannel()
    calls = ThreadPool("test-proxy-calls")
    proxy = PeerProxy(
        me=0, label=f"server 0 (peer process {pid})", pid=pid, conn=wire.Connection(mine),
        stacks_fd=os.open(tmp_path / "stacks", os.O_CREAT | os.O_RDWR), ends=[],
        persister=Persister(), apply_ch=ApplyChannel(), failures=failures, calls=calls,
    )
    proxy._hello.event = _LookAfterReader(proxy)
    try:
        with pytest.raises(RaftTestFailure) as failure:
            proxy.start_peer(("init",))
        assert f"server 0 (peer process {pid}): {REASON}" in str(failure.value)
        assert "exited" not in failures.first_message(), failures.first_message()
        assert not proxy.alive  # the exit was still seen: the peer is gone
    finally:
        proxy.terminate()
        calls.close()
