"""Samples every peer's ``get_state()`` and RPC count at a modest interval, for the timeline.

The tester's own checks call ``get_state()`` only now and then; a lane that
shows role and term over time needs regular samples.  The sampler is a harness
thread that wakes every :data:`SAMPLE_INTERVAL_S` of the clock in use (virtual
under ``--sim``) and asks each live peer for its state, plus the network for
each peer's RPC count.

It must never block the harness or change a verdict:

* A *worker* thread calls the in-process peers' ``get_state()`` one after the
  other; the sampler waits for it at most :data:`PROBE_WAIT_S`.  A peer whose
  call does not return (a deadlocked Raft) is recorded as ``unresponsive``, the
  worker is left with it, and a new worker asks the other peers from the next
  round on; the peer is asked again once its call returns.  Exceptions are
  swallowed: the tester's own calls report them.
* An isolated peer (``--isolate``) is asked through its proxy's asynchronous
  request slot, never through the proxy's ``get_state()``, whose missed
  deadline would fail the test.
* At the end (:meth:`StateSampler.stop`, first thing in the config's cleanup)
  idle workers exit; a worker stuck in a Raft's ``get_state()`` is handed to
  :func:`labtests.watchdog.abandon`, so the leak check blames the Raft's own
  threads, not the sampler.
* Under ``--sim`` the sampler is one simulated thread that calls
  ``get_state()`` itself (no worker: a blocked simulated thread costs nothing
  and never hangs the run).  If a call blocks for good (a deadlocked peer), the
  sampler blocks with it, untimed, so the simulation's deadlock report is the
  one it would have made without the sampler; the bundle then marks that peer
  unresponsive from the moment of the call.  When nothing else could ever run
  again (every other thread blocked with no timer pending) the sampler stops
  instead of keeping the clock alive.  The sampler's steps are part of the
  simulated run: one seed still gives one run, byte for byte.
"""

from __future__ import annotations

import _thread
import queue
import sys
import threading
import time
from typing import Any

from labtests import watchdog
from labtests.timeline.recorder import Recorder

SAMPLE_INTERVAL_S = 0.1
PROBE_WAIT_S = 0.05  # per round, for all peers together


class _Worker:
    """A thread that calls ``get_state()`` of a batch of peers, one after the other.

    One worker for all peers keeps a round to three thread wake-ups (the sampler's
    timer, the worker, the sampler again), whatever the number of peers.
    """

    def __init__(self, number: int) -> None:
        self.requests: queue.Queue[list[tuple[int, Any]] | None] = queue.Queue()
        self.results: list[tuple[int, Any, Any]] = []  # (peer, instance, answer or None)
        self.current: tuple[int, Any] | None = None  # the call under way
        self.done = threading.Event()
        self.done.set()
        self.cpu_s = 0.0  # CPU time this thread used (set when it ends)
        self.thread = threading.Thread(target=self._run, name=f"raftlab-timeline-probe-{number}",
                                       daemon=True)
        self.thread.start()

    def ask(self, batch: list[tuple[int, Any]]) -> None:
        self.results = []
        self.done.clear()
        self.requests.put(batch)

    def end(self) -> None:
        self.requests.put(None)

    def _run(self) -> None:
        cpu0 = time.thread_time()
        try:
            self._serve()
        finally:
            self.cpu_s = time.thread_time() - cpu0

    def _serve(self) -> None:
        while (batch := self.requests.get()) is not None:
            for peer, rf in batch:
                self.current = (peer, rf)
                try:
                    term, leader = rf.get_state()
                    answer: Any = (term, leader)
                except BaseException:  # noqa: BLE001 - the tester's own calls report it
                    answer = None
                self.current = None
                self.results.append((peer, rf, answer))
            self.done.set()


class _SlotProbe:
    """An isolated peer's pending get_state request (labtests.isolation proxy slot)."""

    def __init__(self, peer: int, rf: Any) -> None:
        self.peer = peer
        self.rf = rf
        self.slot: Any = None

    @property
    def busy(self) -> bool:
        return self.slot is not None and not self.slot.event.is_set()


class StateSampler:
    """The sampling thread of one Config (see the module docstring)."""

    def __init__(self, cfg: Any, recorder: Recorder, *, isolated: bool, test: str = "",
                 interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.cfg = cfg
        self.rec = recorder
        self.isolated = isolated
        self.direct = _in_simulation()  # simulated: call get_state() in this thread
        self.pending: tuple[int, float] | None = None  # (peer, t) of a direct call under way
        self.test = test
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._probes: dict[int, Any] = {}  # isolated: peer -> its current instance's probe
        self._worker: _Worker | None = None
        self._workers = 0
        self._lost: dict[int, _Worker] = {}  # peer -> the worker stuck in its get_state()
        self._all_workers: list[_Worker] = []
        self._cpu_s = 0.0
        self._last: dict[int, tuple[Any, ...]] = {}
        self._counts: list[int] = [0] * cfg.n
        self._count_owner: list[Any] = [None] * cfg.n
        self.rounds = 0
        self.thread = threading.Thread(target=self._run, name="raftlab-timeline-sampler",
                                       daemon=True)

    def start(self) -> StateSampler:
        self.thread.start()
        return self

    # -- the loop ------------------------------------------------------------------------

    @property
    def cpu_s(self) -> float:
        """CPU time the sampler and its workers used (of those that have ended)."""
        return self._cpu_s + sum(w.cpu_s for w in self._all_workers)

    def _run(self) -> None:
        cpu0 = time.thread_time()
        try:
            self._loop()
        finally:
            self._cpu_s = time.thread_time() - cpu0

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                if _simulation_idle():
                    self.rec.add("note", None, msg="state sampling stopped: every other "
                                 "simulated thread is blocked with no timer pending")
                    return
                self.sample()
        except BaseException as exc:  # noqa: BLE001 - the timeline must never fail a test
            self.rec.add("note", None, msg=f"state sampling stopped: {exc!r}")

    def sample(self) -> None:
        """One round: ask every live peer, wait briefly, record answers and RPC counts."""
        self.rounds += 1
        rafts = list(self.cfg.rafts)
        if self.direct:
            for i, rf in enumerate(rafts):
                if rf is not None:
                    self._call_direct(i, rf)
        elif self.isolated:
            self._ask_slots(rafts)
        else:
            self._ask_worker(rafts)
        self._sample_counts()

    def _ask_worker(self, rafts: list[Any]) -> None:
        """In-process peers: one worker asks them all; one that blocks is left to it."""
        self._reap_lost()
        batch = [(i, rf) for i, rf in enumerate(rafts) if rf is not None and i not in self._lost]
        if not batch:
            return
        worker = self._worker
        if worker is None:
            self._workers += 1
            worker = self._worker = _Worker(self._workers)
            self._all_workers.append(worker)
        worker.ask(batch)
        finished = worker.done.wait(PROBE_WAIT_S)
        for peer, rf, answer in list(worker.results):
            if answer is not None:
                self._record(peer, rf, answer)
        current = worker.current
        if finished or current is None:
            return
        peer, rf = current  # stuck there (or slow): its peer is unresponsive for now
        self._lost[peer] = worker
        self._worker = None  # the next round gets a new worker
        if self.cfg.rafts[peer] is rf:
            self._record_stuck(peer)

    def _reap_lost(self) -> None:
        """A stuck worker that finished after all: its answers count, its peer is asked again."""
        for peer, worker in list(self._lost.items()):
            if not worker.done.is_set():
                continue
            del self._lost[peer]
            worker.end()
            for answered, rf, answer in list(worker.results):
                if answer is not None:
                    self._record(answered, rf, answer)

    def _call_direct(self, i: int, rf: Any) -> None:
        self.pending = (i, self.rec.now())
        try:
            answer = rf.get_state()
        except Exception:  # noqa: BLE001 - the tester's own calls report it
            return
        finally:
            self.pending = None
        if isinstance(answer, tuple | list) and len(answer) == 2:
            self._record(i, rf, tuple(answer))

    def mark_stuck(self) -> None:
        """A direct call that never returned: its peer is unresponsive since the call."""
        pending = self.pending
        if pending is not None:
            peer, t = pending
            self.rec.add_at(t, "state", peer, term=None, role="unresponsive", src="sample")

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
        deadline = time.monotonic() + PROBE_WAIT_S
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
                self._record_stuck(probe.peer)

    def _record(self, peer: int, rf: Any, answer: tuple[Any, ...]) -> None:
        if self.cfg.rafts[peer] is not rf:
            return  # crashed meanwhile: the crash event says so
        key = (id(rf), answer[0], answer[1] is True)  # a restarted instance is recorded anew
        if self._last.get(peer) != key:  # only changes: a steady state costs nothing
            self._last[peer] = key
            self.rec.state(peer, answer[0], answer[1], "sample")

    def _record_stuck(self, peer: int) -> None:
        if self._last.get(peer) != ("unresponsive",):
            self._last[peer] = ("unresponsive",)
            self.rec.unresponsive(peer)

    def _sample_counts(self) -> None:
        """RPCs delivered to each live peer since the last round (``net.get_count``).

        A restarted peer is a new server whose count starts again at 0.
        """
        net = self.cfg.net
        rafts = list(self.cfg.rafts)
        for i, rf in enumerate(rafts):
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

    # -- the end ---------------------------------------------------------------------------

    def stop(self, join_s: float = 1.0) -> list[str]:
        """Stop sampling and end the probers; abandon those stuck in a Raft; their names."""
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(0.0 if self.pending is not None else join_s)
        self.mark_stuck()
        workers = [w for w in (self._worker, *self._lost.values()) if w is not None]
        for worker in workers:
            worker.end()
        stuck = []
        for worker in workers:
            worker.thread.join(0.2 if worker.current is None else 0.0)
            if worker.thread.is_alive():
                stuck.append(worker.thread)
        if self.thread.is_alive():
            stuck.append(self.thread)
        return watchdog.abandon(stuck, self.test or "the timeline sampler")


def _simulation() -> Any:
    """The active simulation's scheduler if the caller runs inside it, else None.

    The engine's state is read through ``sys.modules``: if the simulation was never
    imported, none runs; importing it here would close an import cycle through the
    simulation's pytest plugin (which imports the harness).
    """
    state = sys.modules.get("labtests.sim.state")
    sched = getattr(state, "SCHED", None)
    if sched is None or _thread.get_ident() != sched.os_ident:  # _thread: never patched
        return None
    return sched


def _in_simulation() -> bool:
    return _simulation() is not None


def _simulation_idle() -> bool:
    """Under --sim: is every other simulated thread blocked with no timer pending?"""
    sched = _simulation()
    if sched is None or sched.runnable:
        return False
    me = sched.current
    for _deadline, _seq, task, token in sched.timers:
        if task is not me and task.state == "blocked" and task.token == token:
            return False
    return True
