"""Unit tests of simulation mode: virtual clock, primitives, patching, deadlock reports."""

from __future__ import annotations

import queue
import random
import subprocess
import threading
import time

import pytest

pytest.importorskip("greenlet")

from labtests.sim import (  # noqa: E402
    SimDeadlock,
    SimTimeLimit,
    SimUnsupported,
    activate,
    run_in_simulation,
)


def test_sleep_uses_virtual_time_and_orders_threads():
    def body():
        out = []
        lock = threading.Lock()

        def worker(i):
            time.sleep(10.0 - i)
            with lock:
                out.append((i, round(time.monotonic() - t0, 6)))

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, args=(i,), name=f"w{i}") for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not any(t.is_alive() for t in threads)
        return out, time.monotonic() - t0

    wall0 = time.perf_counter()
    out, elapsed = run_in_simulation(body, 1, step_cost=0.0)  # only the sleeps count
    assert time.perf_counter() - wall0 < 2.0
    assert out == [(4, 6.0), (3, 7.0), (2, 8.0), (1, 9.0), (0, 10.0)]
    assert elapsed == pytest.approx(10.0)


def test_timed_waits_are_virtual():
    def body():
        t0 = time.monotonic()
        assert threading.Event().wait(3) is False
        lock = threading.Lock()
        lock.acquire()
        assert lock.acquire(timeout=2) is False
        cond = threading.Condition()
        with cond:
            assert cond.wait(1.5) is False
            assert cond.wait_for(lambda: False, 0.5) is False
        with pytest.raises(queue.Empty):
            queue.SimpleQueue().get(timeout=1)
        with pytest.raises(queue.Empty):
            queue.Queue().get(timeout=1)
        sem = threading.Semaphore(0)
        assert sem.acquire(timeout=1) is False
        helper = threading.Thread(target=time.sleep, args=(5,), name="sleeper")
        helper.start()
        helper.join(timeout=1)
        assert helper.is_alive()
        helper.join()
        return time.monotonic() - t0

    assert run_in_simulation(body, 2, step_cost=0.0) == pytest.approx(
        3 + 2 + 1.5 + 0.5 + 1 + 1 + 1 + 5)


def test_primitives_hand_over_between_threads():
    def body():
        q = queue.SimpleQueue()
        bq = queue.Queue(maxsize=1)
        cond = threading.Condition(threading.Lock())
        ready = []
        ev = threading.Event()
        rl = threading.RLock()

        def producer():
            for i in range(3):
                q.put(i)
                bq.put(i)  # blocks until the consumer takes the previous one
                time.sleep(0.01)
            with cond:
                ready.append(True)
                cond.notify_all()
            ev.set()

        def consumer(out):
            with rl:
                with rl:
                    for _ in range(3):
                        out.append((q.get(), bq.get()))

        out: list = []
        threads = [threading.Thread(target=producer, name="producer"),
                   threading.Thread(target=consumer, args=(out,), name="consumer")]
        for t in threads:
            t.start()
        with cond:
            assert cond.wait_for(lambda: ready, timeout=10)
        assert ev.wait(10)
        for t in threads:
            t.join()
        return out

    assert run_in_simulation(body, 3) == [(0, 0), (1, 1), (2, 2)]


def _interleaving(seed):
    trace = []

    def body():
        lock = threading.Lock()

        def worker(i):
            for step in range(5):
                with lock:
                    trace.append((i, step, round(time.monotonic(), 6), random.random()))
                time.sleep(0)  # a switch point: the scheduler's choice decides the order

        threads = [threading.Thread(target=worker, args=(i,), name=f"w{i}") for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run_in_simulation(body, seed)
    return trace


def test_same_seed_same_run_and_seeds_matter():
    assert _interleaving(7) == _interleaving(7)
    orders = {tuple((i, s) for i, s, _, _ in _interleaving(seed)) for seed in range(6)}
    assert len(orders) > 1


def test_deadlock_is_reported_with_stacks_and_holders():
    def lock_order_bug():
        a = threading.Lock()
        b = threading.Lock()

        def one():
            with a:
                time.sleep(0.1)
                with b:
                    pass

        def two():
            with b:
                time.sleep(0.1)
                with a:
                    pass

        t1 = threading.Thread(target=one, name="T-one")
        t2 = threading.Thread(target=two, name="T-two")
        t1.start()
        t2.start()
        t1.join()

    wall0 = time.perf_counter()
    with pytest.raises(SimDeadlock) as info:
        run_in_simulation(lock_order_bug, 4)
    assert time.perf_counter() - wall0 < 2.0
    report = info.value.report
    assert "deadlock" in report
    assert "lock cycle: 'T-one' -> 'T-two' -> 'T-one'" in report or \
        "lock cycle: 'T-two' -> 'T-one' -> 'T-two'" in report
    assert "thread 'T-one': waits for Lock created at" in report
    assert "held by 'T-two'" in report
    assert "thread 'MainThread': waits for thread 'T-one' to end (join)" in report
    assert "in one" in report and "in two" in report  # the threads' own frames
    assert "labtests/sim/" not in report
    assert threading.Lock is not None and not hasattr(threading.Lock, "_waiters")


def test_virtual_time_limit_catches_a_livelock():
    def forever():
        while True:
            time.sleep(1)

    with pytest.raises(SimTimeLimit, match="virtual time limit of 50 s"):
        run_in_simulation(forever, 5, time_limit=50)


def test_spinning_on_the_clock_still_advances_it():
    def spin():
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            pass
        return True

    assert run_in_simulation(spin, 6)


def test_patches_restored_and_foreign_threads_stay_real():
    real_lock_type = type(threading.Lock())
    go, done = threading.Event(), threading.Event()  # real: created outside the simulation
    seen = {}

    def foreign():
        if not go.wait(30):  # bounded: a failed simulation must not leave it waiting
            return
        seen["lock"] = type(threading.Lock())
        seen["clock"] = time.monotonic()
        done.set()

    outside = threading.Thread(target=foreign, name="outside", daemon=True)
    outside.start()

    def body():
        go.set()
        done.wait(10)  # a real wait: blocks this OS thread until the foreign one is done
        return type(threading.Lock()), threading.current_thread().name

    try:
        sim_lock_type, name = run_in_simulation(body, 8)
    finally:
        go.set()
        outside.join()
    assert name == "MainThread"
    assert sim_lock_type is not real_lock_type
    assert seen["lock"] is real_lock_type
    assert abs(seen["clock"] - time.monotonic()) < 60  # the real clock, not the virtual one
    assert type(threading.Lock()) is real_lock_type
    assert time.sleep.__module__ == "time"
    assert queue.SimpleQueue().__class__.__module__ == "_queue"


def test_uncaught_thread_exception_reaches_excepthook():
    got = []

    def body():
        old = threading.excepthook
        threading.excepthook = lambda args: got.append((args.thread.name, repr(args.exc_value)))
        try:
            t = threading.Thread(target=lambda: 1 / 0, name="crasher")
            t.start()
            t.join()
        finally:
            threading.excepthook = old

    run_in_simulation(body, 10)
    assert got == [("crasher", "ZeroDivisionError('division by zero')")]


def test_unsupported_calls_fail_clearly():
    with pytest.raises(SimUnsupported, match="subprocess.Popen cannot run in simulated time"):
        run_in_simulation(lambda: subprocess.run(["true"]), 11)


def test_leftover_threads_are_killed_on_exit():
    finished = []

    def body():
        def stuck():
            try:
                threading.Event().wait()
            finally:
                finished.append("cleaned")

        threading.Thread(target=stuck, name="stuck", daemon=True).start()
        time.sleep(1)

    run_in_simulation(body, 12)
    assert finished == ["cleaned"]


def test_thread_subclasses_timer_local_and_barrier_work():
    class Worker(threading.Thread):  # defined outside the simulation: start() is patched
        def __init__(self, out):
            super().__init__(name="subclassed")
            self.out = out

        def run(self):
            time.sleep(1)
            self.out.append(threading.current_thread().name)

    def body():
        out = []
        w = Worker(out)
        w.start()
        fired = []
        timer = threading.Timer(2.0, lambda: fired.append(time.monotonic()))
        timer.start()
        local = threading.local()
        local.x = "main"
        seen = []

        def reader():
            seen.append(getattr(local, "x", None))

        r = threading.Thread(target=reader, name="reader")
        r.start()
        barrier = threading.Barrier(2)
        b = threading.Thread(target=barrier.wait, name="barrier")
        b.start()
        barrier.wait(timeout=5)
        t0 = time.monotonic()
        for t in (w, timer, r, b):
            t.join()
        return out, round(fired[0] - t0, 6), seen, local.x

    out, fired_after, seen, mine = run_in_simulation(body, 13, step_cost=0.0)
    assert out == ["subclassed"]
    assert fired_after == 2.0
    assert seen == [None] and mine == "main"  # threading.local is per simulated thread


def test_cpu_charge_makes_cpu_work_cost_virtual_time():
    def burn():
        t0 = time.monotonic()
        x = 0
        for i in range(300_000):
            x += i * i
        time.sleep(0)  # a switch point, where CPU time is charged
        return time.monotonic() - t0

    assert run_in_simulation(burn, 14, step_cost=0.0) == 0.0
    assert run_in_simulation(burn, 14, step_cost=0.0, cpu_scale=1.0) > 0.001


def test_preemption_option_is_deterministic_too():
    def body(trace):
        def worker(i):
            trace.append(i)

        threads = [threading.Thread(target=worker, args=(i,), name=f"p{i}") for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    runs = []
    for _ in range(2):
        trace: list = []
        run_in_simulation(body, 15, trace, preempt=0.5)
        runs.append(trace)
    assert runs[0] == runs[1] and sorted(runs[0]) == list(range(6))


def test_each_scheduling_step_costs_a_fixed_virtual_time():
    with activate(20, step_cost=0.001) as sched:
        t0 = time.monotonic()
        steps0 = sched.switches
        for _ in range(100):
            time.sleep(0)  # one scheduling step each, nothing else runnable
        elapsed = time.monotonic() - t0
        steps = sched.switches - steps0
    assert steps == 100
    assert elapsed == pytest.approx(0.1)
    with pytest.raises(ValueError, match="step_cost"):
        run_in_simulation(lambda: None, 20, step_cost=-1.0)


def _busy_exchange(stop_after: float) -> tuple[int, float]:
    """Two threads pass a message back and forth with no delay until a timer stops them.

    The shape of a deposed leader that keeps retrying RPCs its followers refuse:
    no thread ever waits for time to pass, yet in real time the timer fires.
    """
    stop = threading.Event()
    to_pong, to_ping = queue.SimpleQueue(), queue.SimpleQueue()
    rounds = []

    def ping():
        n = 0
        while not stop.is_set():
            to_pong.put(n)
            to_ping.get()
            n += 1
        to_pong.put(None)
        rounds.append(n)

    def pong():
        while (item := to_pong.get()) is not None:
            to_ping.put(item)

    t0 = time.monotonic()
    timer = threading.Timer(stop_after, stop.set)
    threads = [timer, threading.Thread(target=ping, name="ping"),
               threading.Thread(target=pong, name="pong")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rounds[0], time.monotonic() - t0


def test_a_busy_zero_delay_exchange_lets_virtual_time_pass_reproducibly():
    wall0 = time.perf_counter()
    rounds, elapsed = run_in_simulation(_busy_exchange, 21, 0.1)
    assert time.perf_counter() - wall0 < 20.0
    assert 0.1 <= elapsed < 0.1 + 0.01  # the timer fired on time, charged steps and all
    assert rounds > 100  # each round costs a few steps, not the whole 100 ms
    assert run_in_simulation(_busy_exchange, 21, 0.1) == (rounds, elapsed)  # byte for byte


def test_without_a_step_cost_a_busy_exchange_is_stopped_by_the_cpu_limit():
    wall0 = time.perf_counter()
    with pytest.raises(SimTimeLimit, match="CPU-time limit of 2 s exceeded") as info:
        run_in_simulation(_busy_exchange, 22, 0.1, step_cost=0.0, cpu_limit=2.0, wall_limit=600)
    assert time.perf_counter() - wall0 < 30.0  # a verdict, not a hang
    assert "thread 'ping'" in info.value.report and "thread 'pong'" in info.value.report


def test_a_cleanup_that_never_ends_after_a_failure_is_stopped_too():
    def body():
        try:
            while True:  # hangs in virtual time: the limit below stops it
                time.sleep(1)
        finally:
            while True:  # and so does its "cleanup", which the scheduler stops again
                time.sleep(1)

    wall0 = time.perf_counter()
    with pytest.raises(SimTimeLimit, match="did not end within 10 s after it failed"):
        run_in_simulation(body, 23, time_limit=30)
    assert time.perf_counter() - wall0 < 10.0


def test_a_thread_spinning_on_a_lock_or_a_flag_lets_virtual_time_pass():
    """A busy-wait that never blocks (legal, if wasteful, in real time) still sees the timer."""

    def body():
        mu = threading.Lock()
        state = {"done": False}
        ready = threading.Event()

        def finish():
            with mu:
                state["done"] = True
            ready.set()

        threading.Timer(0.1, finish).start()
        t0 = time.monotonic()
        spins = 0
        while True:  # polls a field under a lock, never blocking
            with mu:
                if state["done"]:
                    break
            spins += 1
        while not ready.is_set():  # polls an event's flag
            spins += 1
        return time.monotonic() - t0, spins

    wall0 = time.perf_counter()
    elapsed, spins = run_in_simulation(body, 24)
    assert time.perf_counter() - wall0 < 20.0
    assert 0.1 <= elapsed < 0.2 and spins > 1000
    assert run_in_simulation(body, 24) == (elapsed, spins)  # and reproducibly


def test_an_interrupt_posted_from_another_thread_is_raised_in_the_main_thread():
    """A Ctrl-C whose handler ran in a simulated thread (they share the OS thread) is
    posted to the scheduler, which only notes it; at the next switch the main thread is
    picked and raises it, and the thread that posted it goes on."""
    steps = []
    with activate(3) as sched:
        def raft_thread() -> None:
            time.sleep(0.5)
            sched.post_interrupt(KeyboardInterrupt("posted"))
            steps.append(("posted", round(time.monotonic() - t0, 3)))
            time.sleep(0.5)
            steps.append("went on")

        t0 = time.monotonic()
        thread = threading.Thread(target=raft_thread, name="raft-like")
        thread.start()
        with pytest.raises(KeyboardInterrupt, match="posted"):
            time.sleep(60)
        steps.append(("main raised", round(time.monotonic() - t0, 3)))
        thread.join()
    assert steps[0][0] == "posted" and steps[1][0] == "main raised"
    assert steps[1][1] - steps[0][1] < 0.01  # at the next switch, not at main's wake-up
    assert steps[2] == "went on"


class _HandlerBeforePop(list):
    """A run queue during whose swap-and-pop in ``_pick`` a signal handler runs once
    (between the swap and the pop, as it may between any two bytecodes)."""

    handler = None

    def pop(self, *args):  # noqa: ANN002, ANN201 - list.pop's own signature
        handler, type(self).handler = type(self).handler, None
        if handler is not None:
            handler()
        return super().pop(*args)


@pytest.mark.parametrize("post", ["interrupt", "failure"])
def test_what_a_signal_handler_posts_in_the_middle_of_a_pick_loses_no_thread(post):
    """The watchdog's alarm posts a failure, a routed Ctrl-C an interrupt, from a
    handler that may run inside the scheduler's own code.  Waking the main thread
    there appended it to the run queue between _pick's swap and pop, which then
    dropped it: the run ended in a ValueError from the run queue, not a verdict."""
    from labtests.sim import SimTimeLimit

    expected = KeyboardInterrupt if post == "interrupt" else SimTimeLimit
    with pytest.raises(expected):
        with activate(4) as sched:
            def posts() -> None:
                if post == "interrupt":
                    sched.post_interrupt(KeyboardInterrupt("posted"))
                else:
                    sched.post_failure(SimTimeLimit("posted by the alarm"))

            def worker(i: int) -> None:
                for _ in range(50):
                    time.sleep(0.01 * (i + 1))

            threads = [threading.Thread(target=worker, args=(i,), name=f"w{i}")
                       for i in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.1)  # the workers are runnable now and then
            sched.runnable = _HandlerBeforePop(sched.runnable)
            _HandlerBeforePop.handler = posts
            time.sleep(60)


def _frame_in(filename: str):  # noqa: ANN202 - a frame object
    """A frame whose code claims ``filename`` (a signal handler's ``frame`` argument)."""
    scope: dict = {}
    exec(compile("import sys\nframe = sys._getframe()", filename, "exec"), scope)  # noqa: S102
    return scope["frame"]


def test_a_ctrl_c_in_the_main_thread_waits_for_the_next_switch_only_inside_the_engine():
    """The routed Ctrl-C (labtests/sim/pytest_plugin.py) raises at once in the main
    thread's own code, as in real time; inside the simulation's code (a switch, a
    primitive), where raising could leave the run queue half-changed, it is posted and
    raised at the next switch."""
    import signal

    from labtests.sim import scheduler
    from labtests.sim.pytest_plugin import _ctrl_c_to_the_main_thread

    engine = _frame_in(scheduler.__file__)
    outside = _frame_in(__file__)
    assert scheduler.in_engine(engine) and not scheduler.in_engine(outside)
    before = signal.getsignal(signal.SIGINT)
    with activate(5) as sched:
        routed: list = []
        previous = _ctrl_c_to_the_main_thread(sched, routed)
        try:
            handler = signal.getsignal(signal.SIGINT)
            with pytest.raises(KeyboardInterrupt):
                handler(signal.SIGINT, outside)
            assert routed == []
            handler(signal.SIGINT, engine)  # posted, not raised
            assert len(routed) == 1 and sched.interrupt is routed[0]
            t0 = time.monotonic()
            with pytest.raises(KeyboardInterrupt) as info:
                time.sleep(60)
            assert info.value is routed[0] and time.monotonic() - t0 < 0.01
        finally:
            signal.signal(signal.SIGINT, previous)
    assert signal.getsignal(signal.SIGINT) is before


def test_the_ctrl_c_routing_is_skipped_where_no_handler_can_be_set():
    """pytest run from a thread other than the main one (a runner that uses threads):
    ``signal.signal`` refuses there, and the routing must not fail the test for it --
    the handler then runs in the real main thread, never in a simulated one."""
    import signal

    from labtests.sim.pytest_plugin import _ctrl_c_to_the_main_thread

    before = signal.getsignal(signal.SIGINT)
    got: list = []

    def simulated_test_in_a_thread() -> None:  # a real thread: the simulation runs in it
        with activate(6) as sched:
            got.append(_ctrl_c_to_the_main_thread(sched, []))

    runner = threading.Thread(target=simulated_test_in_a_thread)
    runner.start()
    runner.join()
    try:
        assert got == [None]
    finally:
        restored, _ = signal.getsignal(signal.SIGINT), signal.signal(signal.SIGINT, before)
    assert restored is before
