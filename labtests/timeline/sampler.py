"""Samples every peer's ``get_state()`` and RPC count at a modest interval, for the timeline.

The tester's own checks call ``get_state()`` only now and then; a lane that
shows role and term over time needs regular samples.  The sampler is a harness
thread that wakes every :data:`SAMPLE_INTERVAL_S` of the clock in use (virtual
under ``--sim``), asks each live peer for its state and reads each peer's RPC
count from the network.

It must never block the harness or change a verdict, and it must be cheap: a
2A test uses a fraction of a second of CPU, and one wake-up of a Python thread
costs about 70 µs here.  So it samples every :data:`SAMPLE_INTERVAL_S` while
something changes (a crash, a restart, a partition, a network mode, a role or a
term, from the tester's events or its own samples) and every
:data:`QUIET_INTERVAL_S` after :data:`QUIET_ROUNDS` rounds in which nothing did;
a change the tester makes wakes it at once (the recorder's ``on_change``).

* In real time the sampling thread calls the in-process peers' ``get_state()``
  itself, one after the other: one wake-up per round, no hand-off to another
  thread.  A *supervisor* looks every :data:`SUPERVISE_S` (sooner after
  it found one) for a call that has run longer than :data:`STUCK_AFTER_S`: that
  peer (a deadlocked Raft) is recorded as ``unresponsive`` from the moment of
  the call, left out of later rounds, and a fresh sampling thread takes over
  the others.  If the stuck call returns after all, its answer is recorded,
  the peer is asked again, and the old thread ends.  The supervisor is not a
  thread of its own but a job of the process's one harness thread
  (:mod:`labtests.ticker`, shared with the timer-lag probe): it never blocks.
  Exceptions are swallowed:
  the tester's own calls report them.
* An isolated peer (``--isolate``) is asked through its proxy's asynchronous
  request slot, waited for at most :data:`STUCK_AFTER_S`, never through the
  proxy's ``get_state()``, whose missed deadline would fail the test.
* At the end (:meth:`StateSampler.stop`, first thing in the config's cleanup)
  the threads end; one stuck in a Raft's ``get_state()`` is handed to
  :func:`labtests.watchdog.abandon`, so the leak check blames the Raft's own
  threads, not the sampler.
* Under ``--sim`` there is one simulated sampling thread and no supervisor (a
  blocked simulated thread never hangs the run).  If a call blocks for good, the
  sampler blocks with it, untimed, so the simulation's deadlock report is the
  one it would have made without the sampler; the bundle then marks that peer
  unresponsive from the moment of the call.  When nothing else could ever run
  again (every other thread blocked with no timer pending) the sampler stops
  instead of keeping the clock alive.  The sampler's steps are part of the
  simulated run: one seed still gives one run, byte for byte.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from labtests import ticker, watchdog
from labtests.timeline import simstate
from labtests.timeline.recorder import Recorder

SAMPLE_INTERVAL_S = 0.1  # while something changes: a fault, a role or a term...
QUIET_INTERVAL_S = 1.0  # ...and after QUIET_ROUNDS rounds in which nothing did
QUIET_ROUNDS = 2
STUCK_AFTER_S = 0.05  # a get_state() running longer than this is "unresponsive"
SUPERVISE_S = 1.0  # how often the supervisor looks for a stuck call...
SUPERVISE_AFTER_STUCK_S = 0.1  # ...and how soon again after it found one


class _SlotProbe:
    """An isolated peer's pending get_state request (labtests.isolation proxy slot)."""

    def __init__(self, peer: int, rf: Any) -> None:
        self.peer = peer
        self.rf = rf
        self.slot: Any = None

    @property
    def busy(self) -> bool:
        return self.slot is not None and not self.slot.event.is_set()


class _Call:
    """A get_state() call under way: which sampling thread, which peer, since when."""

    __slots__ = ("peer", "rf", "since", "t")

    def __init__(self, peer: int, rf: Any, t: float) -> None:
        self.peer, self.rf, self.t = peer, rf, t
        self.since = time.monotonic()


class StateSampler:
    """The sampling threads of one Config (see the module docstring)."""

    def __init__(self, cfg: Any, recorder: Recorder, *, isolated: bool, test: str = "",
                 interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.cfg = cfg
        self.rec = recorder
        self.isolated = isolated
        self.test = test
        self.interval_s = interval_s
        self.direct_sim = simstate.scheduler() is not None
        self._stop = threading.Event()
        # Released (once) by stop() and by the tester's changes; a held Lock waited on with
        # a timeout is the cheapest wake-up Python has (an Event's wait costs ~25 % more).
        self._wake = threading.Lock()
        self._wake.acquire()
        self._generation = 0  # the sampling thread that currently counts
        self._threads: dict[int, threading.Thread] = {}  # generation -> sampling thread
        self._calls: dict[int, _Call] = {}  # generation -> its call under way
        self._stuck: dict[int, int] = {}  # peer -> generation of the thread stuck in it
        self._probes: dict[int, _SlotProbe] = {}
        self._last: dict[int, tuple[Any, ...]] = {}
        self._counts: list[int] = [0] * cfg.n
        self._count_owner: list[Any] = [None] * cfg.n
        self._cpu: dict[int, float] = {}  # generation -> CPU time of that thread
        self.supervisor: ticker.Job | None = None  # a job of the process's harness thread
        self.rounds = 0

    def start(self) -> StateSampler:
        self.rec.on_change = self._signal
        self._spawn()
        if not self.direct_sim and not self.isolated:
            self.supervisor = ticker.TICKER.at(time.monotonic() + SUPERVISE_S, self._supervise,
                                               name="timeline-supervisor")
        return self

    @property
    def cpu_s(self) -> float:
        """CPU time the sampling threads used (of those that have ended)."""
        return sum(self._cpu.values())

    def _signal(self) -> None:
        """Wake the sampling thread (at most one pending wake-up)."""
        try:
            self._wake.release()
        except RuntimeError:
            pass  # already released: a wake-up is pending

    # -- sampling ------------------------------------------------------------------------

    def _spawn(self) -> None:
        self._generation += 1
        generation = self._generation
        thread = threading.Thread(target=self._run, args=(generation,), daemon=True,
                                  name=f"raftlab-timeline-sampler-{generation}")
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": the machine is out of pids
            self.rec.add("note", None, msg=f"state sampling stopped: {exc!r}")
            return
        # Registered once started: stop() (on another thread) joins only started threads.
        self._threads[generation] = thread

    def _run(self, generation: int) -> None:
        cpu0 = time.thread_time()
        quiet, seen = 0, -1
        try:
            while generation == self._generation:
                slow = quiet >= QUIET_ROUNDS and self.interval_s == SAMPLE_INTERVAL_S
                if self._wake.acquire(timeout=QUIET_INTERVAL_S if slow else self.interval_s):
                    quiet = 0  # woken: the lock is held again, ready for the next wait
                if self._stop.is_set() or generation != self._generation:
                    return
                if simstate.idle():
                    self.rec.add("note", None, msg="state sampling stopped: every other "
                                 "simulated thread is blocked with no timer pending")
                    return
                self.sample(generation)
                changes = self.rec.changes
                quiet = quiet + 1 if changes == seen else 0
                seen = changes
        except BaseException as exc:  # noqa: BLE001 - the timeline must never fail a test
            self.rec.add("note", None, msg=f"state sampling stopped: {exc!r}")
        finally:
            self._cpu[generation] = time.thread_time() - cpu0

    def sample(self, generation: int = 0) -> None:
        """One round: ask every live peer, record the answers and the RPC counts."""
        self.rounds += 1
        rafts = list(self.cfg.rafts)
        if self.isolated:
            self._ask_slots(rafts)
        else:
            for i, rf in enumerate(rafts):
                if rf is not None and i not in self._stuck:
                    if not self._call(generation, i, rf):
                        return  # this thread was replaced while it waited
        self._sample_counts()
        self.rec.expire_campaigns()

    def _call(self, generation: int, peer: int, rf: Any) -> bool:
        """Call one peer's get_state(); False if this thread was replaced meanwhile."""
        self._calls[generation] = _Call(peer, rf, self.rec.now())
        try:
            answer = rf.get_state()
        except Exception:  # noqa: BLE001 - the tester's own calls report it
            answer = None
        finally:
            self._calls.pop(generation, None)
        if isinstance(answer, tuple | list) and len(answer) == 2:
            self._record(peer, rf, tuple(answer))
        if generation != self._generation and not self.direct_sim:
            self._unstick(peer, generation)  # it answered after all: ask it again
            return False
        return True

    def _ask_slots(self, rafts: list[Any]) -> None:
        """Isolated peers: a request slot each, waited for together."""
        for i, rf in enumerate(rafts):
            if rf is None:
                continue
            probe = self._probes.get(i)
            if probe is None or probe.rf is not rf:
                probe = self._probes[i] = _SlotProbe(i, rf)
            if not probe.busy:
                probe.slot = rf.request("get_state", ())
        deadline = time.monotonic() + STUCK_AFTER_S
        for probe in list(self._probes.values()):
            slot = probe.slot
            if slot is None:
                continue
            if slot.event.wait(max(0.0, deadline - time.monotonic())):
                probe.slot = None
                if slot.kind == "ok" and isinstance(slot.value, tuple | list) \
                        and len(slot.value) == 2:
                    self._record(probe.peer, probe.rf, tuple(slot.value))
            elif self.cfg.rafts[probe.peer] is probe.rf:
                self._record_stuck(probe.peer, None)

    def _record(self, peer: int, rf: Any, answer: tuple[Any, ...]) -> None:
        if self.cfg.rafts[peer] is not rf:
            return  # crashed meanwhile: the crash event says so
        key = (id(rf), answer[0], answer[1] is True)  # a restarted instance is recorded anew
        if self._last.get(peer) != key:  # only changes: a steady state costs nothing
            self._last[peer] = key
            self.rec.state(peer, answer[0], answer[1], "sample")

    def _record_stuck(self, peer: int, t: float | None) -> None:
        if self._last.get(peer) != ("unresponsive",):
            self._last[peer] = ("unresponsive",)
            self.rec.unresponsive(peer, t)

    def _sample_counts(self) -> None:
        """RPCs delivered to each live peer since the last round (``net.get_count``).

        A restarted peer is a new server whose count starts again at 0.
        """
        net = self.cfg.net
        for i, rf in enumerate(list(self.cfg.rafts)):
            if rf is None:
                continue
            try:
                count = net.get_count(i)
            except LookupError:
                continue  # crashed between the two reads
            if self._count_owner[i] is not rf:
                self._count_owner[i] = rf
                self._counts[i] = 0
            delta = count - self._counts[i]
            if delta > 0:
                self._counts[i] = count
                self.rec.add("rpc", i, n=delta)

    # -- the supervisor (real time) --------------------------------------------------------

    def _supervise(self) -> float | None:
        """A job of the harness thread (never blocks): look, and say when to look again."""
        if self._stop.is_set():
            return None
        wait = SUPERVISE_AFTER_STUCK_S if self.check_stuck() else SUPERVISE_S
        return time.monotonic() + wait

    def check_stuck(self) -> bool:
        """Is the current sampling thread stuck in a call?  Then mark its peer and replace it."""
        call = self._calls.get(self._generation)
        if call is None or time.monotonic() - call.since < STUCK_AFTER_S:
            return False
        generation = self._generation
        self._stuck[call.peer] = generation
        if self.cfg.rafts[call.peer] is call.rf:
            self._record_stuck(call.peer, call.t)
        if not self._stop.is_set():
            self._spawn()
        if self._calls.get(generation) is not call:  # it returned meanwhile after all
            self._unstick(call.peer, generation)
        return True

    def _unstick(self, peer: int, generation: int) -> None:
        """The call of thread ``generation`` into ``peer`` returned: ask the peer again."""
        if self._stuck.get(peer) == generation:
            self._stuck.pop(peer, None)

    # -- the end ---------------------------------------------------------------------------

    def stop(self, join_s: float = 1.0) -> list[str]:
        """Stop sampling; abandon the threads stuck in a Raft; their names."""
        self.rec.on_change = None
        self._stop.set()
        self._signal()
        me = threading.current_thread()
        if self.supervisor is not None:
            ticker.TICKER.cancel(self.supervisor)  # returns once a check under way has ended
        for call in list(self._calls.values()):  # stuck right now: say since when
            if self.cfg.rafts[call.peer] is call.rf:
                self._record_stuck(call.peer, call.t)
        stuck = []
        for generation, thread in list(self._threads.items()):  # the supervisor may add
            if thread is me or thread.ident is None:
                continue
            thread.join(0.0 if generation in self._calls else join_s)
            if thread.is_alive():
                stuck.append(thread)
        return watchdog.abandon(stuck, self.test or "the timeline sampler")
