"""The timer-lag probe shared by forked stress workers (labtests/machine_probe.py).

What must hold: a test reads exactly the samples taken while it ran; lateness
the probe process did not cause is the machine's; a probe that is gone excuses
nothing (``measured=False``); the probe never outlives its session; a worker
still counts its own threads; and, end to end, a failure during which the shared
probe was not run is inconclusive, as with the per-process probe.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from labtests import machine_probe, ticker, timing
from labtests.machine_probe import SLOTS, MachineProbe, SharedLagView
from labtests.overload import EXIT_INCONCLUSIVE, overloaded
from tests.test_stress import run_stress
from tools.stress.results import results_of

REPO = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).parent / "overload_plugins"
NEVER_ELECTS = Path(__file__).parent / "toys_grade" / "never_elects" / "raft.py"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_view_reads_only_the_samples_taken_while_its_test_ran():
    probe = MachineProbe()  # no process: samples written by hand
    probe.write(0, 1.0, 0.500)  # before the test: not its lag
    view = SharedLagView(probe)
    view._first = probe.count()  # what start() does, without the harness thread
    probe.write(1, 2.0, 0.010)
    probe.write(2, 3.0, 0.250)
    assert view.machine_max_s == pytest.approx(0.250)
    summary = view.summary()
    assert (summary.samples, summary.max_ms, summary.probe) == (2, 250.0, "machine")
    assert summary.self_max_ms == 0.0 and overloaded(summary)


def test_samples_overwritten_before_they_are_read_are_skipped_not_misread():
    probe = MachineProbe()
    for k in range(SLOTS + 10):
        probe.write(k, float(k), 0.001 * (k % 7))
    kept = probe.samples(0)
    assert len(kept) == SLOTS and kept[0][0] == 10.0 and kept[-1][0] == float(SLOTS + 9)
    probe.write(SLOTS + 10, -1.0, 9.9)  # slot of sample 10 now holds sample SLOTS + 10 ...
    kept = probe.samples(10, SLOTS + 10)  # ... which a reader of 10..SLOTS+9 must not
    assert (-1.0, 9.9) not in kept and kept[0][0] == 11.0  # take for sample 10


def test_a_probe_that_wrote_nothing_during_a_test_excuses_nothing(monkeypatch):
    monkeypatch.setattr(machine_probe, "STALE_S", 0.05)
    view = SharedLagView(MachineProbe()).start()  # no probe process: no sample ever
    time.sleep(0.1)
    summary = view.stop()
    assert summary.measured is False and not overloaded(summary)


def test_the_probe_measures_the_time_it_was_not_run_and_ends_with_stop():
    probe = MachineProbe(interval_s=0.02).start()
    pid = probe.pid
    try:
        deadline = time.monotonic() + 10
        while probe.count() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        view = SharedLagView(probe).start()
        os.kill(pid, signal.SIGSTOP)  # the machine does not run the probe for 0.4 s
        time.sleep(0.4)
        os.kill(pid, signal.SIGCONT)
        first = probe.count()
        while probe.count() < first + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        summary = view.stop()
    finally:
        probe.stop()
    assert summary.measured and summary.max_ms >= 300, summary
    assert probe.pid is None and not _alive(pid)


def test_the_probe_dies_with_the_process_that_started_it():
    read_fd, write_fd = os.pipe()
    middle = os.fork()
    if middle == 0:  # a stand-in for a stress session that dies without stopping its probe
        try:
            os.close(read_fd)
            os.write(write_fd, str(MachineProbe(interval_s=0.02).start().pid).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        pid = int(f.read())
    os.waitpid(middle, 0)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)


def test_with_a_machine_probe_installed_a_test_runs_no_probe_of_its_own_but_counts_its_threads():
    machine_probe.install(MachineProbe())
    release = threading.Event()
    extra = [threading.Thread(target=release.wait) for _ in range(20)]
    try:
        view = timing.start_sampler()
        assert isinstance(view, SharedLagView)
        assert ticker.TICKER.jobs() == ["thread-count"]  # no 20/s "timer-lag" job
        for t in extra:
            t.start()
        time.sleep(machine_probe.THREADS_INTERVAL_S * 2.5)
        release.set()
        for t in extra:
            t.join()
        summary = view.stop()
    finally:
        machine_probe.install(None)
        release.set()
    assert summary.threads_max >= 21
    assert ticker.TICKER.jobs() == []


def test_stress_workers_share_the_probe_and_a_failure_it_saw_starved_is_inconclusive(
        tmp_path, monkeypatch):
    monkeypatch.setenv("RAFTLAB_TEST_PROBE_STOP_MS", "800")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.delenv("RAFTLAB_STRESS_XDIST", raising=False)
    out = tmp_path / "o"
    rc, text = run_stress(["labtests/test_2a.py::test_initial_election_2a", "-n", "2",
                           "-p", "2", "--retries", "0", "--impl", str(NEVER_ELECTS),
                           "-o", str(out), "--no-live", "--", "-p", "stopped_probe"], cwd=REPO)
    assert rc == EXIT_INCONCLUSIVE, text
    rows = results_of(out / "results.jsonl")
    assert [r["outcome"] for r in rows] == ["inconclusive", "inconclusive"], text
    for row in rows:
        assert row["properties"]["timer_lag_probe"] == "machine"
        assert row["properties"]["timer_lag_max_ms"] >= 700, row["properties"]
        assert row["message"].endswith("expected one leader, got none")
