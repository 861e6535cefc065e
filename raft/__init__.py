"""The Raft side of raftlab: the persister, the API types, and the reference Raft.

``import raft`` gives the bundled reference implementation's ``make`` (see
``raft.raft``), so the default implementation under test is simply the module
``raft``.
"""

from raft.api import ApplyMsg
from raft.apply_channel import ApplyChannel, ChannelClosed
from raft.persister import Persister

__all__ = ["ApplyMsg", "ApplyChannel", "ChannelClosed", "Persister", "make"]


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201 - re-exported below
    """Create a reference Raft peer; see :func:`raft.raft.make`."""
    from raft.raft import make as _make

    return _make(peers, me, persister, apply_ch)
