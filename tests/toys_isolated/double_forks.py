"""Isolation toy: the bundled Raft, and peer 0 leaves a detached sleeper behind.

The sleeper double-forks into its own session (the way a daemon escapes its
parent) and writes its pid to the file named by TOY_PIDFILE.  Isolated, the
tester adopts it (child subreaper) and kills it at the end of the test.
"""

import os
import time

import _wrapped


def _detach_sleeper(pidfile):
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                with open(pidfile, "a") as f:
                    f.write(f"{os.getpid()}\n")
                time.sleep(600)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def make(peers, me, persister, apply_ch):
    rf = _wrapped.Wrapped(peers, me, persister, apply_ch)
    pidfile = os.environ.get("TOY_PIDFILE")
    if me == 0 and pidfile:
        _detach_sleeper(pidfile)
    return rf
