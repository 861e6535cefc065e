"""Broken toy: its RequestVote args carry a lock (the codec refuses it); errors are swallowed."""

import threading

import _swallower


class Raft(_swallower.Swallower):
    def args(self):
        return {"term": 1, "candidate": self.me, "mu": threading.Lock()}


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
