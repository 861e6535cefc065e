"""Benchmark toy: start(("bench", n)) makes n sequential echo RPCs to the next peer.

Used by benchmarks/isolation_bench.py to time one RPC round trip through the
tester's network, in-process and isolated, with the same code on both sides.
start returns (nanoseconds per RPC, replies received, True).
"""

import time

import _quiet


class Echo(_quiet.Quiet):
    def echo(self, args):
        return args

    def start(self, command):
        if isinstance(command, tuple) and command and command[0] == "bench":
            n = command[1]
            target = self.peers[(self.me + 1) % len(self.peers)]
            payload = {"term": 1, "entries": list(range(8))}
            got = 0
            t0 = time.perf_counter_ns()
            for _ in range(n):
                if target.call("Raft.echo", payload) is not None:
                    got += 1
            return (time.perf_counter_ns() - t0) // n, got, True
        return -1, -1, False


def make(peers, me, persister, apply_ch):
    return Echo(peers, me, persister, apply_ch)
