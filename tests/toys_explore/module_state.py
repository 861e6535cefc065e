"""Toy: the bundled Raft, except that ``make`` keeps module-level state across runs: it
refuses to start a peer at a clock reading earlier than one it has seen (a second run in
the same process starts its simulated clock again).  Run after run in one process, the
second run would crash where a replay (a fresh process) passes: explore's runs must each
start from the untouched module."""

from __future__ import annotations

import time

from raft.reference import raft as reference

_latest = [0.0]  # the latest clock reading any make() saw, in this process


def make(peers, me, persister, apply_ch) -> reference.Raft:
    now = time.monotonic()
    if now < _latest[0]:
        raise RuntimeError(f"make() at {now:.3f} after one at {_latest[0]:.3f}: an earlier "
                           f"run's module state")
    _latest[0] = now
    return reference.Raft(peers, me, persister, apply_ch)
