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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labtests.isolation.launcher import IsolatedImplementation, IsolationError
    from labtests.isolation.proxy import PeerProxy

__all__ = ["IsolatedImplementation", "IsolationError", "PeerProxy"]


def __getattr__(name: str) -> Any:
    """Each name on first use.  Every pytest process needs the launcher (the harness
    checks whether an implementation is isolated), only --isolate the proxy; and a
    process that only needs :mod:`~labtests.isolation.procs` -- ``raftlab test``'s
    own, the grader's supervisor -- must not pay for the launcher's imports (the
    network, the Raft's channel and persister: about 50 ms)."""
    if name in ("IsolatedImplementation", "IsolationError"):
        from labtests.isolation import launcher

        return getattr(launcher, name)
    if name == "PeerProxy":
        from labtests.isolation.proxy import PeerProxy

        return PeerProxy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
