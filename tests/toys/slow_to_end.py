"""Toy for simulated-time reproducibility: the bundled Raft, except that each of its
own threads (ticker, applier, replicator) takes a while to end once the peer is
killed (it logs, lingers, logs again) -- each a little longer than the one created
before it, all well within the harness's grace for threads to end, so it passes,
but the test's cleanup waits for each in turn (every end wakes it).

A self-test runs it after a simulated run that failed (a deadlock, a watchdog)
and checks that the run is the same, switch for switch and debug line for debug
line, as the same run alone: state an earlier run leaves behind (an abandoned
thread's ident) must not change which threads the cleanup waits for.  Every
thread of the Raft lingers, in the order the cleanup joins them, so that whichever
simulated ident of the Raft's an earlier run left behind, leaving that thread out
of the leak check changes the steps.
"""

from __future__ import annotations

import time
from typing import Any

from raft.debuglog import dlog
from raft.reference import raft as reference

LINGER_S = 0.1  # the first thread's; each next one 20 ms more
KINDS = ("ticker", "applier", "replicator")


class Raft(reference.Raft):
    def _linger(self, what: str) -> None:
        linger = LINGER_S + 0.02 * (len(KINDS) * self.me + KINDS.index(what))
        dlog("INFO", self.me, "%s lingers %.2f s after kill", what, linger)
        time.sleep(linger)
        dlog("INFO", self.me, "%s ended", what)

    def _ticker(self) -> None:
        super()._ticker()
        self._linger("ticker")

    def _applier(self) -> None:
        super()._applier()
        self._linger("applier")

    def _replicator(self) -> None:
        super()._replicator()
        self._linger("replicator")


def make(peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Raft:
    return Raft(peers, me, persister, apply_ch)
