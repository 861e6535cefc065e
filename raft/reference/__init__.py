"""The bundled reference Raft, kept apart from what every implementation may import.

``raft.reference.raft`` is the threaded shell (one lock, a ticker, one
replicator per peer, RPCs on the shared :class:`labrpc.pool.ThreadPool`, an
applier), ``raft.reference.rules`` the protocol decisions as pure functions and
``raft.reference.log`` the log with its snapshot offset.  A student's Raft uses
only the modules directly under ``raft`` (``raft.api``, ``raft.persister``,
``raft.apply_channel``, ``raft.debuglog``); nothing here is part of the API.

This package is the implementation tested when none is named (``--raft-impl
raft`` or no option at all): ``raft.make`` delegates here.
"""

from raft.reference.raft import Raft, make

__all__ = ["Raft", "make"]
