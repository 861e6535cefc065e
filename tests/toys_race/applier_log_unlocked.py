"""Mutant: the applier reads the log's *contents* without the lock.

Its only race is on a container's contents, not on any field: under the lock
it takes the range to apply and the log object (fields read correctly), then
releases the lock and reads each entry from the log's list just before handing
it to the service (as a Go applier reading ``rf.log[i]`` in its loop would),
while the leader's ``start`` and the followers' AppendEntries handler append to
that list under the lock.  (Also a real bug: a compaction in between would shift the list.)
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
                snapshot, self.pending_snapshot = self.pending_snapshot, None
                start, stop = self.last_applied + 1, self.commit_index + 1
                log, base = self.log, self.log.base_index
                if snapshot is not None:
                    self.last_applied = max(self.last_applied, snapshot.snapshot_index)
                else:
                    self.last_applied = self.commit_index
            if snapshot is not None:
                if not self.apply_ch.put(snapshot):
                    return
                continue
            entries = log.entries
            for i in range(start, stop):
                command = entries[i - base - 1][1]  # RACE: the list is read without the lock
                msg = ApplyMsg(command_valid=True, command=command, command_index=i)
                if self._dead.is_set() or not self.apply_ch.put(msg):
                    return


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201
    return Raft(peers, me, persister, apply_ch)
