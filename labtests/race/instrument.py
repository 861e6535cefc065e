"""Connect a :class:`~labtests.race.detector.Detector` to the code under test, and undo it.

Three kinds of hooks, all installed by :func:`instrumented` and removed on exit:

* **Fields**: every class defined in the implementation's modules gets a
  ``__getattribute__`` and a ``__setattr__`` (wrapping any it had) that report
  reads and writes of *instance* attributes (names in the object's
  ``__dict__`` or its ``__slots__``; methods and class attributes are not
  state).  Subclasses inherit them, so a student's subclass of a base in scope
  is covered too.  A plain list, dict or set stored in a field becomes a
  tracked one (:mod:`.containers`), whose contents are a location of their own.
* **Threads**: ``threading.Thread.start`` and ``join`` (whatever they are at
  the time: the real ones, or simulated time's) tell the detector about the
  fork and the join.
* **Synchronisation**: in simulated time the engine's primitives report to
  :data:`labtests.sim.state.SYNC`; in real time ``threading.Lock``/``RLock``/
  ``Event`` and ``queue.SimpleQueue`` are replaced, for the test, by wrappers
  that report.  ``Condition``
  and ``queue.Queue`` are built from those locks and need nothing of their own;
  the apply channel and labrpc's queues and pool are built from them too, so an
  RPC's request and reply and an apply message carry happens-before.
"""

from __future__ import annotations

import _thread
import enum
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from labtests.race import containers
from labtests.race.detector import Detector

_obj_getattribute = object.__getattribute__
_obj_setattr = object.__setattr__
_RealLock = _thread.allocate_lock
_RealRLock = threading.RLock
_RealEvent = threading.Event
_RealSimpleQueue = queue.SimpleQueue

ACTIVE: Detector | None = None  # the detector the field hooks report to


# -- fields -----------------------------------------------------------------------


_SLOTS: dict[type, frozenset[str]] = {}


def slot_names(cls: type) -> frozenset[str]:
    """The instance attributes that ``cls`` and its bases declare in ``__slots__``."""
    names = _SLOTS.get(cls)
    if names is None:
        found: set[str] = set()
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            found.update((slots,) if isinstance(slots, str) else slots)
        names = _SLOTS[cls] = frozenset(found - {"__dict__", "__weakref__"})
    return names


_DICTS: dict[type, bool] = {}


def has_dict(cls: type) -> bool:
    """Can instances of ``cls`` have a ``__dict__``?  (Not a class whose MRO is all
    ``__slots__``: asking such an object for its ``__dict__`` raises, and an exception
    per attribute lookup was the costliest line of the field hook.)"""
    found = _DICTS.get(cls)
    if found is None:
        found = _DICTS[cls] = any("__dict__" in vars(k) for k in cls.__mro__)
    return found


def _is_own(obj: Any, name: str) -> bool:
    """Is ``name`` an instance attribute of ``obj`` (state), not a method or property?"""
    if has_dict(type(obj)):
        try:
            if name in _obj_getattribute(obj, "__dict__"):
                return True
        except AttributeError:
            pass
    return name in slot_names(type(obj))


def _make_getattribute(orig: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807 - the hook's own name
        value = orig(self, name)
        det = ACTIVE
        if det is not None and name[:2] != "__":
            # _is_own, inlined: this runs on every attribute lookup, methods included
            cls = type(self)
            dicts = _DICTS.get(cls)
            own = False
            if dicts is None or dicts:
                if dicts is None:
                    dicts = has_dict(cls)
                try:
                    own = dicts and name in _obj_getattribute(self, "__dict__")
                except AttributeError:
                    pass
            if not own:
                slots = _SLOTS.get(cls)
                own = name in (slots if slots is not None else slot_names(cls))
            if own:
                det.access(self, name, False)
        return value
    return __getattribute__


def _make_setattr(orig: Callable[[Any, str, Any], None]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        det = ACTIVE
        if det is not None:
            det.access(self, name, True)
            if type(value) in containers.CONTAINER_TYPES:  # track its contents from now on
                value = containers.tracked(value, f"{type(self).__qualname__}.{name}")
        orig(self, name, value)
    return __setattr__


def classes_in(modules: Iterable[ModuleType]) -> list[type]:
    """The classes defined (not imported) in ``modules`` that hold mutable state."""
    found = []
    for mod in modules:
        for value in list(vars(mod).values()):
            if (isinstance(value, type) and type(value) is type
                    and value.__module__ == mod.__name__
                    and not issubclass(value, (BaseException, enum.Enum, tuple))):
                found.append(value)
    return found


def _inherits_hook(cls: type, name: str, hooked: set[type]) -> bool:
    """Does ``cls`` get ``name`` from a class that has the hook?  (Then a hook of its
    own would only run the same check twice per access.)"""
    for klass in cls.__mro__[1:]:
        if name in klass.__dict__:
            return klass in hooked
    return False


@contextmanager
def _fields(classes: list[type]) -> Iterator[None]:
    saved: list[tuple[type, str, Any]] = []
    hooked: dict[str, set[type]] = {"__getattribute__": set(), "__setattr__": set()}
    try:
        for cls in sorted(classes, key=lambda c: len(c.__mro__)):  # bases first
            for name, make in (("__getattribute__", _make_getattribute),
                               ("__setattr__", _make_setattr)):
                if name not in cls.__dict__ and _inherits_hook(cls, name, hooked[name]):
                    continue
                saved.append((cls, name, cls.__dict__.get(name)))
                setattr(cls, name, make(getattr(cls, name)))
                hooked[name].add(cls)
        yield
    finally:
        for cls, name, old in reversed(saved):
            if old is None:
                delattr(cls, name)
            else:
                setattr(cls, name, old)


# -- threads ------------------------------------------------------------------------


@contextmanager
def _threads(det: Detector) -> Iterator[None]:
    start, join = threading.Thread.start, threading.Thread.join

    def traced_start(self: threading.Thread) -> None:
        det.forked(self)
        run = self.run

        def traced_run() -> None:
            try:
                det.begins(self)
                run()
            finally:
                # break the cycle thread -> traced_run -> thread, which kept each
                # test's detector and all it saw alive until a full collection
                vars(self).pop("run", None)

        self.run = traced_run  # type: ignore[method-assign]
        start(self)

    def traced_join(self: threading.Thread, timeout: float | None = None) -> None:
        join(self, timeout)
        if not self.is_alive():
            det.joined(self)

    threading.Thread.start = traced_start  # type: ignore[method-assign]
    threading.Thread.join = traced_join  # type: ignore[method-assign]
    try:
        yield
    finally:
        threading.Thread.start = start  # type: ignore[method-assign]
        threading.Thread.join = join  # type: ignore[method-assign]


# -- real-time synchronisation -------------------------------------------------------


def _creation_site() -> str:
    frame = sys._getframe(2)
    return f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"


class TrackedLock:
    """``threading.Lock`` that reports acquire and release to the detector."""

    labrpc_refused_as = "threading.Lock"
    _race_lock = True
    __slots__ = ("_inner", "_race_where", "__weakref__")

    def __init__(self) -> None:
        self._inner = _RealLock()
        self._race_where = _creation_site()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ok = self._inner.acquire(blocking, timeout)
        det = ACTIVE
        if ok and det is not None:
            det.acquired(self)
        return ok

    def release(self) -> None:
        det = ACTIVE
        if det is not None:
            det.released(self)
        self._inner.release()

    def locked(self) -> bool:
        return self._inner.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self._inner._at_fork_reinit()  # type: ignore[attr-defined]

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle '_thread.lock' object")

    def __repr__(self) -> str:
        return f"<tracked {self._inner!r} created at {self._race_where}>"


class TrackedRLock(TrackedLock):
    """``threading.RLock`` that reports; ``Condition`` uses its save/restore pair."""

    labrpc_refused_as = "threading.RLock"
    __slots__ = ()

    def __init__(self) -> None:
        self._inner = _RealRLock()
        self._race_where = _creation_site()

    def locked(self) -> bool:  # RLock has no locked() before 3.13; answer anyway
        if self._inner.acquire(False):
            self._inner.release()
            return False
        return True

    def _is_owned(self) -> bool:
        return self._inner._is_owned()  # type: ignore[attr-defined]

    def _release_save(self) -> Any:
        det = ACTIVE
        state = self._inner._release_save()  # type: ignore[attr-defined]
        if det is not None:
            for _ in range(state[0] if isinstance(state, tuple) else 1):
                det.released(self)
        return state

    def _acquire_restore(self, state: Any) -> None:
        self._inner._acquire_restore(state)  # type: ignore[attr-defined]
        det = ACTIVE
        if det is not None:
            det.acquired(self)

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle '_thread.RLock' object")


class TrackedEvent(_RealEvent):
    """``threading.Event`` whose ``set`` publishes and whose seen flag acquires."""

    def set(self) -> None:
        det = ACTIVE
        if det is not None:
            det.released(self)
        super().set()

    def is_set(self) -> bool:
        flag = super().is_set()
        det = ACTIVE
        if flag and det is not None:
            det.acquired(self)
        return flag

    isSet = is_set  # noqa: N815 - threading's alias

    def wait(self, timeout: float | None = None) -> bool:
        flag = super().wait(timeout)
        det = ACTIVE
        if flag and det is not None:
            det.acquired(self)
        return flag


class TrackedSimpleQueue(_RealSimpleQueue):  # type: ignore[misc, valid-type]
    """``queue.SimpleQueue`` (no lock of its own to report) whose put publishes and
    whose get acquires: a get is ordered after every put before it (labrpc's pools
    hand tasks over through one)."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        det = ACTIVE
        if det is not None:
            det.released(self)
        super().put(item, block, timeout)

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = super().get(block, timeout)
        det = ACTIVE
        if det is not None:
            det.acquired(self)
        return item

    def get_nowait(self) -> Any:
        return self.get(False)


@contextmanager
def _real_sync() -> Iterator[None]:
    saved = threading.Lock, threading.RLock, threading.Event, queue.SimpleQueue
    threading.Lock = TrackedLock  # type: ignore[misc, assignment]
    threading.RLock = TrackedRLock  # type: ignore[misc, assignment]
    threading.Event = TrackedEvent  # type: ignore[misc]
    queue.SimpleQueue = TrackedSimpleQueue  # type: ignore[misc]
    try:
        yield
    finally:
        (threading.Lock, threading.RLock, threading.Event,  # type: ignore[misc]
         queue.SimpleQueue) = saved


SIM_STATE = "labtests.sim.state"  # looked up, not imported: the engine is a sibling


@contextmanager
def _sim_sync(det: Detector) -> Iterator[None]:
    state = sys.modules.get(SIM_STATE)
    if state is None or getattr(state, "SCHED", None) is None:
        raise RuntimeError("simulated=True but no simulation is active")
    state.SYNC = det
    det.use_scheduler(state.SCHED)
    try:
        yield
    finally:
        state.SYNC = None


# -- all together ----------------------------------------------------------------------


@contextmanager
def instrumented(det: Detector, modules: Iterable[ModuleType], *,
                 simulated: bool) -> Iterator[Detector]:
    """Report the implementation's field accesses and all synchronisation to ``det``."""
    global ACTIVE
    if ACTIVE is not None:
        raise RuntimeError("a race detector is already active in this process")
    classes = classes_in(modules)
    sync = _sim_sync(det) if simulated else _real_sync()
    with _fields(classes), _threads(det), sync:
        ACTIVE = containers.ACTIVE = det
        try:
            yield det
        finally:
            ACTIVE = containers.ACTIVE = None
