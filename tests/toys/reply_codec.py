"""Broken toy: its request_vote reply carries a lambda (the codec refuses the reply)."""

import _swallower


class Raft(_swallower.Swallower):
    def request_vote(self, args):
        return {"term": 0, "granted": False, "on_grant": lambda: None}


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
