"""The reference Raft's threads that have nothing to do do not wake up (real time).

A follower's replicator and an applier with nothing committed used to wake every
IDLE_WAIT (1 s) to look again; in a 7-peer test that is about 40 wake-ups a second
for nothing, each tens of microseconds of CPU.  Every state change they wait for
is notified under the lock, so in real time they now sleep until notified.  Under
simulated time the bounded wait stays (recorded schedules must not change).
"""

from __future__ import annotations

import threading
import time

from labtests.config import Config
from labtests.impl_loader import load
from raft.reference.raft import IDLE_WAIT


def _switches(thread: threading.Thread) -> int:
    """The thread's voluntary context switches so far: each is one block and wake-up."""
    with open(f"/proc/self/task/{thread.native_id}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def test_idle_replicators_and_appliers_sleep_until_notified():
    cfg = Config(3, False, False, impl=load(None), seed=5)
    try:
        cfg.start_peers()
        leader = cfg.check_one_leader()
        time.sleep(0.3)  # let the election's last notifications settle
        idle = [t for t in threading.enumerate()
                if (t.name.startswith("raft-S") and "-repl" in t.name
                    and not t.name.startswith(f"raft-S{leader}-"))
                or (t.name.startswith("raft-S") and t.name.endswith("-applier"))]
        assert len(idle) == 2 + 3, [t.name for t in idle]  # followers' replicators, appliers
        before = {t.name: _switches(t) for t in idle}
        time.sleep(2.5 * IDLE_WAIT)
        woke = {t.name: _switches(t) - before[t.name] for t in idle}
        # Bounded waits would show >= 2 wake-ups each here; allow one stray (a GIL hand-off).
        assert all(n <= 1 for n in woke.values()), woke
        # And they still work: a command is committed and applied everywhere.
        cfg.begin("idle wake-ups")
        assert cfg.one(101, 3, False) >= 1
    finally:
        cfg.cleanup()
    for t in idle:  # kill() still ends every one of them promptly
        t.join(2.0)
    assert not [t.name for t in idle if t.is_alive()]


def test_a_forked_child_finds_the_reference_already_loaded():
    """raftlab stress forks its workers from a session that never calls make(): the
    reference is loaded once before the fork, not compiled again in every worker."""
    import subprocess
    import sys

    code = (
        "import os, sys, raft\n"
        "assert 'raft.reference' not in sys.modules, 'the API types alone load it'\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if 'raft.reference.raft' in sys.modules else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
