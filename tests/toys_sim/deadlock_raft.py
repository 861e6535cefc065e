"""Broken toy for simulation mode: a lock-order deadlock (the lab's lock rule 4).

The ticker takes ``mu`` and then ``vote_mu`` (and sleeps while holding ``mu``,
which widens the window); the RequestVote handler takes ``vote_mu`` and then
``mu``.  The first vote request that reaches a peer while its ticker sleeps
deadlocks that peer's ticker against the handler's pool thread.  In real time
the test fails much later with "expected one leader, got none" and no hint of
why; in simulated time it fails at once as a deadlock naming both threads, the
locks, and where each one waits.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass


@dataclass
class VoteArgs:
    term: int
    cand: int


@dataclass
class VoteReply:
    term: int
    granted: bool


@dataclass
class AppendReply:
    term: int
    success: bool


class Raft:
    def __init__(self, peers, me, persister, apply_ch):
        self.peers = peers
        self.me = me
        self.mu = threading.Lock()
        self.vote_mu = threading.Lock()
        self.term = 0
        self.voted_for = -1
        self.dead = threading.Event()
        self.deadline = time.monotonic() + random.uniform(0.3, 0.6)
        threading.Thread(target=self._ticker, name=f"toy-S{me}-ticker", daemon=True).start()

    def _ticker(self):
        while not self.dead.is_set():
            with self.mu:
                time.sleep(0.05)  # BUG (rule 4): sleeping while holding the lock
                with self.vote_mu:  # BUG: mu -> vote_mu here, vote_mu -> mu in the handler
                    if time.monotonic() < self.deadline:
                        continue
                    self.term += 1
                    self.voted_for = self.me
                    self.deadline = time.monotonic() + random.uniform(0.3, 0.6)
                    args = VoteArgs(self.term, self.me)
            for p in range(len(self.peers)):
                if p != self.me:
                    threading.Thread(target=self.peers[p].call, args=("Raft.request_vote", args),
                                     name=f"toy-S{self.me}-vote{p}", daemon=True).start()

    def request_vote(self, args):
        with self.vote_mu:
            with self.mu:
                if args.term > self.term:
                    self.term, self.voted_for = args.term, args.cand
                return VoteReply(self.term, self.voted_for == args.cand)

    def append_entries(self, args):
        return AppendReply(self.term, False)

    def install_snapshot(self, args):
        return AppendReply(self.term, False)

    def get_state(self):
        return self.term, False

    def start(self, command):
        return -1, self.term, False

    def snapshot(self, index, snapshot):
        pass

    def kill(self):
        self.dead.set()


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
