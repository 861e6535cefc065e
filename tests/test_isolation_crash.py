"""A crashed peer under --isolate behaves as a crashed Raft object in-process.

In-process (and in Go) ``crash1`` calls ``kill()`` and disables the instance's
ends, but the object lives on: calls its threads make after ``kill()`` are
counted by the network and fail after the usual delays.  Isolated, the peer's
process lives on the same way until its Raft threads end (then it is killed),
and threads that never end are reported at cleanup like every leftover thread.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from labtests.config import Config
from labtests.impl_loader import load

TOYS = Path(__file__).parent / "toys_isolated"
TOY = TOYS / "calls_after_kill.py"
sys.path.insert(0, str(TOYS))  # the toys import their base, _quiet
CALLS_AFTER_KILL = 12  # as in the toy

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="isolated mode is Linux only")


def _impl(mode: str):
    if mode == "isolated":
        from labtests.isolation import IsolatedImplementation
        return IsolatedImplementation(str(TOY))
    return load(str(TOY))


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("mode", ["in-process", "isolated"])
def test_calls_a_crashed_raft_makes_after_kill_are_counted_in_both_modes(mode):
    impl = _impl(mode)
    cfg = Config(3, False, False, impl=impl, seed=1)
    try:
        cfg.start_peers()
        cfg.net.long_delays(False)  # unreachable: fail within 100 ms (the tester's 7 s is slow)
        old = cfg.rafts[0]
        before = cfg.rpc_count(1)  # the chatter calls server 1
        cfg.crash1(0)
        # each call waits out the disabled end's delay (< 100 ms) before it fails
        assert _wait_for(lambda: cfg.rpc_total() >= CALLS_AFTER_KILL, 15.0), cfg.rpc_total()
        time.sleep(0.5)  # nothing more comes once the chatter ended
        assert cfg.rpc_total() == CALLS_AFTER_KILL
        assert cfg.rpc_count(1) == before  # disabled ends: none was delivered
        if mode == "isolated":
            # its threads ended: the crashed peer's process is gone, not kept to the end
            assert _wait_for(lambda: not _alive(old.pid), 15.0)
    finally:
        cfg.cleanup()
        if mode == "isolated":
            impl.close()


def test_a_crashed_isolated_peer_whose_thread_never_ends_is_a_leftover_at_cleanup(monkeypatch):
    monkeypatch.setenv("TOY_CHATTER_FOREVER", "1")
    impl = _impl("isolated")
    cfg = Config(3, False, False, impl=impl, seed=2)
    try:
        cfg.start_peers()
        cfg.net.long_delays(False)
        old = cfg.rafts[0]
        cfg.crash1(0)
        assert _wait_for(lambda: cfg.rpc_total() >= 5, 15.0)
        assert _alive(old.pid)  # still calling: its process lives on, as the object would
    finally:
        cfg.cleanup()
        impl.close()
    leftovers = cfg.peer_leftover_threads
    assert f"{old.label}: chatter" in leftovers, leftovers
    assert not _alive(old.pid)  # and the cleanup ended it
    assert os.getpid()  # (the tester itself is unaffected)
