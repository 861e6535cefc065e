"""The types shared by the tester and every Raft implementation.

An implementation is a module exposing ``make(peers, me, persister, apply_ch)``
that returns an object with ``start``, ``get_state``, ``snapshot`` and ``kill``
(see ``REQUIRED_RAFT_METHODS``).  Peers reach each other's RPC handlers with
``peers[j].call("Raft.request_vote", args)``, which returns the reply object or
``None`` when the network lost the request or the reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The module-level factory and the methods of the object it returns.
REQUIRED_MODULE_FUNCTIONS = ("make",)
REQUIRED_RAFT_METHODS = ("start", "get_state", "snapshot", "kill")


@dataclass
class ApplyMsg:
    """One message from Raft to the service (the tester) on the apply channel.

    A command message has ``command_valid`` set; a snapshot message has
    ``snapshot_valid`` set and ``command_valid`` false.
    """

    command_valid: bool = False
    command: Any = None
    command_index: int = 0

    snapshot_valid: bool = False
    snapshot: bytes = b""
    snapshot_term: int = 0
    snapshot_index: int = 0
