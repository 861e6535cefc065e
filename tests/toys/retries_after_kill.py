"""Toy: server 0 keeps calling its next peer, retrying a failed call at once, and never
checks whether it was killed.  Used to show that a crashed instance's calls are still
counted and throttled by the network's failure delay, as in the lab, instead of spinning.

STOP ends the loop (the test sets it before cleanup; the loop itself never checks kill()).
"""

import threading

import _swallower

STOP = threading.Event()


class Raft(_swallower.Swallower):
    def __init__(self, *args):
        self.attempts = 0
        super().__init__(*args)

    def campaign(self):
        if self.me != 0:
            return
        while not STOP.is_set():
            self.attempts += 1
            reply = self.peers[1].call(self.METHOD, self.args())
            if reply is not None:
                STOP.wait(0.05)  # a call that worked: pause, like a heartbeat
            # a failed call is retried at once, killed or not


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
