"""Hostile toy: the first ``make()`` forks the test process; the real one gets a Raft that
never elects (the test fails), the copy gets the bundled Raft (its copy of the test
passes) and reports a little later.

Both shared the events file, so the copy's ``Passed`` stood beside the real
``FAILED``, and a copy that reports after the real failure could read as the
verdict.  Only the test process itself may report.
"""

import os
import time

import raft

_forked: list[int] = []


class NeverElects:
    def get_state(self):
        return 0, False

    def start(self, command):
        return -1, -1, False

    def kill(self):
        pass

    def snapshot(self, index, snapshot):
        pass

    def cond_install_snapshot(self, last_included_term, last_included_index, snapshot):
        return False

    def request_vote(self, args, reply):
        return reply

    def append_entries(self, args, reply):
        return reply


def make(peers, me, persister, apply_ch):
    if not _forked:
        _forked.append(os.fork())
        if _forked[0] == 0:
            time.sleep(2)  # the real test has failed by the time the copy passes
    if _forked[0] == 0:
        return raft.make(peers, me, persister, apply_ch)
    return NeverElects()
