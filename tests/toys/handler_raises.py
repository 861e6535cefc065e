"""Broken toy: its append_entries RPC handler raises."""

import threading

import _oracle


class Raft(_oracle.Raft):
    def start_threads(self):
        self.threads.append(
            threading.Thread(target=self.heartbeat, name=f"toy-hb-{self.me}", daemon=True)
        )
        super().start_threads()

    def heartbeat(self):
        while not self.dead.wait(0.1):
            if self.me == 0:
                self.peers[1].call("Raft.append_entries", {"term": 1})

    def append_entries(self, args):
        raise KeyError("prev_log_index")


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
