"""Isolated peers: each Raft peer in its own process, the verdict in the tester's.

With ``--isolate`` (``RAFTLAB_ISOLATE=1``) the tester process keeps the
network, the persisters, the apply-channel readers, every check and the
watchdog, and never imports the implementation under test; each peer runs in a
child process forked from a template that has imported it.  The student's code
is unchanged: it sees ``peers[j].call``, a persister and an apply channel that
behave as in-process.

Modules, tester side first:

* :mod:`~labtests.isolation.launcher` — :class:`IsolatedImplementation`: the
  template process, one forked peer per ``make``, and the end-of-test sweep;
* :mod:`~labtests.isolation.proxy` — :class:`PeerProxy`: a peer's Raft as the
  harness sees it (requests with deadlines, RPCs, saves, apply messages);
* :mod:`~labtests.isolation.wire` — framing and the restricted decoder that
  keeps peer data from running code in the tester;
* :mod:`~labtests.isolation.procs` — prctl, exit statuses, reaping strays;
* :mod:`~labtests.isolation.template` and :mod:`~labtests.isolation.peer` —
  the peer side (the only modules that import the implementation).
"""

from typing import Any

from labtests.isolation.launcher import IsolatedImplementation, IsolationError

__all__ = ["IsolatedImplementation", "IsolationError", "PeerProxy"]


def __getattr__(name: str) -> Any:
    """``PeerProxy`` on first use: every pytest process imports this package (the
    harness checks whether an implementation is isolated), only --isolate needs the proxy."""
    if name == "PeerProxy":
        from labtests.isolation.proxy import PeerProxy

        return PeerProxy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
