"""A toy with two distinct bugs, for grouping failures by signature (``raftlab stress``).

The peers of one cluster share one log in memory (no replication; peer 0 leads),
which passes ``test_basic_agree_2b``; each cluster then has one of two bugs,
drawn with ``random`` when the cluster is made (under ``--sim`` the seed decides):

* **skip**: every applier skips 1-5 indexes before its first entry, so the
  tester reports ``apply error: server S apply out of order N`` (S and N vary);
* **mismatch**: every follower applies the command plus an offset of its own,
  so the tester reports ``apply error: commit index=1 server=S C != server=T D``
  (servers and commands vary).

Values differ from run to run; the two signatures must not.
"""

from __future__ import annotations

import random
import threading
import weakref
from typing import Any

from raft.api import ApplyMsg

_clusters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class Cluster:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[Any] = [None]
        self.bug = "skip" if random.random() < 0.5 else "mismatch"
        self.offset = random.randint(1, 1000)


def _cluster_for(peers: list[Any]) -> Cluster:
    net = peers[0]._net  # a toy may cheat: find its cluster through the network
    with _lock:
        if net not in _clusters:
            _clusters[net] = Cluster()
        return _clusters[net]


class Raft:
    TERM = 1

    def __init__(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> None:
        self.me = me
        self.apply_ch = apply_ch
        self.cluster = _cluster_for(peers)
        self.skip = random.randint(1, 5)
        self.dead = threading.Event()
        self.applied = 0
        threading.Thread(target=self.applier, name=f"two-bugs-applier-{me}", daemon=True).start()

    def get_state(self) -> tuple[int, bool]:
        return self.TERM, self.me == 0

    def start(self, command: Any) -> tuple[int, int, bool]:
        if self.dead.is_set() or self.me != 0:
            return -1, self.TERM, False
        with self.cluster.lock:
            self.cluster.log.append(command)
            return len(self.cluster.log) - 1, self.TERM, True

    def snapshot(self, index: int, snapshot: bytes) -> None:
        pass

    def kill(self) -> None:
        self.dead.set()

    def applier(self) -> None:
        bug = self.cluster.bug
        while not self.dead.is_set():
            with self.cluster.lock:
                entries = self.cluster.log[self.applied + 1:]
            for cmd in entries:
                index = self.applied + 1
                shown = index + self.skip if bug == "skip" else index
                if bug == "mismatch" and self.me != 0 and isinstance(cmd, int):
                    cmd = cmd + self.cluster.offset * self.me
                if not self.apply_ch.put(ApplyMsg(command_valid=True, command=cmd,
                                                  command_index=shown)):
                    return
                self.applied = index
            self.dead.wait(0.01)

    def append_entries(self, args: Any) -> Any:  # something for the network to deliver to
        return {"term": self.TERM, "success": True}


def make(peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Raft:
    return Raft(peers, me, persister, apply_ch)
