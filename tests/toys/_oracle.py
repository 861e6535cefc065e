"""A cheating "Raft" for the harness self-tests: the peers of one cluster share
one log in memory instead of replicating it, and peer 0 is always the leader.

It passes the simplest agreement tests (so a self-test can show a Passed line),
and because it ignores the network it *commits without a majority*.  The other
toys are small variations of it, each broken in one way.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from raft.api import ApplyMsg

_clusters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_clusters_lock = threading.Lock()


class Cluster:
    """The shared state of all peers on one network."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[Any] = [None]  # index 0 is unused, as in the lab


def cluster_for(peers: list[Any]) -> Cluster:
    net = peers[0]._net  # a toy may cheat: find the cluster through the network
    with _clusters_lock:
        if net not in _clusters:
            _clusters[net] = Cluster()
        return _clusters[net]


class Raft:
    TERM = 1

    def __init__(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> None:
        self.peers = peers
        self.me = me
        self.apply_ch = apply_ch
        self.cluster = cluster_for(peers)
        self.dead = threading.Event()
        self.applied = 0
        self.threads = [
            threading.Thread(target=self.applier, name=f"toy-applier-{me}", daemon=True)
        ]
        self.start_threads()

    def start_threads(self) -> None:
        for t in self.threads:
            t.start()

    def is_leader(self) -> bool:
        return self.me == 0

    def get_state(self) -> tuple[int, bool]:
        return self.TERM, self.is_leader()

    def start(self, command: Any) -> tuple[int, int, bool]:
        if self.dead.is_set() or not self.is_leader():
            return -1, self.TERM, False
        with self.cluster.lock:
            self.cluster.log.append(command)
            index = len(self.cluster.log) - 1
        return index, self.TERM, True

    def snapshot(self, index: int, snapshot: bytes) -> None:
        pass

    def kill(self) -> None:
        self.dead.set()

    def apply_index(self, index: int) -> int:
        """The index reported to the tester for log position ``index``."""
        return index

    def applier(self) -> None:
        while not self.dead.is_set():
            with self.cluster.lock:
                entries = self.cluster.log[self.applied + 1:]
            for cmd in entries:
                index = self.applied + 1
                msg = ApplyMsg(command_valid=True, command=cmd,
                               command_index=self.apply_index(index))
                if not self.apply_ch.put(msg):
                    return
                self.applied = index
            self.dead.wait(0.01)

    # An RPC handler, so the network has something to deliver to.
    def append_entries(self, args: Any) -> Any:
        return {"term": self.TERM, "success": True}


def make(peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Raft:
    return Raft(peers, me, persister, apply_ch)
