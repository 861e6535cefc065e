"""Broken toy: a background thread ignores kill() and outlives the test."""

import threading

import _oracle


class Raft(_oracle.Raft):
    def start_threads(self):
        self.threads.append(
            threading.Thread(target=self.dawdle, name=f"toy-leak-{self.me}", daemon=True)
        )
        super().start_threads()

    def dawdle(self):
        threading.Event().wait(10)  # never looks at self.dead


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
