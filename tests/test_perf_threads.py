"""Threads per run: labrpc's call_async and its timer, and the reference Raft's use of them.

Why (docs/performance.md, "The thread limit"): every thread takes a process id, and
``kernel.pid_max`` (32768 here) is shared by every process on the machine; a 2A run
of the reference Raft used to keep ~250 threads asleep waiting for RPCs to
disconnected peers to fail, which is what 96-192 concurrent runs ran out of.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time

import pytest

from labrpc import Network, Server, Service
from labrpc.timer import Timer
from tests.test_raft_smoke import MiniCluster


@dataclasses.dataclass
class Echo:
    x: int = 0


class EchoServer:
    def echo(self, args: Echo) -> Echo:
        return Echo(args.x + 1)

    def broken(self, args: Echo) -> Echo:
        raise ValueError("handler bug")


def _net(seed: int = 1, long_delays: bool = True) -> Network:
    net = Network(random.Random(seed), on_handler_error=lambda *a: None)
    net.long_delays(long_delays)
    srv = Server()
    srv.add_service(Service(EchoServer()))
    net.add_server("s", srv)
    return net


def _end(net: Network, name: str, enabled: bool = True):
    end = net.make_end(name)
    net.connect(name, "s")
    net.enable(name, enabled)
    return end


class Outcomes:
    """Collects ``done`` calls: every callback must run exactly once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: dict[int, list[object]] = {}
        self.threads: set[str] = set()

    def cb(self, key: int):
        def done(reply: object) -> None:
            with self.lock:
                self.got.setdefault(key, []).append(reply)
                self.threads.add(threading.current_thread().name)
        return done

    def wait(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.got) >= n:
                    return
            time.sleep(0.005)


def test_parked_unreachable_calls_hold_no_thread_and_fail_once_after_their_delay():
    net = _net()
    end = _end(net, "e", enabled=False)
    out = Outcomes()
    before = threading.active_count()
    t0 = time.monotonic()
    for k in range(300):
        end.call_async("EchoServer.echo", Echo(k), out.cb(k))
    assert time.monotonic() - t0 < 2.0, "call_async must return at once"
    assert threading.active_count() <= before + 1, "one timer thread for all parked calls"
    assert net.get_total_count() == 300  # counted when sent, as for call
    out.wait(300, timeout=12.0)
    net.cleanup()
    assert sorted(out.got) == list(range(300))
    assert all(v == [None] for v in out.got.values()), "each callback runs exactly once"
    assert out.threads == {"labrpc-timer"}


def test_cleanup_and_delete_end_fail_parked_calls_at_once_and_end_the_timer_thread():
    net = _net()
    a, b = _end(net, "a", enabled=False), _end(net, "b", enabled=False)
    out = Outcomes()
    rng = random.Random(5)
    for k in range(50):  # up to 7 s each, unless ended early
        (a if rng.random() < 0.5 else b).call_async("EchoServer.echo", Echo(k), out.cb(k))
    t0 = time.monotonic()
    net.delete_end("a")
    net.cleanup()
    out.wait(50, timeout=3.0)
    assert time.monotonic() - t0 < 3.0
    assert len(out.got) == 50 and all(v == [None] for v in out.got.values())
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and any(
            t.name == "labrpc-timer" for t in threading.enumerate()):
        time.sleep(0.01)
    assert not [t for t in threading.enumerate() if t.name == "labrpc-timer"]
    after = Outcomes()  # a call after cleanup still gets its one (failed) outcome
    b.call_async("EchoServer.echo", Echo(1), after.cb(1))
    after.wait(1, timeout=1.0)
    assert after.got == {1: [None]}


def test_delivered_calls_reply_and_broken_handlers_or_callbacks_fail_only_their_call(capsys):
    net = _net(long_delays=False)
    end = _end(net, "e")
    out = Outcomes()
    end.call_async("EchoServer.echo", Echo(41), out.cb(0))
    end.call_async("EchoServer.broken", Echo(0), out.cb(1))

    def bad_callback(reply: object) -> None:
        raise RuntimeError("callback bug")

    end.call_async("EchoServer.echo", Echo(1), bad_callback)
    end.call_async("EchoServer.echo", Echo(9), out.cb(2))
    out.wait(3, timeout=5.0)
    err, deadline = "", time.monotonic() + 5.0  # printed by the pool thread, in its own time
    while "callback bug" not in err and time.monotonic() < deadline:
        err += capsys.readouterr().err
        time.sleep(0.01)
    net.cleanup()
    assert out.got == {0: [Echo(42)], 1: [None], 2: [Echo(10)]}
    assert "callback bug" in err


def test_call_async_draws_the_same_outcomes_as_call_for_the_same_seed():
    """Same steps, same random draws: one call at a time, the outcomes are identical."""
    def run(use_async: bool) -> list[object]:
        net = _net(seed=7, long_delays=False)
        net.reliable(False)
        end = _end(net, "e")
        results = []
        for k in range(60):
            if use_async:
                out = Outcomes()
                end.call_async("EchoServer.echo", Echo(k), out.cb(0))
                out.wait(1, timeout=5.0)
                results.append(out.got[0][0])
            else:
                results.append(end.call("EchoServer.echo", Echo(k)))
        net.cleanup()
        return results

    sync, asyn = run(False), run(True)
    assert sync == asyn
    assert None in sync and any(r is not None for r in sync)  # the faults did happen


def test_timer_runs_callbacks_in_deadline_order():
    timer = Timer("test-timer")
    order: list[int] = []
    done = threading.Event()
    for k, delay in enumerate((0.15, 0.05, 0.10)):
        timer.after(delay, "k", lambda _r, k=k: order.append(k))
    timer.after(0.2, "k", lambda _r: done.set())
    assert done.wait(3.0)
    timer.close()
    assert order == [1, 2, 0]


def test_timer_wakes_for_a_new_earliest_deadline_and_never_fires_early():
    """In real time the timer thread waits on a held lock, not a Condition: a deadline
    earlier than the one it waits for must still wake it, no callback may run before its
    time, and a notify with nobody waiting (the first after()) must not lose one."""
    timer = Timer("test-timer")
    fired: dict[str, float] = {}
    done = threading.Event()
    t0 = time.monotonic()
    due = {"late": 2.0, "early": 0.1, "middle": 0.3}
    timer.after(due["late"], "k", lambda _r: (fired.setdefault("late", time.monotonic()),
                                              done.set()))
    time.sleep(0.05)  # the thread now waits for the 2 s deadline
    for name in ("early", "middle"):
        timer.after(due[name] - (time.monotonic() - t0), "k",
                    lambda _r, name=name: fired.setdefault(name, time.monotonic()))
    assert done.wait(5.0)
    timer.close()
    assert list(fired) == ["early", "middle", "late"]
    for name, at in fired.items():
        assert at - t0 >= due[name] - 0.002, f"{name} fired early"
    assert fired["early"] - t0 < 1.0, "the earlier deadline woke the waiting thread"
    assert type(timer._cond).__name__ == "_Wakeup"  # the real-time path was the one tested


@pytest.mark.timeout(60)
def test_reference_raft_keeps_few_threads_while_peers_are_disconnected():
    """5 peers, 2 disconnected for 3 s: before call_async, ~100 RPC threads slept at once."""
    cluster = MiniCluster(5)
    try:
        leader = cluster.leader()
        out = [(leader + 1) % 5, (leader + 2) % 5]
        for i in out:
            for j in range(5):
                for name in (f"e{g}-{i}-{j}" for g in range(1, cluster.gen + 1)):
                    if name in cluster.net._ends:
                        cluster.net.enable(name, False)
                for name in (f"e{g}-{j}-{i}" for g in range(1, cluster.gen + 1)):
                    if name in cluster.net._ends:
                        cluster.net.enable(name, False)
        peak = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            peak = max(peak, threading.active_count())
            time.sleep(0.02)
        rpc = [t.name for t in threading.enumerate() if t.name.endswith("-rpc")]
        assert not rpc, f"no thread should wait for an RPC: {rpc[:5]}"
        # 5 x (ticker, applier, 4 replicators) + 5 readers + timer + a few labrpc workers
        assert peak < 60, f"{peak} threads at once"
    finally:
        cluster.shutdown()


def test_a_route_that_dies_while_an_async_handler_runs_fails_the_call():
    """call_async runs the handler on the thread that finishes the call: a disconnect
    during the handler still fails it (as for call), once the handler returns."""
    gate, entered = threading.Event(), threading.Event()

    class Slow:
        def wait(self, args: Echo) -> Echo:
            entered.set()
            gate.wait(5.0)
            return Echo(args.x)

    net = Network(random.Random(3))
    srv = Server()
    srv.add_service(Service(Slow()))
    net.add_server("s", srv)
    end = _end(net, "e")
    out = Outcomes()
    end.call_async("Slow.wait", Echo(1), out.cb(0))
    assert entered.wait(5.0)
    net.enable("e", False)
    net.enable("e", True)  # back before the handler returns: the call still failed
    gate.set()
    out.wait(1, timeout=5.0)
    assert out.got == {0: [None]}
    assert srv.get_count() == 1
    end.call_async("Slow.wait", Echo(2), out.cb(1))  # the route works again
    out.wait(2, timeout=5.0)
    net.cleanup()
    assert out.got[1] == [Echo(2)]
