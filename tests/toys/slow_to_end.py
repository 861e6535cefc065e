"""Toy for simulated-time reproducibility: the bundled Raft, except that each peer's
applier thread takes a while to end once the peer is killed (it logs, then
lingers ``LINGER_S``, then logs again) -- well within the harness's grace for
threads to end, so it passes, but the test's cleanup waits for those threads.

A self-test runs it after a simulated run that failed (a deadlock, a watchdog)
and checks that the run is the same, switch for switch and debug line for debug
line, as the same run alone: state an earlier run leaves behind (an abandoned
thread's ident) must not change which threads the cleanup waits for.
"""

from __future__ import annotations

import time
from typing import Any

from raft.debuglog import dlog
from raft.reference import raft as reference

LINGER_S = 0.2


class Raft(reference.Raft):
    def _applier(self) -> None:
        super()._applier()
        dlog("INFO", self.me, "applier lingers %.1f s after kill", LINGER_S)
        time.sleep(LINGER_S)
        dlog("INFO", self.me, "applier ended")


def make(peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Raft:
    return Raft(peers, me, persister, apply_ch)
