"""Broken toy: every peer sends an RPC to every other peer every 10 ms."""

import threading

import _oracle


class Raft(_oracle.Raft):
    def start_threads(self):
        self.threads.append(
            threading.Thread(target=self.flood, name=f"toy-flood-{self.me}", daemon=True)
        )
        super().start_threads()

    def flood(self):
        while not self.dead.wait(0.01):
            for j, end in enumerate(self.peers):
                if j != self.me:
                    end.call("Raft.append_entries", {"term": 1})


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
