"""Hostile toy: the bundled Raft, except that a peer that first leads a term >= 3
writes 25 MB to stdout and 25 MB to stderr (50 MB in all, once per peer), then goes on."""

from __future__ import annotations

import sys

from raft.reference import raft as reference


class Raft(reference.Raft):
    def _become_leader(self) -> None:
        super()._become_leader()
        if self.term < 3 or getattr(self, "_flooded", False):
            return
        self._flooded = True
        chunk = "x" * 1023 + "\n"
        for stream in (sys.stdout, sys.stderr):
            for _ in range(25 * 1024):
                stream.write(chunk)
            stream.flush()


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
