"""Broken toy: its Raft class has no snapshot() method."""

import _oracle


class Raft(_oracle.Raft):
    snapshot = None


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
