"""The process's one harness thread (labtests/ticker.py): the timer-lag probe and the
timeline supervisor share it; it ends when nothing is scheduled; a broken or slow
job neither kills it nor hides the machine's lag from the verdict."""

from __future__ import annotations

import os
import threading
import time

from labtests import ticker, timing
from labtests.overload import is_inconclusive
from labtests.timing import LagSampler
from tests.test_timeline import _Cfg, _Deadlocked, _Peer, _states, _wait_for


def _harness_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == ticker.THREAD_NAME]


def test_jobs_run_in_due_order_on_one_thread_which_ends_with_the_last_job():
    tk = ticker.Ticker(name="test-ticker")
    seen: list[tuple[str, str]] = []
    now = time.monotonic()

    def once(tag: str):
        def fn():
            seen.append((tag, threading.current_thread().name))
            return None
        return fn

    tk.at(now + 0.06, once("late"), "late")
    tk.at(now + 0.02, once("early"), "early")
    _wait_for(lambda: len(seen) == 2, "both jobs ran")
    assert seen == [("early", "test-ticker"), ("late", "test-ticker")]
    _wait_for(lambda: not [t for t in threading.enumerate() if t.name == "test-ticker"],
              "the thread ended with its last job")
    assert tk.threads_started == 1


def test_a_repeating_job_is_cancelled_at_once_and_the_thread_is_gone_on_return():
    tk = ticker.Ticker(name="test-ticker-2")
    runs = []
    job = tk.at(time.monotonic(), lambda: runs.append(1) or time.monotonic() + 0.01, "tick")
    _wait_for(lambda: len(runs) >= 5, "five ticks")
    t0 = time.monotonic()
    tk.cancel(job)
    assert time.monotonic() - t0 < 0.5
    after = len(runs)
    assert not [t for t in threading.enumerate() if t.name == "test-ticker-2"]
    time.sleep(0.05)
    assert len(runs) == after and tk.jobs() == []


def test_a_job_that_raises_ends_alone_and_the_others_keep_running():
    tk = ticker.Ticker(name="test-ticker-3")
    ticks = []

    def broken():
        raise ValueError("boom")

    bad = tk.at(time.monotonic(), broken, "broken")
    good = tk.at(time.monotonic(), lambda: ticks.append(1) or time.monotonic() + 0.01, "good")
    _wait_for(lambda: len(ticks) >= 5, "the good job goes on")
    assert isinstance(bad.error, ValueError) and bad.runs == 1
    assert tk.jobs() == ["good"]
    tk.cancel(good)
    assert not [t for t in threading.enumerate() if t.name == "test-ticker-3"]


def test_cancel_waits_for_a_run_under_way_while_other_jobs_remain():
    tk = ticker.Ticker(name="test-ticker-4")
    started, finished = threading.Event(), threading.Event()

    def slowish():
        started.set()
        time.sleep(0.2)
        finished.set()
        return time.monotonic() + 0.01

    other = tk.at(time.monotonic() + 60, lambda: None, "other")
    job = tk.at(time.monotonic(), slowish, "slowish")
    assert started.wait(5)
    tk.cancel(job)
    assert finished.is_set(), "cancel returned while the job still ran"
    assert tk.jobs() == ["other"]
    tk.cancel(other)


def test_an_earlier_job_wakes_a_thread_waiting_for_a_later_one():
    tk = ticker.Ticker(name="test-ticker-5")
    late = tk.at(time.monotonic() + 60, lambda: None, "in a minute")
    ran = threading.Event()
    t0 = time.monotonic()
    tk.at(time.monotonic() + 0.01, lambda: ran.set(), "soon")
    assert ran.wait(5) and time.monotonic() - t0 < 2.0
    tk.cancel(late)


def test_a_machine_out_of_threads_raises_and_leaves_the_ticker_usable(monkeypatch):
    tk = ticker.Ticker(name="test-ticker-6")
    real_start = threading.Thread.start

    def refuse(self):  # noqa: ANN001 - stands in for Thread.start
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    try:
        tk.at(time.monotonic(), lambda: None, "x")
    except RuntimeError as exc:
        assert "can't start new thread" in str(exc)
    else:
        raise AssertionError("no error when the thread could not start")
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert tk.jobs() == []
    ran = threading.Event()
    tk.at(time.monotonic(), lambda: ran.set(), "y")
    assert ran.wait(5)


def test_a_forked_child_starts_with_no_jobs_and_its_own_thread():
    probe = LagSampler(interval_s=0.01).start()
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the parent's job and thread are not here
            ok = ticker.TICKER.jobs() == [] and not _harness_threads()
            child = LagSampler(interval_s=0.01).start()
            time.sleep(0.1)
            ok = ok and child.stop().samples >= 1 and not _harness_threads()
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        assert os.read(r, 1) == b"1"
        os.waitpid(pid, 0)
        os.close(r)
    finally:
        probe.stop()


def test_probe_and_supervisor_share_one_thread_and_leave_none_behind():
    before = {t.ident for t in threading.enumerate()}
    from labtests.timeline.sampler import StateSampler

    probe = LagSampler(interval_s=0.01).start()
    cfg = _Cfg([_Peer(1, False)])
    sampler = StateSampler(cfg, cfg.timeline, isolated=False, interval_s=0.01).start()
    assert sorted(ticker.TICKER.jobs()) == ["timeline-supervisor", "timer-lag"]
    new = [t.name for t in threading.enumerate() if t.ident not in before]
    assert sorted(new) == [ticker.THREAD_NAME, "raftlab-timeline-sampler-1"]
    assert sampler.stop() == []
    assert ticker.TICKER.jobs() == ["timer-lag"]
    time.sleep(0.05)
    assert probe.stop().samples >= 3
    assert not [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]


def test_a_deadlocked_peer_is_still_found_with_the_supervisor_on_the_harness_thread():
    from labtests.timeline.sampler import SUPERVISE_S, StateSampler

    stuck = _Deadlocked()
    cfg = _Cfg([_Peer(2, True), stuck])
    probe = LagSampler(interval_s=0.01).start()  # the probe keeps ticking meanwhile
    sampler = StateSampler(cfg, cfg.timeline, isolated=False, interval_s=0.01).start()
    try:
        _wait_for(lambda: (1, "unresponsive", None) in _states(cfg), "peer 1 unresponsive",
                  timeout=SUPERVISE_S + 5)
        n = len(probe.machine_lags)
        time.sleep(0.1)
        assert len(probe.machine_lags) > n, "the probe stopped while a peer was stuck"
    finally:
        sampler.stop()
        stuck.release.set()
        probe.stop()


def test_lag_the_machine_causes_is_still_seen_by_the_shared_probe():
    """The verdict's input is unchanged: a wake-up held up while the process did not run
    (here: the harness thread's other job sleeping without CPU, as a stalled process
    would) is the machine's lag, and a failure then is inconclusive."""
    probe = LagSampler(interval_s=0.01).start()
    stall = ticker.TICKER.at(time.monotonic() + 0.03, lambda: time.sleep(0.3), "stall")
    try:
        _wait_for(lambda: probe.machine_max_s >= 0.25, "the stall measured as lag")
    finally:
        ticker.TICKER.cancel(stall)
        summary = probe.stop()
    assert summary.max_ms >= 250
    assert is_inconclusive(summary, "expected one leader, got none")
    assert not is_inconclusive(summary, "committed values do not match")


def test_the_harness_thread_is_in_a_tests_baseline_and_ends_after_it(monkeypatch):
    """TestContext starts the probe before it takes its thread baseline, so the leak
    check never sees the harness thread; the thread ends with the test."""
    from labtests.context import TestContext
    from labtests.impl_loader import load

    ctx = TestContext("t", 1, load(None))
    try:
        assert any(t.ident in ctx._baseline for t in _harness_threads())
    finally:
        ctx.finish(body_failed=False)
    assert ctx.timer_lag is not None and ctx.timer_lag.measured
    assert not _harness_threads()
    assert timing.SAMPLE_INTERVAL_S == 0.05  # the probe's rate is the verdict's, unchanged
