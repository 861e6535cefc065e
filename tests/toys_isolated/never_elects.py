"""Isolation toy: no peer ever becomes leader (the lab's "expected one leader, got none")."""

import _quiet


def make(peers, me, persister, apply_ch):
    return _quiet.Quiet(peers, me, persister, apply_ch)
