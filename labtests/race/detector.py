"""The happens-before race detector: vector clocks, shadow state, and the check.

Why vector clocks (and not a lockset alone): the lab allows synchronisation
other than locks -- an event, a queue, starting and joining a thread -- and an
unlocked access ordered by one of those is not a race.  Each thread carries a
vector clock; a release-like operation (releasing a lock, setting an event,
putting on a queue, starting a thread) publishes the thread's clock on the
object and advances its own entry; an acquire-like one (acquiring the lock,
an event seen set, a get, a join) merges the object's clock into the thread's.
Access ``a`` by thread ``u`` happens before the current access of thread
``t`` iff ``a``'s clock entry for ``u`` is at most ``t``'s view of ``u``.

Shadow state per field (an object and an attribute name): the last write and
the reads since it, each with thread, clock, locks held and a short stack.  A
write checks the last write and every read since; a read checks the last
write.  A pair not ordered either way, from two threads, one of them a write,
is a race; it is reported once per pair of source locations (like Go's
detector).  Objects are kept alive while the detector runs so an id is never
reused for a different object within one test.

Thread-safe in real time: one real lock (not a tracked one) guards the state.
In simulated time every simulated thread runs in one OS thread and none can be
switched out inside the detector (it blocks on nothing and has no preemption
points), so the hot entry points run without that lock.

Clocks are :mod:`labtests.race.clock` chunked lists (cheap copies and merges);
each thread also keeps its own entry as ``now``.
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from labtests.race import clock

SHIFT, MASK = clock.SHIFT, clock.MASK  # entry t of a clock: vc[t >> SHIFT][t & MASK]
STACK_DEPTH = 4  # frames kept per access (the report shows them)
MAX_RACES = 20  # distinct races kept per test; more are counted, not kept
_LOCKISH: dict[type, bool] = {}  # type -> is it a lock (held locks are listed per access)


@dataclass(frozen=True)
class Access:
    """One read or write: who, when (clock entry), where, holding what."""

    tid: int
    clock: int
    thread: str
    write: bool
    stack: tuple[tuple[str, int, str], ...]  # (file, line, function), innermost first
    locks: tuple[int, ...]

    @property
    def where(self) -> tuple[str, int]:
        return (self.stack[0][0], self.stack[0][1]) if self.stack else ("?", 0)


@dataclass(frozen=True)
class Race:
    """Two unordered accesses to one field, at least one a write."""

    field: str
    earlier: Access
    later: Access
    lock_names: dict[int, str]


class _ThreadState:
    __slots__ = ("tid", "name", "vc", "now", "held", "seen")

    def __init__(self, tid: int, name: str, vc: clock.Clock) -> None:
        self.tid = tid
        self.name = name
        self.vc = vc  # entry t: the last clock of thread t this thread has seen (0: none)
        self.now = 1  # its own entry (only this thread advances it)
        self.held: tuple[int, ...] = ()  # ids of the locks held, in acquisition order
        self.seen: dict[int, int] = {}  # id(sync object) -> the version of it merged last


class Detector:
    """Collects accesses and synchronisation of one test; ``races`` is the verdict.

    ``Detector(simulated=True)`` makes a :class:`_SimulatedDetector` (the same
    without the lock on the hot paths).
    """

    def __new__(cls, *, simulated: bool = False) -> Detector:
        if simulated and cls is Detector:
            cls = _SimulatedDetector
        return super().__new__(cls)

    def __init__(self, *, simulated: bool = False) -> None:
        self._simulated = simulated  # current_thread() is safe (patched) in --sim
        self._mu = _thread.allocate_lock()
        self._sched: Any = None  # the simulation's scheduler (see use_scheduler)
        self._threads: dict[int, _ThreadState] = {}  # thread ident -> state
        self._by_thread: dict[int, tuple[Any, _ThreadState]] = {}  # id(Thread) -> its state
        self._pending_start: dict[int, tuple[Any, dict[int, int]]] = {}
        self._syncs: dict[int, list[Any]] = {}  # id -> [obj, vector clock, version]
        self._shadow: dict[tuple[int, str], list[Any]] = {}  # -> [obj, write, {tid: read}]
        self._lock_names: dict[int, str] = {}
        self._next_tid = 1
        self._seen: set[tuple[str, tuple[str, int], tuple[str, int]]] = set()
        self.races: list[Race] = []
        self.dropped = 0
        self.accesses = 0

    # -- threads -------------------------------------------------------------------

    # Threads are known by ident (``threading.get_ident``, simulated threads' in
    # --sim), never by ``current_thread()``: in a thread that is starting, that
    # creates a dummy Thread, whose Event reports here again.  Nothing that can
    # synchronise is called while ``_mu`` is held.

    def use_scheduler(self, sched: Any) -> None:
        """--sim: every simulated thread runs in this one OS thread, so the
        current thread is ``sched.current`` (no call into the patched ``get_ident``)."""
        self._sched = sched

    def _ident(self) -> int:
        sched = self._sched
        return sched.current.ident if sched is not None else threading.get_ident()

    def _state(self) -> _ThreadState:
        sched = self._sched
        ident = sched.current.ident if sched is not None else threading.get_ident()
        ts = self._threads.get(ident)
        if ts is None:
            ts = self._new_state(ident, _thread_name(ident, self._simulated), [])
        return ts

    def _new_state(self, ident: int, name: str, vc: clock.Clock) -> _ThreadState:
        tid = self._next_tid
        self._next_tid += 1
        clock.set_entry(vc, tid, 1)
        ts = self._threads[ident] = _ThreadState(tid, name, vc)
        return ts

    def forked(self, child: Any) -> None:
        """The current thread is about to start ``child``: the child sees all it did."""
        with self._mu:
            ts = self._state()
            self._pending_start[id(child)] = (child, list(ts.vc))
            ts.now += 1
            clock.set_entry(ts.vc, ts.tid, ts.now)

    def begins(self, child: Any) -> None:
        """``child`` (started after :meth:`forked`) runs its first line in this thread."""
        ident = self._ident()
        name = getattr(child, "name", "?")
        with self._mu:
            start = self._pending_start.pop(id(child), None)
            vc = list(start[1]) if start is not None and start[0] is child else []
            ts = self._new_state(ident, name, vc)  # an ident reused by a new thread: new state
            self._by_thread[id(child)] = (child, ts)

    def joined(self, child: Any) -> None:
        """``child`` has ended and the current thread joined it."""
        with self._mu:
            ts = self._state()
            entry = self._by_thread.get(id(child))
            if entry is not None and entry[0] is child:
                clock.merge(ts.vc, entry[1].vc)

    # -- synchronisation ---------------------------------------------------------

    def released(self, obj: Any) -> None:
        with self._mu:
            self._released(obj)

    def _released(self, obj: Any) -> None:
        sched = self._sched
        ts = self._threads.get(sched.current.ident if sched is not None
                               else threading.get_ident()) or self._state()
        self._publish(ts, obj)
        lockish = _LOCKISH.get(type(obj))
        if lockish is None:
            lockish = _LOCKISH[type(obj)] = bool(getattr(obj, "_race_lock", False)
                                                 or _is_lock(obj))
        if lockish:
            held = ts.held
            if id(obj) in held:
                i = held.index(id(obj))
                ts.held = held[:i] + held[i + 1:]

    def acquired(self, obj: Any) -> None:
        with self._mu:
            self._acquired(obj)

    def _acquired(self, obj: Any) -> None:
        sched = self._sched
        ts = self._threads.get(sched.current.ident if sched is not None
                               else threading.get_ident()) or self._state()
        sync = self._syncs.get(id(obj))
        if sync is not None and sync[0] is obj and ts.seen.get(id(obj)) != sync[2]:
            clock.merge(ts.vc, sync[1])
            ts.seen[id(obj)] = sync[2]
        lockish = _LOCKISH.get(type(obj))
        if lockish is None:
            lockish = _LOCKISH[type(obj)] = bool(getattr(obj, "_race_lock", False)
                                                 or _is_lock(obj))
        if lockish:
            ts.held += (id(obj),)
            if id(obj) not in self._lock_names:
                self._lock_names[id(obj)] = _lock_name(obj)

    def _publish(self, ts: _ThreadState, obj: Any) -> None:
        sync = self._syncs.get(id(obj))
        if sync is None or sync[0] is not obj:
            sync = self._syncs[id(obj)] = [obj, [], 0]
        if ts.seen.get(id(obj)) == sync[2]:  # its clock is within ours (a lock, always)
            sync[1] = list(ts.vc)
            up_to_date = True
        else:
            clock.merge(sync[1], ts.vc)
            up_to_date = False
        sync[2] += 1
        if up_to_date:
            ts.seen[id(obj)] = sync[2]
        ts.now += 1
        clock.set_entry(ts.vc, ts.tid, ts.now)

    # -- accesses ----------------------------------------------------------------

    def access(self, obj: Any, name: str, write: bool, depth: int = 2,
               label: str | None = None) -> None:
        """Record a read or write of ``obj.name`` by the current thread and check it.

        ``label`` names the location in reports when it is not ``Class.name`` (a
        container's contents: ``Raft.log[...]``).  An access that can add nothing
        (the thread's own earlier access of the same kind since its last
        synchronisation, nobody else's in between: FastTrack's "same epoch") is
        counted and dropped before its stack is taken -- that is most of them.
        """
        with self._mu:
            self._access(obj, name, write, depth + 1, label)

    def _access(self, obj: Any, name: str, write: bool, depth: int = 2,
                label: str | None = None) -> None:
        self.accesses += 1
        sched = self._sched
        ts = self._threads.get(sched.current.ident if sched is not None
                               else threading.get_ident())
        if ts is None:
            ts = self._state()
        key = (id(obj), name)
        shadow = self._shadow.get(key)
        if shadow is None or shadow[0] is not obj:
            shadow = self._shadow[key] = [obj, None, {}, label]
        tid = ts.tid
        now = ts.now
        last = shadow[1]  # an _Rec tuple, see _ACCESS_FIELDS
        reads = shadow[2]
        if write:
            if (last is not None and last[0] == tid and last[1] == now
                    and (not reads or (len(reads) == 1 and tid in reads))):
                return
        else:
            mine = reads.get(tid)
            if mine is not None and mine[1] == now:
                return
        # the stack, as (code, instruction offset) pairs of up to STACK_DEPTH
        # frames: rendered (file, line, function) only if a race is reported
        # (_report; a frame's line is computed from its offset, so it costs
        # nothing until then)
        f: Any = sys._getframe(depth)
        frames: list[Any] = []
        while f is not None and len(frames) < 2 * STACK_DEPTH:
            frames += (f.f_code, f.f_lasti)
            f = f.f_back
        me = (tid, now, ts.name, write, frames, ts.held)
        vc = ts.vc
        n = len(vc)
        if last is not None:
            u = last[0]
            if u != tid and last[1] > (vc[u >> SHIFT][u & MASK] if u >> SHIFT < n else 0):
                self._report(obj, name, last, me, label)
        if write:
            for read in reads.values():
                u = read[0]
                if u != tid and read[1] > (vc[u >> SHIFT][u & MASK] if u >> SHIFT < n
                                           else 0):
                    self._report(obj, name, read, me, label)
            shadow[1] = me
            shadow[2] = {}
        else:
            reads[tid] = me

    def _report(self, obj: Any, name: str, earlier_rec: tuple[Any, ...],
                later_rec: tuple[Any, ...], label: str | None = None) -> None:
        earlier, later = _rendered(earlier_rec), _rendered(later_rec)
        field = f"{label}{name}" if label else f"{type(obj).__qualname__}.{name}"
        a, b = sorted([earlier.where, later.where])
        key = (field, a, b)
        if key in self._seen:
            return
        self._seen.add(key)
        if len(self.races) >= MAX_RACES:
            self.dropped += 1
            return
        wanted = {*earlier.locks, *later.locks}
        held_by_obj = _lock_attributes(obj)
        if wanted - held_by_obj.keys():  # a container, or a lock kept elsewhere: look around
            for other in {id(s[0]): s[0] for s in self._shadow.values()}.values():
                for i, held in _lock_attributes(other).items():
                    held_by_obj.setdefault(i, held)
                if not wanted - held_by_obj.keys():
                    break
        names = {i: held_by_obj.get(i) or self._lock_names.get(i, f"lock {i:#x}")
                 for i in wanted}
        self.races.append(Race(field, earlier, later, names))


class _SimulatedDetector(Detector):
    """In simulated time: one OS thread, and no switch inside the detector (it
    blocks on nothing and has no preemption points), so no lock is needed."""

    access = Detector._access  # type: ignore[assignment]
    acquired = Detector._acquired  # type: ignore[assignment]
    released = Detector._released  # type: ignore[assignment]


def _thread_name(ident: int, simulated: bool) -> str:
    """A thread's name without creating a dummy Thread (see Detector._state)."""
    if simulated:  # the engine's current_thread() never creates one
        thread = threading.current_thread()
    else:
        thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return getattr(thread, "name", None) or f"thread {ident}"


def _lock_attributes(obj: Any) -> dict[int, str]:
    """Locks held in ``obj``'s attributes, by id: ``{id: "Raft.mu"}`` (names in reports)."""
    try:
        attrs = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return {}
    cls = type(obj).__qualname__
    return {id(v): f"{cls}.{k}" for k, v in list(attrs.items()) if _is_lock(v)}


def _is_lock(obj: Any) -> bool:
    return type(obj).__name__ in ("Lock", "RLock", "lock", "RLock", "TrackedLock",
                                  "TrackedRLock")


def _lock_name(obj: Any) -> str:
    where = getattr(obj, "_where", None) or getattr(obj, "_race_where", None)
    kind = "RLock" if "RLock" in type(obj).__name__ else "Lock"
    if not where:
        return f"{kind} {id(obj):#x}"
    return f"{kind} created at {os.sep.join(str(where).split(os.sep)[-2:])}"


_HERE = __file__.rsplit("/", 1)[0]


def line_at(code: Any, offset: int) -> int:
    """The source line of the instruction at byte ``offset`` of ``code`` (what a
    frame's ``f_lineno`` is when it stopped there, no trace function being set)."""
    for start, end, line in code.co_lines():
        if start <= offset < end and line is not None:
            return line
    return code.co_firstlineno


def _rendered(rec: tuple[Any, ...]) -> Access:
    """The :class:`Access` of a shadow record (its stack as (file, line, function))."""
    tid, when, thread, write, frames, locks = rec
    stack = tuple((code.co_filename, line_at(code, offset), code.co_name)
                  for code, offset in zip(frames[::2], frames[1::2], strict=True)
                  if not code.co_filename.startswith(_HERE))
    return Access(tid, when, thread, write, stack, locks)
