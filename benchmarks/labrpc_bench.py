"""Print labrpc's speed: µs per sequential RPC, and RPCs/s with concurrent callers.

Target on the 2-core lab machine: <= 60 µs per sequential RPC with small args
(the Go labrpc does about 26 µs there).  Run: ``python benchmarks/labrpc_bench.py``.
"""

from __future__ import annotations

import argparse
import threading
import time

from labrpc import Network, Server, Service


class Echo:
    """A minimal service: the handler does no work, so the figure is the network's."""

    def handler2(self, args: int) -> str:
        return f"handler2-{args}"


def _network() -> tuple[Network, Server]:
    net = Network()
    server = Server()
    server.add_service(Service(Echo()))
    net.add_server("server", server)
    return net, server


def sequential_us(calls: int) -> float:
    net, _ = _network()
    end = net.make_end("end")
    net.connect("end", "server")
    net.enable("end", True)
    try:
        end.call("Echo.handler2", 111)  # warm the handler pool
        start = time.perf_counter()
        for _ in range(calls):
            reply = end.call("Echo.handler2", 111)
        elapsed = time.perf_counter() - start
        assert reply == "handler2-111", reply
        return elapsed / calls * 1e6
    finally:
        net.cleanup()


def concurrent_rps(callers: int, calls_each: int) -> float:
    net, server = _network()
    ends = []
    for i in range(callers):
        end = net.make_end(i)
        net.connect(i, "server")
        net.enable(i, True)
        ends.append(end)

    def client(end) -> None:  # noqa: ANN001
        for j in range(calls_each):
            assert end.call("Echo.handler2", j) == f"handler2-{j}"

    threads = [threading.Thread(target=client, args=(e,), name=f"bench-client-{i}")
               for i, e in enumerate(ends)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    net.cleanup()
    assert server.get_count() == callers * calls_each
    return callers * calls_each / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000, help="sequential calls")
    parser.add_argument("--callers", type=int, default=20, help="concurrent callers")
    args = parser.parse_args()
    print(f"sequential: {sequential_us(args.calls):6.1f} µs per RPC "
          f"({args.calls} calls; target <= 60 µs)")
    print(f"concurrent: {concurrent_rps(args.callers, args.calls // args.callers):8.0f} RPCs/s "
          f"({args.callers} callers)")


if __name__ == "__main__":
    main()
