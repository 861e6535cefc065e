"""Isolation toy: at import, rigs the template to report the tester's *parent* as the peer.

The template process runs the implementation's import-time code, so it is not
trusted.  A tester that believed the pid would SIGKILL its own parent (here
the outer pytest that runs this self-test) when it ends the "peer"; it must
refuse a pid that is not its own child and fail the test saying so.
"""

import os
import sys

import _quiet


def _tester_parent():
    with open(f"/proc/{os.getppid()}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rfind(b")") + 2:].split()[1])


_server = sys.modules.get("__main__")
if _server is not None and hasattr(_server, "_fork_peer"):
    _server._fork_peer = lambda *args: _tester_parent()


def make(peers, me, persister, apply_ch):
    return _quiet.Quiet(peers, me, persister, apply_ch)
