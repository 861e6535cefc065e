"""Isolation toy: never elects, and each peer prints to stdout and stderr in make().

The peers' output must land in the test's captured output (pytest's capture
works on the tester's file descriptors, which every forked peer is given).
"""

import sys

import _quiet


def make(peers, me, persister, apply_ch):
    print(f"toy-stdout from peer {me}")
    print(f"toy-stderr from peer {me}", file=sys.stderr)
    return _quiet.Quiet(peers, me, persister, apply_ch)
