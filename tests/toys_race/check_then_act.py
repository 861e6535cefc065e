"""Mutant: the ticker decides to start an election outside the lock, then acts under it.

A check-then-act split across a lock release: ``role`` and
``election_deadline`` are read without ``self.mu`` (an RPC handler may be
changing them), and the election starts on that stale decision.
"""

import time

from raft.reference.raft import IDLE_WAIT, LEADER
from raft.reference.raft import Raft as _Reference


class Raft(_Reference):
    def _ticker(self) -> None:
        while not self._dead.is_set():
            now = time.monotonic()
            if self.role == LEADER or now < self.election_deadline:  # RACE: check unlocked
                time.sleep(min(IDLE_WAIT, max(self.election_deadline - now, 0.01)))
                continue
            with self.mu:  # act on the stale check
                if self._dead.is_set():
                    return
                args = self._start_election()
            for p in range(self.n):
                if p != self.me:
                    self.pool.submit(lambda p=p, a=args: self._send_vote(p, a))


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201
    return Raft(peers, me, persister, apply_ch)
