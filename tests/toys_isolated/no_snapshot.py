"""Isolation toy: make() returns an object without snapshot() (found in the peer, at make)."""

import _quiet


class Peer(_quiet.Quiet):
    snapshot = None


def make(peers, me, persister, apply_ch):
    return Peer(peers, me, persister, apply_ch)
