"""Broken toy: no peer ever becomes leader."""

import _oracle


class Raft(_oracle.Raft):
    def get_state(self):
        return 0, False

    def is_leader(self):
        return False


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
