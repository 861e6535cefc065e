"""Isolation toy: a Raft whose "chatter" thread keeps calling after ``kill()``.

Once killed, the chatter thread makes ``CALLS_AFTER_KILL`` sequential calls to
the next peer, then ends -- or, with ``TOY_CHATTER_FOREVER=1`` in the
environment, keeps calling until the test's cleanup.  In-process (and in Go)
those calls go through the crashed instance's disabled ends: counted by the
network, failed after the usual delays.  The isolated mode must count them the
same way, and report a chatter that never ends as a leftover thread.
"""

from __future__ import annotations

import os
import threading

import _quiet

CALLS_AFTER_KILL = 12


class CallsAfterKill(_quiet.Quiet):
    def __init__(self, peers, me, persister, apply_ch):
        super().__init__(peers, me, persister, apply_ch)
        self.forever = os.environ.get("TOY_CHATTER_FOREVER") == "1"
        threading.Thread(target=self._chatter, name="chatter", daemon=True).start()

    def _chatter(self) -> None:
        self.dead.wait()
        target = self.peers[(self.me + 1) % len(self.peers)]
        calls = 0
        while self.forever or calls < CALLS_AFTER_KILL:
            target.call("Raft.request_vote", {"term": 0})
            calls += 1


def make(peers, me, persister, apply_ch):
    return CallsAfterKill(peers, me, persister, apply_ch)
