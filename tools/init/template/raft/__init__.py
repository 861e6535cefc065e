"""Your Raft implementation (parts 2A-2D of the lab).

raftlab finds this package through ``[tool.raftlab] impl`` in the workspace's
``pyproject.toml`` and loads it by path, under a private module name.  So:

* ``raft.api``, ``raft.persister``, ``raft.apply_channel`` and ``raft.debuglog``
  in an import always mean raftlab's own API modules, even though this folder
  is called ``raft`` too;
* import your own modules relatively: ``from .log import Log``.
"""

from .raft import Raft, make

__all__ = ["Raft", "make"]
