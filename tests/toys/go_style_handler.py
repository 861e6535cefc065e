"""Broken toy: request_vote written as in Go, (args, reply) filled in place, no return."""

import _swallower


class Raft(_swallower.Swallower):
    def request_vote(self, args, reply):
        reply["term"] = 0
        reply["granted"] = False


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
