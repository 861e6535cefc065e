"""One CPU per test process (labtests/cpupin.py): a real-time graded test's threads
share one core, spread over the cores by a registry of pinned processes, and get
their former CPUs back when the test ends or the machine makes their timers late."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from labtests import cpupin
from labtests.timing import LagSampler
from tests.thread_settings_support import REPO, raft_threads_of_a_graded_test

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux affinity")
two_cpus = pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda _: ())(0)) < 2,
                              reason="pinning needs two CPUs to choose from")

# A child process that pins itself with a registry of the test's own, reports, and
# waits for a line on stdin before releasing (or ends without releasing on "exit").
CHILD = textwrap.dedent("""
    import json, os, sys, threading
    from pathlib import Path
    from labtests import cpupin

    def masks():
        return sorted(sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task"))

    before = sorted(os.sched_getaffinity(0))
    pin = cpupin.pin_process(Path(sys.argv[1]))
    ready = threading.Event()
    stop = threading.Event()
    t = threading.Thread(target=lambda: (ready.set(), stop.wait()))
    t.start()  # started while pinned: inherits the pin
    ready.wait()
    print(json.dumps({"pid": os.getpid(), "cpu": pin and pin.cpu, "before": before,
                      "pinned": masks()}), flush=True)
    line = sys.stdin.readline().strip()
    if line == "exit":
        os._exit(0)  # dies pinned, never releasing: its registry line stays behind
    if line.startswith("lag "):
        pin.lag_seen(float(line.split()[1]))
    else:
        pin.release()
    print(json.dumps({"released": pin.released, "reason": pin.release_reason,
                      "describe": pin.describe(), "after": masks()}), flush=True)
    stop.set()
    t.join()
""")


class Child:
    """One pinned child process (:data:`CHILD`), spoken to line by line."""

    def __init__(self, registry: Path, cpus: set[int] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(registry)], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        self.report = self._read()

    def _read(self) -> dict:
        import json
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"child said nothing: {self.proc.stderr.read()}")
        return json.loads(line)

    def say(self, line: str) -> dict | None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = None if line == "exit" else self._read()
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.proc.stdin.close()
        return out


def registry_pids(registry: Path) -> set[int]:
    return {int(line.split()[0]) for line in registry.read_text().splitlines()}


def _a_run_the_pin_held_through(run: Callable[[Path], dict], tmp_path: Path) -> dict:
    """What ``run`` saw in its first run whose pin was not released early.

    On a loaded machine the timer-lag probe releases a pin by design (20 ms of lag):
    such a run says nothing about where the test's threads would have run, so it is
    run again; three in a row released fail the test, with what they recorded."""
    released = []
    for attempt in range(3):
        folder = tmp_path / f"attempt{attempt}"
        folder.mkdir()
        seen = run(folder)
        if not any("released early" in pin for pin in seen["cpu_pin"]):
            return seen
        released.append(seen["cpu_pin"])
    pytest.fail(f"the pin was released early in three runs in a row: {released}")


@linux_only
@two_cpus
def test_a_real_time_graded_test_runs_the_raft_on_one_cpu_and_lets_go_after(tmp_path):
    seen = _a_run_the_pin_held_through(raft_threads_of_a_graded_test, tmp_path)
    masks = {tuple(cpus) for _, _, _, cpus in seen["threads"]}
    assert len(masks) == 1, seen  # every Raft thread on the same CPU...
    (mask,) = masks
    assert len(mask) == 1 and set(mask) <= set(seen["wide"]), seen  # ...one of the allowed
    assert all(cpus == seen["wide"] for cpus in seen["after"]), seen  # all given back
    assert seen["cpu_pin"] == [f"cpu {mask[0]}"], seen  # and the test's record says where


@linux_only
@two_cpus
def test_two_processes_pinned_at_once_get_different_cpus_and_leave_the_registry(tmp_path):
    registry = tmp_path / "pins"
    first = Child(registry)
    second = Child(registry)
    assert first.report["cpu"] != second.report["cpu"], (first.report, second.report)
    for child in (first, second):  # every thread, the one started while pinned too
        assert child.report["pinned"] == [[child.report["cpu"]]] * 2, child.report
    assert registry_pids(registry) == {first.report["pid"], second.report["pid"]}
    out = first.say("release")
    assert out["released"] and out["after"] == [first.report["before"]] * 2, out
    assert out["describe"] == f"cpu {first.report['cpu']}", out  # the end of a test
    assert registry_pids(registry) == {second.report["pid"]}
    second.say("release")
    assert registry.read_text() == ""


@linux_only
@two_cpus
def test_a_process_that_died_pinned_or_a_garbled_line_does_not_count(tmp_path):
    registry = tmp_path / "pins"
    dead = Child(registry)
    dead.say("exit")  # killed while pinned: its line stays
    assert registry_pids(registry) == {dead.report["pid"]}
    with registry.open("a") as f:
        f.write("not a pid\n12 x\n")
    # The dead one's line and the garbled ones are dropped; the next two take both CPUs.
    a, b = Child(registry), Child(registry)
    assert {a.report["cpu"], b.report["cpu"]} == set(a.report["before"]), (a.report, b.report)
    assert registry_pids(registry) == {a.report["pid"], b.report["pid"]}
    a.say("release")
    b.say("release")


@linux_only
@two_cpus
def test_timers_late_by_the_bound_release_the_pin_and_less_does_not(tmp_path):
    registry = tmp_path / "pins"
    calm = Child(registry)
    out = calm.say(f"lag {cpupin.RELEASE_LAG_S / 2}")
    assert out == {"released": False, "reason": None, "describe": f"cpu {calm.report['cpu']}",
                   "after": [[calm.report["cpu"]]] * 2}, out
    late = Child(registry)
    out = late.say(f"lag {cpupin.RELEASE_LAG_S}")
    assert out["released"] and out["reason"] == "timers late by 20 ms", out
    assert out["describe"] == f"cpu {late.report['cpu']}, released early: timers late by 20 ms"
    assert out["after"] == [late.report["before"]] * 2, out
    assert late.report["pid"] not in registry_pids(registry)


@linux_only
def test_a_process_held_to_one_cpu_already_is_left_as_it_is(tmp_path):
    cpu = min(os.sched_getaffinity(0))
    child = Child(tmp_path / "pins", cpus={cpu})
    assert child.report["cpu"] is None and child.report["pinned"] == [[cpu]] * 2, child.report
    assert not (tmp_path / "pins").exists()  # nothing registered
    child.proc.kill()
    child.proc.wait()
    for stream in (child.proc.stdin, child.proc.stdout, child.proc.stderr):
        stream.close()


@linux_only
@two_cpus
def test_a_registry_that_cannot_be_opened_pins_nothing(tmp_path):
    before = os.sched_getaffinity(0)
    assert cpupin.pin_process(tmp_path / "no such folder" / "pins") is None
    (tmp_path / "pins").mkdir()  # a directory where the file should be
    assert cpupin.pin_process(tmp_path / "pins") is None
    assert os.sched_getaffinity(0) == before


def test_the_lag_probe_reports_each_new_worst_lag_and_only_those():
    told: list[float] = []
    sampler = LagSampler(clock=time.monotonic, cpu_clock=lambda: 0.0, on_new_max=told.append)
    for lag in (0.001, 0.0005, 0.003, 0.003, 0.002, 0.030):
        sampler.record(lag, 0.0)
    assert told == [0.001, 0.003, 0.030]
    sampler.record(0.050, 0.045)  # late by 50 ms, 45 of them this process's own CPU
    assert told == [0.001, 0.003, 0.030]  # machine lag 5 ms: no new worst


@linux_only
@two_cpus
def test_only_a_real_time_run_is_pinned_not_a_simulated_one():
    from labtests.driver import run_graded

    def body(make_config):  # noqa: ANN001, ANN202 - a graded test's signature
        seen.append(sorted(os.sched_getaffinity(0)))

    wide = sorted(os.sched_getaffinity(0))
    seen: list[list[int]] = []
    run_graded(body, seed=1, sim=True)
    run_graded(body, seed=1, sim=False)
    assert seen[0] == wide, seen  # the simulation: left as it was
    assert len(seen[1]) == 1 and seen[1][0] in wide, seen  # real time: one CPU
    assert sorted(os.sched_getaffinity(0)) == wide  # and given back after


@linux_only
@two_cpus
def test_a_registry_locked_by_a_stopped_holder_costs_the_pin_not_a_hang(tmp_path):
    import fcntl

    registry = tmp_path / "pins"
    registry.write_text("")
    before = os.sched_getaffinity(0)
    with registry.open() as holder:  # another open file: its lock excludes ours
        fcntl.flock(holder, fcntl.LOCK_EX)
        t0 = time.monotonic()
        assert cpupin.pin_process(registry) is None
        waited = time.monotonic() - t0
    assert cpupin.LOCK_WAIT_S <= waited < 30, waited  # bounded (generous for a loaded box)
    assert os.sched_getaffinity(0) == before


def test_a_huge_registry_is_read_only_up_to_its_bound(tmp_path):
    registry = tmp_path / "pins"
    # Code under test may write anything there: megabytes of garbage, then a live line.
    with registry.open("w") as f:
        f.write("garbage\n" * (cpupin.REGISTRY_MAX_BYTES // 8 + 1) + "1 0\n")
    seen: list[dict[int, int]] = []
    assert cpupin._update_registry(registry, lambda entries: seen.append(dict(entries)))
    assert seen == [{}]  # the live line lies beyond the bound: not read
    assert registry.read_text() == ""  # and the garbage is gone


@linux_only
@two_cpus
def test_a_release_on_the_probes_thread_never_waits_for_the_registry(tmp_path):
    """The probe's thread must not block: with the registry's lock taken elsewhere,
    the release lets the threads go at once and leaves its line; the end of the test
    (a later release) removes it."""
    import fcntl

    registry = tmp_path / "pins"
    before = os.sched_getaffinity(0)
    pin = cpupin.pin_process(registry)
    assert pin is not None
    try:
        with registry.open() as holder:
            fcntl.flock(holder, fcntl.LOCK_EX)
            pin.lag_seen(cpupin.RELEASE_LAG_S)
            assert pin.released and os.sched_getaffinity(0) == before
            assert registry_pids(registry) == {os.getpid()}  # could not leave: lock taken
        pin.release()  # the end of the test: the lock is free now
        assert registry.read_text() == ""
        assert pin.describe() == f"cpu {pin.cpu}, released early: timers late by 20 ms"
    finally:
        pin.release()
        os.sched_setaffinity(0, before)


def _cpus_of_an_isolated_graded_test(folder: Path) -> dict:
    """What ``overload_plugins/record_isolated_cpus.py`` saw in a real-time
    ``test_initial_election_2a --isolate``."""
    import json

    out = folder / "cpus.json"
    env = dict(os.environ, RAFTLAB_TEST_CPUS_OUT=str(out), PYTHONPATH=os.pathsep.join(
        [str(REPO / "tests" / "overload_plugins"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "record_isolated_cpus", "--isolate", "--pyargs", "labtests",
         "-k", "test_initial_election_2a"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


@linux_only
@two_cpus
def test_an_isolated_run_pins_the_tester_and_leaves_its_peers_every_cpu(tmp_path):
    """``--isolate``: the tester's threads hand messages along under one GIL as in-process
    peers do, so its process is pinned; the peers are processes of their own and keep
    the CPUs the tester had before (each would otherwise wait for the tester's core)."""
    seen = _a_run_the_pin_held_through(_cpus_of_an_isolated_graded_test, tmp_path)
    assert len(seen["peers"]) == 3, seen  # three peers forked
    assert all(mask == seen["wide"] for mask in seen["peers"]), seen  # peers: every CPU
    masks = {tuple(mask) for fork in seen["tester"] for mask in fork}
    assert len(masks) == 1, seen  # the tester: every thread on one CPU...
    (mask,) = masks
    assert len(mask) == 1 and set(mask) <= set(seen["wide"]), seen  # ...one of the allowed
    assert seen["cpu_pin"] == [f"cpu {mask[0]}"], seen
    assert all(cpus == seen["wide"] for cpus in seen["after"]), seen  # all given back


@linux_only
@two_cpus
def test_a_template_started_while_the_tester_is_pinned_gets_the_cpus_from_before(tmp_path):
    """The template process (and the peers it forks) must not inherit the test's one CPU,
    however late the first test starts it; once the pin is gone, nothing is changed."""
    code = textwrap.dedent("""
        import json, os, sys
        from pathlib import Path
        from labtests import cpupin
        from labtests.isolation import IsolatedImplementation

        wide = sorted(os.sched_getaffinity(0))
        pin = cpupin.pin_process(Path(sys.argv[1]))
        assert pin is not None and cpupin.mask_for_children() == frozenset(wide)
        impl = IsolatedImplementation(None)
        assert impl.error is None, impl.error  # starts the template now, pinned
        template = sorted(os.sched_getaffinity(impl.template_pid))
        mine = sorted(os.sched_getaffinity(0))
        pin.release()
        print(json.dumps({"wide": wide, "template": template, "mine": mine,
                          "after_release": cpupin.mask_for_children()}))
        impl.close()
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pins")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(seen["mine"]) == 1, seen  # the tester was pinned...
    assert seen["template"] == seen["wide"], seen  # ...its template was not
    assert seen["after_release"] is None, seen
