"""Quick end-to-end checks of the reference Raft on labrpc, without the graded harness.

A handful of seconds: elect a leader, agree on commands, survive a follower's
crash and restart from its persister, compact with a snapshot, and leave no
thread behind after kill().
"""

from __future__ import annotations

import threading
import time

from labrpc import Network, Server, Service
from raft.apply_channel import ApplyChannel, ChannelClosed
from raft.persister import Persister
from raft.reference import make


class MiniCluster:
    def __init__(self, n: int) -> None:
        self.n = n
        self.net = Network()
        self.net.long_delays(True)
        self.rafts: list = [None] * n
        self.persisters = [Persister() for _ in range(n)]
        self.applied: list[dict[int, object]] = [{} for _ in range(n)]
        self.last_applied = [0] * n
        self.channels: list[ApplyChannel | None] = [None] * n
        self.readers: list[threading.Thread] = []
        self.gen = 0
        for i in range(n):
            self.start(i)

    def start(self, i: int) -> None:
        self.gen += 1
        ends = []
        for j in range(self.n):
            name = f"e{self.gen}-{i}-{j}"
            end = self.net.make_end(name)
            self.net.connect(name, j)
            self.net.enable(name, True)
            ends.append(end)
        ch = ApplyChannel()
        self.channels[i] = ch
        snap = self.persisters[i].read_snapshot()
        self.last_applied[i] = int(snap.decode()) if snap else 0
        rf = make(ends, i, self.persisters[i], ch)
        self.rafts[i] = rf
        t = threading.Thread(target=self._read, args=(i, ch), name=f"smoke-reader-{i}")
        t.start()
        self.readers.append(t)
        srv = Server()
        srv.add_service(Service(rf))
        self.net.add_server(i, srv)

    def crash(self, i: int) -> None:
        self.net.delete_server(i)
        self.rafts[i].kill()
        self.channels[i].close()
        self.persisters[i] = self.persisters[i].copy()
        self.rafts[i] = None

    def _read(self, i: int, ch: ApplyChannel) -> None:
        while True:
            try:
                msg = ch.get()
            except ChannelClosed:
                return
            if msg.snapshot_valid:
                self.last_applied[i] = msg.snapshot_index
                continue
            assert msg.command_index == self.last_applied[i] + 1, (i, msg)
            assert self.applied[i].get(msg.command_index, msg.command) == msg.command
            self.applied[i][msg.command_index] = msg.command
            self.last_applied[i] = msg.command_index

    def leader(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, rf in enumerate(self.rafts):
                if rf is not None and rf.get_state()[1]:
                    return i
            time.sleep(0.05)
        raise AssertionError("no leader")

    def one(self, cmd: object, expected: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rf = self.rafts[self.leader()]
            index, _, ok = rf.start(cmd) if rf is not None else (0, 0, False)
            if ok:
                end = min(deadline, time.monotonic() + 2)
                while time.monotonic() < end:
                    if sum(1 for a in self.applied if a.get(index) == cmd) >= expected:
                        return index
                    time.sleep(0.02)
        raise AssertionError(f"no agreement on {cmd!r}")

    def shutdown(self) -> None:
        for i, rf in enumerate(self.rafts):
            if rf is not None:
                rf.kill()
                self.channels[i].close()
        self.net.cleanup()


def raft_threads(prefix: tuple[str, ...] | str = ("raft-", "smoke-")) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def wait_no_threads(prefix: tuple[str, ...] | str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while raft_threads(prefix) and time.monotonic() < deadline:
        time.sleep(0.02)
    return raft_threads(prefix)


def test_elect_agree_crash_restart_snapshot_and_clean_exit():
    c = MiniCluster(3)
    try:
        assert c.one("a", 3) == 1
        assert c.one("b", 3) == 2
        victim = (c.leader() + 1) % 3
        c.crash(victim)
        assert c.one("c", 2) == 3
        assert wait_no_threads(f"raft-S{victim}-", 1.0) == []  # kill() stops them all
        c.start(victim)
        assert c.one("d", 3) == 4
        for i in range(3):  # everyone snapshots up to index 3; the log shrinks
            c.rafts[i].snapshot(3, b"3")
        assert all(c.persisters[i].snapshot_size() == 1 for i in range(3))
        victim = (c.leader() + 1) % 3
        c.crash(victim)
        assert c.one("e", 2) == 5
        c.start(victim)  # restarts from its snapshot at 3 and catches up 4..6
        assert c.one("f", 3) == 6
        assert [c.applied[victim].get(k) for k in (4, 5, 6)] == ["d", "e", "f"]
    finally:
        c.shutdown()
    assert wait_no_threads(("raft-", "smoke-"), 1.0) == []
