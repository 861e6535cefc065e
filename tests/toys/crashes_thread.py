"""Broken toy: a background thread of the implementation dies with an exception."""

import threading

import _oracle


class Raft(_oracle.Raft):
    def start_threads(self):
        self.threads.append(
            threading.Thread(target=self.ticker, name=f"toy-ticker-{self.me}", daemon=True)
        )
        super().start_threads()

    def ticker(self):
        self.dead.wait(0.1)
        raise ValueError(f"ticker of peer {self.me} crashed")


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
