"""Broken toy: every peer claims to lead term 1."""

import _oracle


class Raft(_oracle.Raft):
    def is_leader(self):
        return True


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
