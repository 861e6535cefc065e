"""The deterministic scheduler and virtual clock behind simulation mode.

Every simulated thread is a greenlet in the one OS thread that activated the
simulation, so exactly one runs at a time and a switch happens only where a
thread blocks (a lock, condition, event, queue, join or sleep).  At each switch
the next thread is drawn with a ``random.Random`` seeded from the test's seed
among those that can run.  When none can, the clock jumps to the earliest timer
(a sleep or a timed wait) and wakes it.  When none can and no timer is pending,
the run is a deadlock: :class:`SimDeadlock` is raised in the thread that
activated the simulation (the test's main thread), carrying every thread's
stack and what it waits for.

Work costs a fixed amount of virtual time: every scheduling step (one thread
runs until it blocks or yields, and the next is picked) advances the clock by
``step_cost`` (default :data:`STEP_COST`).  Without that charge the clock would
only move when every thread is blocked, so threads that keep exchanging
zero-delay messages (a deposed leader that keeps retrying, say) would freeze
virtual time, and the timer that ends the exchange in real time (the new
leader's heartbeat) would never fire.  The charge depends only on the number
of steps, which the seed decides, so runs stay reproducible byte for byte.
The default was measured on the 2-core lab machine: a bare labrpc call is two
steps and takes about 30 µs in real time, a step of a Raft (pickling entries,
taking locks, waking a thread) more; at 25 µs the busy exchanges of a leader
that does not step down (``tests/toys_sim/no_step_down.py``) make about as
many RPCs in simulation as in real time, and the graded suites' virtual
durations stay close to their real ones (``benchmarks/sim_bench.py --real``
prints both, test by test).

CPU work between two steps is otherwise free, unless ``cpu_scale`` > 0, which
also charges the CPU time a thread really used (``time.thread_time`` deltas,
times ``cpu_scale``) to the clock at each switch; that makes a slow
implementation visible but the run no longer reproducible.

A thread that polls in a loop without ever blocking -- the clock, a lock it
takes and releases, an event's flag -- would freeze virtual time (a real
thread would be preempted and time would pass); after :data:`SPIN_READS` such
polls without a switch, the thread sleeps :data:`SPIN_STEP` virtual seconds
(about 1 µs per poll, more than a poll costs in real time but harmless: a
thread that spins is waiting for something, and one that works between its
polls costs more than that in real time too).  A loop that polls nothing the
simulation sees (a plain attribute) cannot be interrupted (pytest-timeout's
wall-clock watchdog still applies).

Limits, checked every :data:`LIMIT_CHECK_STEPS` steps and at every clock jump.
A run that does not end fails on its *virtual* time (``time_limit``) or on the
*CPU time* it used (``cpu_limit``): the whole simulation runs in one OS thread,
so that thread's CPU time (``time.thread_time``) is the simulation's work and
does not depend on how many other processes share the machine -- a livelock
that keeps the clock still uses up its CPU budget on an idle machine and on a
loaded one alike.  The same budget bounds the time the thread spends *blocked*
in real calls the simulation does not see (wall time minus CPU time minus the
time it waited for a CPU, :mod:`labtests.sim.runqueue`; known on Linux): that
too is the code's doing, not the machine's.  Wall time is only a backstop
(``wall_limit``, far larger): a run that reaches it first was not given the
CPU by the machine, so it ends with :class:`SimOverloaded`, whose verdict is
"inconclusive (machine overloaded)", never a failure of the code under test.
"""

from __future__ import annotations

import heapq
import os
import random
import threading
import time as _time_mod
from collections.abc import Callable
from typing import Any

from greenlet import GreenletExit, getcurrent, greenlet

from labtests.sim import interp, runqueue
from labtests.sim.report import format_report
from labtests.sim.task import BLOCKED, DONE, RUNNABLE, RUNNING, Task

_real_monotonic = _time_mod.monotonic
_real_thread_time = _time_mod.thread_time

SPIN_READS = 1000  # polls (clock reads, lock releases, flag reads) without a switch...
SPIN_STEP = 0.001  # ...before the polling thread sleeps this many virtual seconds
STEP_COST = 25e-6  # virtual seconds charged for each scheduling step
LIMIT_CHECK_STEPS = 4096  # steps between two checks of the time limits in a busy run
JUDGE_EVERY_STEPS = 64  # at clock jumps, CPU and wall time are read at most this often
CLEANUP_GRACE = 10.0  # seconds (virtual, or CPU) a failed run gets to end
CYCLE_CONFIRM = 1.0  # virtual seconds a lock cycle must last to be reported
FIRST_FAKE_IDENT = 1 << 40  # thread idents of simulated threads start here
_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def in_engine(frame: Any) -> bool:
    """Whether a signal handler's ``frame`` is the simulation's own code (the
    scheduler, a primitive, the patches): raising there could leave the run queue
    half-changed, so the handler only posts (:meth:`Scheduler.post_failure`)."""
    return frame is not None and frame.f_code.co_filename.startswith(_ENGINE_DIR)


class SimFailure(AssertionError):
    """The simulation stopped a test: a deadlock or an exceeded time limit."""


class SimDeadlock(SimFailure):
    """Every simulated thread is blocked and no timer is pending.

    ``report`` is the text with each thread's stack and what it waits for.
    """

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report


class SimTimeLimit(SimFailure):
    """The virtual-time or CPU-time limit of a simulated run was exceeded."""

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report


class SimOverloaded(SimTimeLimit):
    """The wall-clock backstop passed before the CPU budget: the machine, not the code.

    ``detail`` says how little CPU the run got (the words after "machine
    overloaded:" in the inconclusive verdict).
    """

    def __init__(self, report: str, detail: str) -> None:
        super().__init__(report)
        self.detail = detail


class SimUnsupported(RuntimeError):
    """Code under simulation reached something that cannot run on a virtual clock."""


class Scheduler:
    """One simulated run: its tasks, runnable set, timers and clock."""

    def __init__(
        self,
        seed: int,
        *,
        cpu_scale: float = 0.0,
        time_limit: float | None = None,
        cpu_limit: float | None = None,
        wall_limit: float | None = None,
        preempt: float = 0.0,
        step_cost: float = STEP_COST,
    ) -> None:
        if step_cost < 0:
            raise ValueError(f"step_cost must be >= 0, not {step_cost}")
        self.seed = seed
        self.step_cost = step_cost
        self.rng = random.Random(seed)
        self.now = 0.0  # virtual seconds since activation
        self.cpu_scale = cpu_scale
        self.time_limit = time_limit
        self.cpu_limit = cpu_limit
        self.wall_limit = wall_limit
        self.preempt = preempt
        self.line_preemption: Any = None  # a labtests.sim.preempt.LinePreemption, if any
        self.runnable: list[Task] = []
        self.timers: list[tuple[float, int, Task, int]] = []
        self._timer_seq = 0
        self._next_ident = FIRST_FAKE_IDENT
        self.tasks: dict[Any, Task] = {}  # greenlet -> task, in creation order
        self.failure: SimFailure | None = None
        self._failed_at: tuple[float, float, float] | None = None  # (virtual, CPU, wall) at failure
        self._escalated = False
        self.suspects: list[tuple[float, list[tuple[Task, int]]]] = []  # lock cycles
        self.dying = False
        self.interrupt: BaseException | None = None  # see post_interrupt
        self._posted_failure: SimFailure | None = None  # see post_failure
        self.switches = 0
        self._judged_at = 0  # self.switches when CPU and wall time were last judged
        self._wall0 = _real_monotonic()
        self._cpu_mark = self._cpu0 = _real_thread_time()
        self._delay0 = runqueue.run_delay_s() if cpu_limit is not None else None
        self.os_ident = interp.os_thread_ident()
        main_glet = getcurrent()
        self.main = Task(threading.current_thread(), main_glet, self.os_ident, 0)
        self.main.state = RUNNING
        self.tasks[main_glet] = self.main
        self.current = self.main
        self.hub = greenlet(self._hub_loop, parent=main_glet)

    # -- threads ---------------------------------------------------------------

    def spawn(self, thread: Any, body: Callable[[Task], None]) -> Task:
        """Make ``thread`` a runnable simulated thread that will run ``body(task)``."""
        if self.dying:
            raise SimUnsupported(f"thread {thread.name!r} started while the simulation ends")
        ident = self._next_ident
        self._next_ident += 1
        glet = greenlet(lambda: body(task), parent=self.hub)
        task = Task(thread, glet, ident, len(self.tasks))
        self.tasks[glet] = task
        self.runnable.append(task)
        if self.preempt and self.rng.random() < self.preempt:
            self.yield_now()
        return task

    def finish_task(self, task: Task) -> None:
        """Called by a thread's body as it ends: wake its joiners, forget it."""
        task.state = DONE
        for joiner in task.joiners:
            self.wake(joiner)
        task.joiners.clear()
        self.tasks.pop(task.glet, None)

    def live_tasks(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.state != DONE]

    # -- blocking and waking -----------------------------------------------------

    def block(self, kind: str, obj: Any, timeout: float | None = None) -> bool:
        """Block the current thread until :meth:`wake` or ``timeout`` virtual seconds.

        Returns False if it ended by the timeout.  ``kind`` and ``obj`` say what it
        waits for (for the deadlock report).
        """
        __tracebackhide__ = True  # pytest: show the caller, not the scheduler
        cur = self.current
        if self.dying and cur is not self.main:
            raise GreenletExit()
        cur.state = BLOCKED
        cur.wait_kind = kind
        cur.waiting = obj
        cur.token += 1
        cur.timed_out = False
        cur.reads = 0
        cur.untimed = timeout is None
        if timeout is not None:
            heapq.heappush(
                self.timers, (self.now + max(timeout, 0.0), self._timer_seq, cur, cur.token)
            )
            self._timer_seq += 1
        elif kind == "lock" and self.failure is None:
            self._suspect_lock_cycle(cur, obj)
        try:
            self._run_next(cur)
            if cur.pending is not None:
                exc, cur.pending = cur.pending, None
                raise exc
        except BaseException:
            if cur.state == BLOCKED:
                cur.token += 1
            cur.state = RUNNING
            cur.waiting = None
            self.current = cur
            raise
        cur.waiting = None
        return not cur.timed_out

    def _suspect_lock_cycle(self, me: Task, lock: Any) -> None:
        """Note a cycle of threads each waiting (untimed) for a lock the next one holds.

        It is confirmed as a deadlock if none of them has moved
        :data:`CYCLE_CONFIRM` virtual seconds later (a plain Lock may legally be
        released by another thread, so a cycle through one is not proof at once).
        """
        cycle = [me]
        holder = getattr(lock, "_owner", None)
        while isinstance(holder, Task) and len(cycle) <= len(self.tasks):
            if holder is me:
                self.suspects.append((self.now + CYCLE_CONFIRM, [(t, t.token) for t in cycle]))
                return
            if holder.state != BLOCKED or holder.wait_kind != "lock" or not holder.untimed:
                return
            cycle.append(holder)
            holder = getattr(holder.waiting, "_owner", None)

    def _check_suspects(self) -> None:
        keep = []
        for deadline, members in self.suspects:
            if any(t.state != BLOCKED or t.token != token for t, token in members):
                continue  # one of them moved: not a deadlock
            if self.now >= deadline and self.failure is None:
                names = " -> ".join(repr(t.name) for t, _ in [*members, members[0]])
                self._post_failure(SimDeadlock(self.report(
                    f"deadlock: threads {names} each wait for a lock the next one holds")))
            else:
                keep.append((deadline, members))
        self.suspects = keep if self.failure is None else []

    def wake(self, task: Task) -> None:
        """Make a blocked task runnable (a no-op for one that is not blocked)."""
        if task.state == BLOCKED:
            task.state = RUNNABLE
            task.token += 1
            self.runnable.append(task)

    def yield_now(self) -> None:
        """Let the scheduler pick again; the current thread stays runnable."""
        __tracebackhide__ = True
        cur = self.current
        if self.dying and cur is not self.main:
            return
        cur.state = RUNNABLE
        cur.reads = 0
        self.runnable.append(cur)
        self._run_next(cur)
        if cur.pending is not None:
            exc, cur.pending = cur.pending, None
            raise exc

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            self.yield_now()
        else:
            self.block("sleep", None, seconds)

    def poll(self) -> None:
        """The current thread did a non-blocking poll: the spin guard (module docstring)."""
        __tracebackhide__ = True
        cur = self.current
        cur.reads += 1
        if cur.reads > SPIN_READS and not self.dying:
            self.block("sleep", None, SPIN_STEP)  # a switch: the count starts again

    def read_clock(self) -> float:
        """The virtual time; a read counts as a poll."""
        self.poll()
        return self.now

    # -- picking the next thread -----------------------------------------------

    def _charge_cpu(self) -> None:
        now_cpu = _real_thread_time()
        if self.cpu_scale:
            self.now += (now_cpu - self._cpu_mark) * self.cpu_scale
        self._cpu_mark = now_cpu

    def _fire_due(self, limit: float) -> bool:
        """Wake every valid timer due at or before ``limit``; True if any woke."""
        timers = self.timers
        woke = False
        while timers and timers[0][0] <= limit:
            _, _, task, token = heapq.heappop(timers)
            if task.state == BLOCKED and task.token == token:
                task.timed_out = True
                self.wake(task)
                woke = True
        return woke

    def _pick(self) -> Task | None:
        """The next task to run, advancing the clock if needed; None on deadlock."""
        if self.interrupt is not None or self._posted_failure is not None:
            self._deliver_posted()
        self.switches += 1
        self.now += self.step_cost
        if self.cpu_scale:
            self._charge_cpu()
        if self.timers and self.timers[0][0] <= self.now:
            self._fire_due(self.now)
        if self.switches % LIMIT_CHECK_STEPS == 0:
            self._check_limits()  # a run that never blocks still ends at its limits
        runnable = self.runnable
        if self.main.pending is not None and self.main.state == RUNNABLE:
            runnable.remove(self.main)
            return self.main
        while not runnable:
            timers = self.timers
            while timers and (timers[0][2].state != BLOCKED or timers[0][2].token != timers[0][3]):
                heapq.heappop(timers)
            if not timers:
                return None
            deadline = timers[0][0]
            if deadline > self.now:
                self.now = deadline
            self._fire_due(deadline)
            if self.suspects:
                self._check_suspects()
            self._check_limits()
            if self.main.pending is not None and self.main.state == RUNNABLE:
                runnable.remove(self.main)
                return self.main
        n = len(runnable)
        i = self.rng.randrange(n) if n > 1 else 0
        task = runnable[i]
        runnable[i] = runnable[-1]
        runnable.pop()
        return task

    def cpu_used(self) -> float:
        """CPU seconds this simulation's OS thread has used since activation."""
        return _real_thread_time() - self._cpu0

    def wall_used(self) -> float:
        """Real seconds since activation."""
        return _real_monotonic() - self._wall0

    def blocked_outside(self, wall: float, cpu: float) -> float | None:
        """Real seconds the run was blocked outside the simulation (None if unknown).

        Wall time minus CPU time minus the time the thread waited for a CPU.
        """
        if self._delay0 is None:
            return None
        delay = runqueue.run_delay_s()
        if delay is None:
            return None
        return max(0.0, wall - cpu - (delay - self._delay0))

    def _check_limits(self) -> None:
        if self.dying:
            return
        if self.failure is not None:
            self._check_cleanup()
            return
        if self.time_limit is not None and self.now > self.time_limit:
            self._post_failure(SimTimeLimit(self.report(
                f"virtual time limit of {self.time_limit:.0f} s exceeded")))
            return
        if self.switches - self._judged_at < JUDGE_EVERY_STEPS:
            return  # reading the CPU clock is a system call: not at every clock jump
        self._judged_at = self.switches
        verdict = self._judge(cheap=True)
        if verdict is not None:
            self._post_failure(verdict)

    def overrun(self) -> SimFailure | None:
        """The verdict on a run a wall-clock watchdog interrupted; None while it is
        within its CPU budget and before the wall-clock backstop (let it go on).

        Meant for a watchdog's signal handler (the pytest plugin routes
        pytest-timeout's alarm here), which the scheduler's own checks cannot
        replace when the run never reaches the scheduler: a loop that polls
        nothing the simulation sees, or a real blocking call.
        """
        if self.cpu_limit is None and self.wall_limit is None:
            return SimTimeLimit(self.report("the per-test watchdog fired (no limits to judge by)"))
        return self._judge(cheap=False)

    def _judge(self, *, cheap: bool) -> SimFailure | None:
        """CPU budget, time blocked outside the simulation, wall-clock backstop."""
        wall, cpu = self.wall_used(), self.cpu_used()
        limit = self.cpu_limit
        if limit is not None and cpu > limit:
            return SimTimeLimit(self.report(
                f"CPU-time limit of {limit:g} s exceeded: the simulated run used "
                f"{cpu:.1f} s of CPU and reached only {self.now:.1f} s of virtual time "
                "(a livelock, or far too much work per step)"))
        if limit is not None and (wall - cpu > limit or not cheap):  # reads /proc
            blocked = self.blocked_outside(wall, cpu)
            if blocked is not None and blocked > limit:
                return SimTimeLimit(self.report(
                    f"CPU-time limit of {limit:g} s exceeded by time blocked outside the "
                    f"simulation: {blocked:.1f} s in real calls it does not see (a real "
                    "sleep or wait bound before the run, e.g. `from time import sleep`; "
                    "blocking I/O)"))
        if self.wall_limit is not None and wall > self.wall_limit:
            detail = f"the simulated run got {cpu:.1f} s of CPU in {wall:.0f} s of wall time"
            return SimOverloaded(self.report(
                f"wall-clock backstop of {self.wall_limit:g} s exceeded before the "
                f"CPU-time limit: {detail}; rerun on a quieter machine"), detail)
        return None

    def _check_cleanup(self) -> None:
        """After a failure the test still cleans up; if that never ends, stop it too.

        The main thread gets the failure again (once) when :data:`CLEANUP_GRACE`
        seconds have passed since the first one, on the virtual clock or in CPU
        time (or the wall-clock backstop, if any, has passed again), so a cleanup
        that spins or waits forever cannot make the run hang, and a slow machine
        alone cannot escalate it.
        """
        if self._escalated or self._failed_at is None:
            return
        virtual0, cpu0, wall0 = self._failed_at
        late = (self.now - virtual0 > CLEANUP_GRACE
                or _real_thread_time() - cpu0 > CLEANUP_GRACE
                or (self.wall_limit is not None
                    and _real_monotonic() - wall0 > self.wall_limit))
        if late:
            self._escalated = True
            self._post_failure(SimTimeLimit(self.report(
                f"the test did not end within {CLEANUP_GRACE:.0f} s after it failed "
                "(its cleanup waits or spins)")))

    # A signal handler may run between any two bytecodes of the scheduler's own code
    # (it runs in whichever simulated thread is running), so what it posts is only noted
    # here: the run queue changes at the next switch, before the next pick.  (Woken from
    # the handler, the main thread could be lost from the run queue in the middle of
    # _pick's swap-and-pop.)

    def post_failure(self, exc: SimFailure) -> None:
        """Fail the run from a signal handler (the watchdog's alarm): the main thread
        raises ``exc`` once the running thread next switches, unless the handler raises
        it there itself (:meth:`failure_raised`); the first failure stays the run's."""
        self._record_failure(exc)
        self._posted_failure = exc

    def failure_raised(self) -> None:
        """The handler raises the failure in the main thread itself: nothing to deliver."""
        self._posted_failure = None
        self.main.pending = None

    def post_interrupt(self, exc: BaseException) -> None:
        """Have the main thread raise ``exc`` (a Ctrl-C's ``KeyboardInterrupt``) once the
        running thread next switches; a failure pending there goes first."""
        self.interrupt = exc

    def _deliver_posted(self) -> None:
        failure, self._posted_failure = self._posted_failure, None
        if failure is not None:
            self.main.pending = failure
            self.wake(self.main)
        interrupt, self.interrupt = self.interrupt, None
        if interrupt is not None and self.main.pending is None:
            self.main.pending = interrupt
            self.wake(self.main)

    def _record_failure(self, exc: SimFailure) -> None:
        if self.failure is None:
            self.failure = exc
            self._failed_at = (self.now, _real_thread_time(), _real_monotonic())

    def _post_failure(self, exc: SimFailure) -> None:
        """Have the main thread raise ``exc`` as soon as it resumes (it runs next)."""
        self._record_failure(exc)
        self.main.pending = exc
        self.wake(self.main)

    def _run_next(self, cur: Task) -> None:
        """Switch from ``cur`` (already marked blocked or runnable) to the next task."""
        nxt = self._pick_or_deadlock()
        nxt.state = RUNNING
        if nxt is cur:
            return
        self.current = nxt
        nxt.glet.switch()

    def _pick_or_deadlock(self) -> Task:
        nxt = self._pick()
        if nxt is not None:
            return nxt
        if self.failure is None:
            exc: SimFailure = SimDeadlock(self.report(
                "deadlock: every thread is blocked and no timer is pending"))
        else:
            exc = SimDeadlock(self.report(
                "still deadlocked after the failure reported above", stacks=False))
        self._post_failure(exc)
        if self.main.state != RUNNABLE:  # cannot happen: main is blocked when all are
            raise exc
        self.runnable.remove(self.main)
        return self.main

    def _hub_loop(self, *_ignored: object) -> None:
        """Resumed whenever a simulated thread's greenlet ends: run the next one."""
        while True:
            nxt = self._pick_or_deadlock()
            nxt.state = RUNNING
            self.current = nxt
            nxt.glet.switch()

    # -- the end -------------------------------------------------------------------

    def shutdown(self) -> list[str]:
        """Kill every simulated thread still alive (GreenletExit); return their names."""
        self.dying = True
        killed = []
        me = getcurrent()
        for task in list(self.tasks.values()):
            if task is self.main or task.state == DONE:
                continue
            killed.append(task.name)
            glet = task.glet
            if glet:  # started and not dead
                glet.parent = me
                self.current = task
                task.state = RUNNING
                try:
                    glet.throw(GreenletExit())
                except GreenletExit:
                    pass
                self.current = self.main
            if task.state != DONE:
                self.finish_task(task)
                interp.mark_stopped(task.thread)
        self.runnable.clear()
        self.timers.clear()
        if self.hub:
            self.hub.throw(GreenletExit())
        return killed

    # -- reports -------------------------------------------------------------------

    def report(self, headline: str, stacks: bool = True) -> str:
        return format_report(self, headline, stacks=stacks)

