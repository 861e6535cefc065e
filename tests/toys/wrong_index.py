"""Broken toy: the leader puts a no-op entry in front of the first command, so
start() returns (and commits at) index 2 where the lab expects index 1."""

import _oracle


class Raft(_oracle.Raft):
    def start(self, command):
        if self.dead.is_set() or not self.is_leader():
            return -1, self.TERM, False
        with self.cluster.lock:
            if len(self.cluster.log) == 1:
                self.cluster.log.append("no-op")
            self.cluster.log.append(command)
            index = len(self.cluster.log) - 1
        return index, self.TERM, True


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
