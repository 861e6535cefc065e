"""Broken toy: never elects, and prints 50 MB while the test runs (a log in a loop)."""

import sys

import never_elects

LINE = "x" * 99 + "\n"  # 100 bytes


class Raft(never_elects.Raft):
    def __init__(self, peers, me, persister, apply_ch):
        super().__init__(peers, me, persister, apply_ch)
        if me == 0:
            sys.stdout.write(f"first line of a very long output from server {me}\n")
            for _ in range(50):
                sys.stdout.write(LINE * 10_000)  # 1 MB at a time
            sys.stdout.write("last line of the very long output\n")
            sys.stdout.flush()


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
