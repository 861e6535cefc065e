"""Toy submission: an honest Raft that never starts an election (0 points on 2A)."""


class Raft:
    def __init__(self, peers, me, persister, apply_ch):
        self.me = me
        self.dead = False

    def get_state(self):
        return 0, False

    def start(self, command):
        return -1, 0, False

    def snapshot(self, index, snapshot):
        pass

    def kill(self):
        self.dead = True


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
