"""Mutant: the replication RPC takes its entries from the log's list without the lock.

Its only race is on a container's contents: under the lock the replicator
decides what to send and builds the request (every field read correctly), but
the entries are sliced from the log's list later, in the pool thread that sends
the RPC, while ``start`` (the service's threads) and the AppendEntries handler
append to that list under the lock.
"""

import time

from raft.reference.raft import REPL_RETRY, AppendEntriesArgs
from raft.reference.raft import Raft as _Reference


class Raft(_Reference):
    def _next_send(self, p: int):  # noqa: ANN202
        nxt = self.next_index[p]
        now = time.monotonic()
        if not (self.log.base_index < nxt <= self.log.last_index and now >= self.retry_at[p]):
            return super()._next_send(p)  # heartbeats and snapshots as the bundled Raft
        self.send_seq[p] += 1
        seq = self.send_seq[p]
        self.retry_at[p] = now + REPL_RETRY
        self.last_sent[p] = now
        args = AppendEntriesArgs(self.term, self.me, nxt - 1, self.log.term_at(nxt - 1), [],
                                 self.commit_index)
        entries, lo = self.log.entries, nxt - self.log.base_index - 1

        def send() -> None:
            args.entries = entries[lo:]  # RACE: the log's list read without the lock
            self._send_append(p, args, seq)

        return send, 0.0


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201
    return Raft(peers, me, persister, apply_ch)
