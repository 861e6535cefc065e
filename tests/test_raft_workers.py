"""The sender pool reuses threads, runs tasks concurrently, and ends its threads on close."""

from __future__ import annotations

import threading
import time

from raft.workers import SenderPool


def _pool_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_pool_runs_tasks_concurrently_reuses_threads_and_exits_on_close():
    name = "test-pool-rpc"
    pool = SenderPool(name)
    gate = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> None:
        started.release()
        gate.wait(5)

    for _ in range(3):  # three blocked tasks need three threads
        assert pool.submit(blocked)
    for _ in range(3):
        assert started.acquire(timeout=2)
    assert len(_pool_threads(name)) == 3
    gate.set()
    time.sleep(0.05)
    done = threading.Event()
    assert pool.submit(done.set)  # an idle thread takes it: no new thread
    assert done.wait(2)
    assert len(_pool_threads(name)) == 3

    pool.close()
    assert not pool.submit(done.set)
    deadline = time.monotonic() + 1
    while _pool_threads(name) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _pool_threads(name) == []
