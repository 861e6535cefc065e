"""Isolation toy: an RPC whose args hold a lock (the codec refuses it, naming the field)."""

import threading

import _quiet


class LockSender(_quiet.Quiet):
    def __init__(self, *args):
        super().__init__(*args)
        threading.Thread(target=self.campaign, name=f"toy-campaign-{self.me}",
                         daemon=True).start()

    def campaign(self):
        args = {"term": 1, "candidate": self.me, "mu": threading.Lock()}
        while not self.dead.wait(0.2):
            try:
                self.peers[(self.me + 1) % len(self.peers)].call("Raft.request_vote", args)
            except Exception:  # noqa: BLE001 - a Raft that swallows its errors
                pass


def make(peers, me, persister, apply_ch):
    return LockSender(peers, me, persister, apply_ch)
