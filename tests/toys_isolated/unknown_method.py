"""Isolation toy: calls a handler the peers do not have (UnknownMethodError in the caller)."""

import threading

import _quiet


class Misnamed(_quiet.Quiet):
    def __init__(self, *args):
        super().__init__(*args)
        threading.Thread(target=self.campaign, name=f"toy-campaign-{self.me}",
                         daemon=True).start()

    def campaign(self):
        while not self.dead.wait(0.2):
            self.peers[(self.me + 1) % len(self.peers)].call("Raft.RequestVote", {"term": 1})


def make(peers, me, persister, apply_ch):
    return Misnamed(peers, me, persister, apply_ch)
