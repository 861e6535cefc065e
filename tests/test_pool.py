"""The shared thread pool (labrpc.pool): reuse, concurrency, close, and hostile tasks.

Both the network's handlers and the reference Raft's RPC senders run on it, so
a blocked task must never delay another, a raising task must not shrink the
pool, and close() must end every thread even while tasks are still blocked.
"""

from __future__ import annotations

import threading
import time

from labrpc import Network
from labrpc.pool import ThreadPool


def _pool_threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def _wait_gone(prefix: str, limit: float = 2.0) -> list[threading.Thread]:
    deadline = time.monotonic() + limit
    while _pool_threads(prefix) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _pool_threads(prefix)


def test_pool_runs_tasks_concurrently_reuses_threads_and_exits_on_close():
    name = "test-pool-rpc"
    pool = ThreadPool(name)
    gate = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> None:
        started.release()
        gate.wait(5)

    for _ in range(3):  # three blocked tasks need three threads
        assert pool.submit(blocked)
    for _ in range(3):
        assert started.acquire(timeout=2)
    assert len(_pool_threads(name)) == 3 and pool.size == 3
    gate.set()
    deadline = time.monotonic() + 2
    while pool._idle < 3 and time.monotonic() < deadline:  # all three back to idle
        time.sleep(0.01)
    done = threading.Event()
    assert pool.submit(done.set)  # an idle thread takes it: no new thread
    assert done.wait(2)
    assert len(_pool_threads(name)) == 3 and pool.size == 3

    pool.close()
    assert not pool.submit(done.set)
    assert _wait_gone(name) == []


def test_numbered_threads_say_whose_they_are():
    pool = ThreadPool("test-pool-num", numbered=True)
    gate = threading.Event()
    for _ in range(2):
        pool.submit(lambda: gate.wait(5))
    names = sorted(t.name for t in _pool_threads("test-pool-num"))
    gate.set()
    pool.close()
    assert names == ["test-pool-num-1", "test-pool-num-2"]
    assert _wait_gone("test-pool-num") == []


def test_a_raising_task_does_not_shrink_the_pool(capsys):
    pool = ThreadPool("test-pool-raise")

    def boom() -> None:
        raise RuntimeError("task bug")

    assert pool.submit(boom)
    deadline = time.monotonic() + 2
    while pool._idle < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    done = threading.Event()
    assert pool.submit(done.set)
    assert done.wait(2)
    assert pool.size == 1  # the thread that ran the failing task was reused
    pool.close()
    assert _wait_gone("test-pool-raise") == []
    assert "RuntimeError: task bug" in capsys.readouterr().err


def test_close_while_tasks_block_ends_each_thread_when_its_task_returns():
    pool = ThreadPool("test-pool-busy")
    gate = threading.Event()
    for _ in range(4):
        pool.submit(lambda: gate.wait(5))
    pool.close()
    pool.close()  # idempotent
    assert len(_pool_threads("test-pool-busy")) == 4  # still blocked, not killed
    gate.set()
    assert _wait_gone("test-pool-busy") == []


def test_the_network_runs_its_handlers_on_the_shared_pool():
    net = Network()
    assert isinstance(net._pool, ThreadPool)
    net.cleanup()
    assert not net._pool.submit(lambda: None)  # cleanup closed it
