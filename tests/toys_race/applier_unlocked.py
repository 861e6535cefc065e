"""Mutant: the applier advances ``commit_index`` bookkeeping without the lock.

One field written by the applier without ``self.mu``: having taken a batch
under the lock, it records ``last_applied`` and ``commit_index`` (clamping the
latter up to what it is about to apply) after releasing it, while the RPC
handlers and the leader's reply processing read and write ``commit_index``
under it.
"""

from raft.api import ApplyMsg
from raft.reference.raft import Raft as _Reference


class Raft(_Reference):
    def _applier(self) -> None:
        while True:
            with self.mu:
                while (not self._dead.is_set() and self.pending_snapshot is None
                       and self.last_applied >= self.commit_index):
                    self.apply_cond.wait(1.0)
                if self._dead.is_set():
                    return
                if self.pending_snapshot is not None:
                    msgs = [self.pending_snapshot]
                    self.pending_snapshot = None
                    upto = msgs[0].snapshot_index
                else:
                    start, stop = self.last_applied + 1, self.commit_index + 1
                    msgs = [ApplyMsg(command_valid=True, command=cmd, command_index=i)
                            for i, (_, cmd) in zip(range(start, stop),
                                                   self.log.slice(start, stop), strict=True)]
                    upto = stop - 1
            self.last_applied = max(self.last_applied, upto)  # RACE: written without the lock
            self.commit_index = max(self.commit_index, upto)  # RACE: written without the lock
            for msg in msgs:
                if self._dead.is_set() or not self.apply_ch.put(msg):
                    return


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201
    return Raft(peers, me, persister, apply_ch)
