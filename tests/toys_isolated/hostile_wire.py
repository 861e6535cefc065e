"""Isolation toy: peer 0 forges a message whose pickle would run a shell command if decoded.

It finds the harness's connection object in its own process (through the
garbage collector) and sends ``("result", 1, <object reducing to os.system>)``.
The tester decodes peer messages with a decoder that refuses every global, so
the command (``touch $TOY_REPORT.pwned``) never runs; the peer is cut off and
the test fails naming what was refused.
"""

import gc
import os
import threading

import _quiet


class Pwn:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('TOY_REPORT', '/tmp/toy')}.pwned",))


def _forge():
    for obj in gc.get_objects():
        if type(obj).__name__ == "Connection" and hasattr(obj, "send") and hasattr(obj, "sock"):
            obj.send(("result", 1, Pwn()))
            return


def make(peers, me, persister, apply_ch):
    rf = _quiet.Quiet(peers, me, persister, apply_ch)
    if me == 0:
        threading.Timer(0.5, _forge).start()
    return rf
