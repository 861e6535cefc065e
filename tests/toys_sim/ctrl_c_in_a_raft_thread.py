"""Toy for simulated time: the bundled Raft, plus one thread of its own that, half a
virtual second into the first test, sends SIGINT to its own process -- a Ctrl-C that
Python hands to whichever simulated thread runs, here a Raft's, deterministically.

The Ctrl-C must stop the run as in real time (pytest's status 2, no test blamed for
it), not end that thread with an "uncaught exception in thread ...:
KeyboardInterrupt()" that failed the test while the run went on.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from raft import make as _make

_sent = False


def _ctrl_c_later() -> None:
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.1)  # the handler runs here, in this simulated thread


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201 - the lab's signature
    global _sent
    if not _sent:
        _sent = True
        threading.Thread(target=_ctrl_c_later, name="toy-ctrl-c", daemon=True).start()
    return _make(peers, me, persister, apply_ch)
