"""The Raft side of raftlab: what every implementation may import, plus the reference.

Every implementation may use ``raft.api`` (the API types), ``raft.persister``,
``raft.apply_channel`` and ``raft.debuglog``.  The bundled reference Raft lives
apart in :mod:`raft.reference`; ``raft.make`` delegates to it, so the module
``raft`` itself is a valid implementation and remains the default one under
test (``--raft-impl raft``).
"""

import os

from raft.api import ApplyMsg
from raft.apply_channel import ApplyChannel, ChannelClosed
from raft.persister import Persister

__all__ = ["ApplyMsg", "ApplyChannel", "ChannelClosed", "Persister", "make"]


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201 - the lab's signature
    """Create a reference Raft peer; see :func:`raft.reference.raft.make`.

    Imported on first use, so importing the API types never loads the reference.
    """
    from raft.reference import make as _make

    return _make(peers, me, persister, apply_ch)


def _load_reference_before_fork() -> None:
    """A process about to fork loads the reference once, so its children need not.

    Why: ``raftlab stress`` forks warm workers from one session that never calls
    ``make``, so each worker imported (and, without a bytecode cache, compiled)
    the reference at its first test: about 18 ms of CPU a worker on the 2-core
    machine, a tenth of a run's cost.  Loaded before the fork, it is shared
    copy-on-write.  Importing the API types alone still does not load it.
    """
    try:
        import raft.reference  # noqa: F401
    except Exception:  # noqa: BLE001 - the first make() reports a broken reference
        pass


os.register_at_fork(before=_load_reference_before_fork)
