"""The shared thread pool (labrpc.pool): reuse, concurrency, close, and hostile tasks.

Both the network's handlers and the reference Raft's RPC senders run on it, so
a blocked task must never delay another, a raising task must not shrink the
pool, and close() must end every thread even while tasks are still blocked.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from labrpc import Network
from labrpc.pool import ThreadPool
from labrpc.wake import PipeStock, Rendezvous
from tests.fd_support import open_fds, opened_since


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


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc")
def test_the_pools_pipe_is_closed_by_the_last_thread_to_exit():
    before = open_fds()
    pool = ThreadPool("test-pool-fds")
    gate = threading.Event()
    for _ in range(3):
        pool.submit(lambda: gate.wait(5))
    # one pipe, whatever the threads
    assert pool._pipe is not None and len(opened_since(before)) == 2
    pool.close()
    assert pool._pipe is not None, "closed while threads may still read it"
    gate.set()
    assert _wait_gone("test-pool-fds") == []
    assert pool._pipe is None and opened_since(before) == set()
    unused = ThreadPool("test-pool-unused")
    unused.close()  # never started a thread: no pipe was ever made
    assert unused._pipe is None and opened_since(before) == set()


def test_many_tasks_handed_to_idle_threads_all_run_once():
    pool = ThreadPool("test-pool-many")
    done: list[int] = []
    lock = threading.Lock()
    finished = threading.Semaphore(0)

    def task(i: int) -> None:
        with lock:
            done.append(i)
        finished.release()

    for i in range(2000):
        assert pool.submit(lambda i=i: task(i))
    for _ in range(2000):
        assert finished.acquire(timeout=5)
    assert sorted(done) == list(range(2000))
    pool.close()
    assert _wait_gone("test-pool-many") == []


def test_under_patched_threading_the_pool_uses_the_patched_queue(monkeypatch):
    real_lock = threading.Lock
    monkeypatch.setattr(threading, "Lock", lambda: real_lock())  # as sim and --race do
    pool = ThreadPool("test-pool-patched")
    assert pool._queue is not None
    done = threading.Event()
    assert pool.submit(done.set) and done.wait(2)
    deadline = time.monotonic() + 2
    while pool._idle < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    again = threading.Event()
    assert pool.submit(again.set) and again.wait(2)  # handed to the idle thread
    assert pool.size == 1 and pool._pipe is None
    pool.close()
    assert _wait_gone("test-pool-patched") == []


# -- labrpc.wake.Rendezvous: one claimant, and pipes that go back clean ----------------


def _pipe_is_empty(pipe: tuple[int, int]) -> bool:
    os.set_blocking(pipe[0], False)
    try:
        os.read(pipe[0], 1)
    except BlockingIOError:
        return True
    finally:
        os.set_blocking(pipe[0], True)
    return False


@pytest.mark.parametrize("real", [True, False])
def test_only_the_first_claimant_wakes_the_waiter(real):
    stock = PipeStock() if real else None
    meeting = Rendezvous(stock)
    results = []

    def party() -> None:
        if meeting.claim():
            results.append("won")
            meeting.wake()

    parties = [threading.Thread(target=party) for _ in range(8)]
    for p in parties:
        p.start()
    meeting.wait()
    for p in parties:
        p.join(2)
    assert results == ["won"]
    if real:
        (pipe,) = stock._free
        assert _pipe_is_empty(pipe), "a late party wrote into a pipe back in the stock"
        stock.close()
        assert stock._free == []


def test_abandon_without_a_claimant_or_after_one_leaves_the_pipe_clean():
    stock = PipeStock()
    nobody = Rendezvous(stock)
    nobody.abandon()  # nobody claimed: we do, and nothing will ever be written
    assert not nobody.claim()
    late = Rendezvous(stock)
    assert late.claim()
    late.wake()
    late.abandon()  # the claimant's byte is read, not left for the next user
    for pipe in stock._free:
        assert _pipe_is_empty(pipe)
    stock.close()
    stock.give(os.pipe())  # given back after close: closed at once, not kept
    assert stock._free == []
