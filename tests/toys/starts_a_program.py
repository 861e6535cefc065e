"""Broken toy: the bundled Raft, but the first ``make()`` starts a program that runs for
an hour (``sleep 3600``) and never ends it.

Nothing ended it: it outlived the test, the run and the command.  The harness
must kill it after the test's cleanup and name it in a warning.
"""

import subprocess

import raft

_started: list[subprocess.Popen] = []


def make(peers, me, persister, apply_ch):
    if not _started:
        _started.append(subprocess.Popen(["sleep", "3600"]))
    return raft.make(peers, me, persister, apply_ch)
