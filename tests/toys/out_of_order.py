"""Broken toy: reports every entry one index too high, so index 1 is never applied."""

import _oracle


class Raft(_oracle.Raft):
    def apply_index(self, index):
        return index + 1


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
