"""Broken toy: the bundled Raft plus a non-daemon thread per peer that ignores kill().

Its tests pass, but such threads keep a Python process alive at exit: the
harness must report them and end the run anyway.
"""

import threading
import time

import raft


def _forever():
    while True:
        time.sleep(0.5)


def make(peers, me, persister, apply_ch):
    rf = raft.make(peers, me, persister, apply_ch)
    threading.Thread(target=_forever, name=f"toy-immortal-{me}", daemon=False).start()
    return rf
