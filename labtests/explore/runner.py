"""Run one schedule against an implementation in simulated time; return the first violation.

The whole run -- the driver below (the simulation's main thread), the network,
the Raft peers, the poller, the apply readers and the clients -- happens inside
:func:`labtests.sim.activate`, so a schedule and its seed give one run: the
same violation and, with ``debug=True``, the same debug log, byte for byte.

Phases: the schedule's steps at their virtual times (and the crashes their
triggers arm); at ``horizon`` everything heals; then the liveness phase waits
for a leader (:data:`~labtests.explore.monitors.LEADER_BOUND`) and for a fresh
command to be applied everywhere (:data:`~labtests.explore.monitors.COMMIT_BOUND`).
The run stops at the first violation.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from labtests.explore.cluster import POLL, Cluster
from labtests.explore.monitors import COMMIT_BOUND, LEADER_BOUND, Monitors, Violation
from labtests.explore.schedule import Schedule, Step
from labtests.explore.timeline import build as build_timeline
from labtests.impl_loader import Implementation, load
from labtests.race import Scope, detecting, format_races
from labtests.sim import SimDeadlock, SimFailure, activate
from labtests.sim.ticks import StaleSource, match
from raft import debuglog
from raft.debuglog import dlog

AGREE_WAIT = 2.0  # virtual s the liveness probe waits for one accepted command, like one()
DEFAULT_WALL_LIMIT = 120.0  # real seconds one run may take before it counts as stuck
RACE_PREEMPT = 0.02  # line preemption with race detection (as raftlab test --sim --race)
RACE_SLOWDOWN = 10.0  # the detector and preemption make a run this much slower, at most


@dataclass
class RunResult:
    """What one run of a schedule showed."""

    violation: Violation | None
    virtual_s: float
    wall_s: float
    commits: int
    log: list[str] | None = field(default=None, repr=False)
    # (events.jsonl header, events) with timeline=True: labtests/explore/timeline.py
    timeline: tuple[dict[str, Any], list[dict[str, Any]]] | None = field(default=None,
                                                                          repr=False)
    # What the Raft wrote to stdout/stderr, when the run was guarded (tools/explore/guard.py):
    # bytes in all, and the last lines (the guard keeps it off explore's own output)
    output_bytes: int = 0
    output_tail: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.violation is None


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _step(cluster: Cluster, step: Step) -> None:
    a = step.args
    dlog("TEST", None, "explore: %s", step.describe().strip())
    if step.op == "partition":
        cluster.partition(a["groups"])
    elif step.op == "link":
        cluster.set_link(a["src"], a["dst"], a["state"])
    elif step.op == "crash":
        cluster.crash(a["peer"])
    elif step.op == "restart":
        cluster.start_peer(a["peer"])
    elif step.op == "crash_after":
        cluster.arm(a["peer"], a["event"], float(a["delay"]), float(a["down"]))
    elif step.op == "mute_after":
        cluster.arm(a["peer"], a["event"], float(a["delay"]), float(a["down"]), "mute")
    elif step.op == "unreliable":
        cluster.set_network(unreliable=bool(a["on"]))
    elif step.op == "reorder":
        cluster.set_network(reorder=bool(a["on"]))
    elif step.op == "clients":
        cluster.start_client(int(a["count"]))


OnStep = Callable[[int, float], None]
"""Told ``(k, at)`` before step ``k`` (0-based) runs, and ``(len(steps), horizon)`` at the heal:
where a run was when its process died (:mod:`tools.explore.guard`)."""


def _fault_phase(cluster: Cluster, schedule: Schedule, on_step: OnStep | None = None) -> None:
    steps = list(schedule.steps)
    k = 0
    mon = cluster.monitors
    while not mon.failed:
        now = cluster.now()
        for what, peer in cluster.due_actions(now):
            if what == "crash":
                cluster.crash(peer)
            elif what in ("mute", "unmute"):
                cluster.mute(peer, what == "mute")
            elif now < schedule.horizon:
                cluster.start_peer(peer)
        while k < len(steps) and steps[k].at <= now + 1e-9:
            if on_step is not None:
                on_step(k, steps[k].at)
            _step(cluster, steps[k])
            k += 1
        if mon.failed or now >= schedule.horizon - 1e-9:
            return
        nxt = schedule.horizon
        if k < len(steps):
            nxt = min(nxt, steps[k].at)
        with cluster.wake:  # actions armed meanwhile are seen here, under the lock
            if cluster.actions:
                nxt = min(nxt, cluster.actions[0][0])
            if nxt > cluster.now():
                cluster.wake.wait(nxt - cluster.now())


def _heal(cluster: Cluster) -> None:
    dlog("TEST", None, "explore: heal everything")
    with cluster.mu:
        cluster.triggers.clear()
        cluster.actions.clear()
    cluster.unmute_all()
    cluster.set_network(unreliable=False, reorder=False)
    cluster.partition([list(range(cluster.n))])
    for i in range(cluster.n):
        cluster.start_peer(i)


def _liveness_phase(cluster: Cluster) -> None:
    mon = cluster.monitors
    healed = cluster.now()
    leader = None
    while not mon.failed and cluster.now() - healed <= LEADER_BOUND:
        states = {}
        for i, inc, rf in cluster.live():
            got = cluster.sample(i, inc, rf)
            if got is not None:
                states[i] = got
        top = max((t for t, _ in states.values()), default=-1)
        leaders = [i for i, (t, is_leader) in states.items() if is_leader and t == top]
        if leaders and len(states) == cluster.n:
            leader = leaders[0]
            break
        cluster.finished.wait(0.05)
    if mon.failed:
        return
    if leader is None:
        terms = ", ".join(f"S{i}: term {t[0]}" for i, t in enumerate(mon.last_term) if t)
        mon.fail("liveness-leader", cluster.now(),
                 f"no leader in the highest term within {LEADER_BOUND:.0f}s after the heal at "
                 f"{healed:.3f}s ({terms})")
        return
    dlog("TEST", None, "explore: S%d leads after the heal", leader)
    last = None
    while not mon.failed and cluster.now() - healed <= COMMIT_BOUND:
        # A fresh command per attempt: each command is accepted at most once, which
        # keeps the log-matching check (one command, one index) exact.
        cmd = cluster.new_command()
        order = list(range(cluster.n))
        got = cluster.submit(cmd, order)
        if got is None:
            cluster.finished.wait(0.05)
            continue
        last = got
        _peer, index, _term = got
        t1 = cluster.now()
        while not mon.failed and cluster.now() - t1 < AGREE_WAIT:
            with mon._lock:
                seen = mon.committed.get(index)
                by = set(mon.applied_by.get(index, ()))
            if seen is not None and seen[0] == cmd and len(by) == cluster.n:
                dlog("TEST", None, "explore: %r applied by all at index %d", cmd, index)
                return
            cluster.finished.wait(0.02)
    if mon.failed:
        return
    with mon._lock:
        by = sorted(mon.applied_by.get(last[1], ())) if last else []
    where = (f"last accepted by S{last[0]} at index {last[1]} in term {last[2]}; applied there "
             f"by {', '.join(f'S{p}' for p in by) or 'nobody'}") if last else "no peer accepted it"
    mon.fail("liveness-commit", cluster.now(),
             f"no command offered after the heal at {healed:.3f}s was applied by all "
             f"{cluster.n} peers within {COMMIT_BOUND:.0f}s ({where})")


def _drive(schedule: Schedule, impl: Implementation, monitors: Monitors,
           observed: list[Any] | None = None, on_step: OnStep | None = None,
           on_time: Callable[[float], None] | None = None) -> float:
    cluster = Cluster(schedule.n, impl, schedule.seed, monitors, schedule.snapshot_every)
    cluster.observed = observed
    cluster.on_time = on_time
    prev_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        import traceback

        name = args.thread.name if args.thread is not None else "?"
        tb = "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                                args.exc_traceback))
        if args.exc_type is not None and issubclass(args.exc_type, SystemExit):
            # sys.exit() in a thread ends only that thread; the Raft surely meant more.
            monitors.fail("exit", cluster.now(),
                          f"thread {name!r} called sys.exit({args.exc_value}): SystemExit ends "
                          f"only that thread, the peer goes on without it\n{tb}")
            return
        cluster.thread_error(name, args.exc_value, tb)

    threading.excepthook = hook
    try:
        for i in range(schedule.n):
            cluster.start_peer(i)
        threading.Thread(target=cluster.poller, name="explore-poller", daemon=True).start()
        _fault_phase(cluster, schedule, on_step)
        if not monitors.failed:
            if on_step is not None:
                on_step(len(schedule.steps), schedule.horizon)
            _heal(cluster)
            _liveness_phase(cluster)
        return cluster.now()
    except SimFailure:
        raise  # the simulation's verdicts (deadlock, limits): run_schedule reports them
    except Exception as exc:  # noqa: BLE001 - e.g. get_state() or start() raised, or returned junk
        import traceback

        monitors.fail("crash", cluster.now(),
                      f"uncaught exception in explore's driver, in a call into the Raft "
                      f"(see the traceback): {exc!r}\n{traceback.format_exc()}")
        return cluster.now()
    finally:
        cluster.cleanup()
        threading.excepthook = prev_hook


def _after_the_run(args: threading.ExceptHookArgs) -> None:
    """Drop what a thread raises while the simulation tears the run down."""


def _race_verdict(monitors: Monitors, det: Any, now: float) -> None:
    """Races found: they are the run's verdict (the first monitor violation, if any,
    is named in the message: a race often explains it)."""
    also = monitors.violation
    text = format_races(det.races, det.dropped)
    if also is not None:
        text += f"\nthe run also broke: {also.headline().splitlines()[0]}"
    monitors.violation = Violation("data-race", round(now, 3),
                                   f"{len(det.races)} data race(s) in the implementation's "
                                   f"fields\n{text}")


def _restart_thread_names() -> None:
    """Unnamed threads are named ``Thread-N`` from a process-wide counter: restarted for
    each run, so a thread's name in a finding (``uncaught exception in thread
    'Thread-2 (_boom)'``) does not depend on what the process ran before -- a replay
    in a fresh process names it the same."""
    if callable(getattr(threading, "_counter", None)):
        threading._counter = itertools.count(1).__next__  # type: ignore[attr-defined]


def sim_seed(seed: int) -> int:
    return random.Random(f"{seed}:explore-scheduler").getrandbits(63)


def run_schedule(schedule: Schedule, impl: Implementation | str | None = None, *,
                 debug: bool = False, wall_limit: float | None = DEFAULT_WALL_LIMIT,
                 sim_options: dict[str, Any] | None = None, race: bool = False,
                 timeline: bool = False, on_step: OnStep | None = None,
                 on_time: Callable[[float], None] | None = None) -> RunResult:
    """Run ``schedule`` against ``impl`` (default the bundled Raft) in simulated time.

    ``race``: also run the data-race detector (:mod:`labtests.race`) on the
    implementation's fields, with seeded line preemption as ``raftlab test --sim
    --race`` does; races make the run's verdict ``data-race`` (kind ``race``),
    whatever the monitors saw (the report says what else broke).

    ``timeline`` (needs ``debug``): also build the run's timeline page data from
    what the run kept anyway; the run itself is the same (no extra clock reads).

    ``on_step``, ``on_time``: told where the run is (:data:`OnStep`; the time of each
    ``get_state`` sample, every 10 ms); they must not touch the simulation (the guard
    writes numbers to shared memory).
    """
    if timeline and not debug:
        raise ValueError("a timeline is built from the debug log: pass debug=True too")
    observed: list[Any] | None = [] if timeline else None
    implementation = impl if isinstance(impl, Implementation) else load(impl)
    if implementation.error is not None:
        raise RuntimeError(implementation.error)
    detect: Any = None
    if race:
        if implementation.module is None:
            raise RuntimeError("race detection needs an imported implementation module")
        scope = Scope(implementation.module, implementation.is_bundled)
        stale = match(scope.modules()).stale  # what line preemption would refuse, said now
        if stale:
            raise StaleSource(stale, "rerun explore (a fresh process) once the files are final")
        sim_options = {"preempt": RACE_PREEMPT, "preempt_scope": scope.predicate(),
                       **(sim_options or {})}
        if wall_limit is not None:
            wall_limit *= RACE_SLOWDOWN

        def detect() -> Any:
            return detecting(implementation.module, bundled=implementation.is_bundled,
                             simulated=True)
    monitors = Monitors(schedule.n)
    det = None
    capture = None
    was_enabled = debuglog.enabled()
    if debug:
        capture = _Capture()
        debuglog.logger.addHandler(capture)
        debuglog.enable(True)
    elif was_enabled:
        debuglog.enable(False)
    wall0 = time.perf_counter()
    virtual = 0.0
    limit = schedule.horizon + LEADER_BOUND + COMMIT_BOUND + 60.0
    # Threads the simulation kills when the run is over (after the driver's own hook
    # is gone) may raise on their way out; that is the end of the run, not a finding.
    prev_hook = threading.excepthook
    threading.excepthook = _after_the_run
    _restart_thread_names()
    try:
        with activate(sim_seed(schedule.seed), time_limit=limit, wall_limit=wall_limit,
                      **(sim_options or {})) as sched:
            debuglog.reset_clock()
            dlog("TEST", None, "=== explore: %d peers, seed %d", schedule.n, schedule.seed)
            try:
                with detect() if detect is not None else nullcontext() as det:
                    _drive(schedule, implementation, monitors, observed, on_step, on_time)
            except SimDeadlock as exc:
                monitors.fail("deadlock", sched.now, exc.report)
            except SimFailure as exc:
                monitors.fail("time-limit", sched.now, str(exc))
            virtual = sched.now
            if det is not None and det.races:
                _race_verdict(monitors, det, virtual)
            if monitors.violation is not None:
                dlog("TEST", None, "FAIL: %s", monitors.violation.headline().splitlines()[0])
    except SimDeadlock as exc:
        monitors.fail("deadlock", virtual, exc.report)
    except SimFailure as exc:
        monitors.fail("time-limit", virtual, str(exc))
    finally:
        threading.excepthook = prev_hook
        if capture is not None:
            debuglog.logger.removeHandler(capture)
        debuglog.enable(was_enabled)
    commits = max(monitors.committed, default=0)
    lines = capture.lines if capture else None
    built = (build_timeline(schedule, lines or [], observed, monitors.violation)
             if observed is not None else None)
    return RunResult(monitors.violation, round(virtual, 3), time.perf_counter() - wall0,
                     commits, lines, built)


__all__ = ["RunResult", "run_schedule", "POLL"]
