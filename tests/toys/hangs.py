"""Broken toy: get_state() deadlocks (its lock is never released)."""

import threading

import _oracle


class Raft(_oracle.Raft):
    def __init__(self, *args):
        super().__init__(*args)
        self.mu = threading.Lock()
        self.mu.acquire()  # and never released: a classic forgotten unlock

    def get_state(self):
        with self.mu:
            return super().get_state()


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
