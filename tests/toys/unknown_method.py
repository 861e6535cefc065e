"""Broken toy: calls "Raft.RequestVote" (Go's spelling); the handler is request_vote."""

import _swallower


class Raft(_swallower.Swallower):
    METHOD = "Raft.RequestVote"


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
