"""The checked codec: Python's analogue of the lab's labgob.

Every RPC request and reply crosses the fake network as bytes, so the handler
and the caller never share an object (a Raft that relies on aliasing a log list
breaks here exactly as it would on a real network), and byte counts are the
encoded lengths.

Format: pickle at the highest protocol.  It deep-copies arbitrary Python values
(dataclasses, lists, dicts, ints of any size), and its overhead is close to
gob's: the lab's byte bounds (labrpc TestBytes 4828-6000 and 1800-2500 bytes,
TestRPCBytes2B +50 000) hold with it.  A custom format would force students to
declare their message types, which Python users do not expect.

What pickle gets wrong for a network is what it accepts: a module-level function
pickles "by reference" and would arrive as the same function.  And what it
refuses, it refuses without saying where.  So encoding checks every value and
refuses things that cannot cross a network (locks, threads, queues, conditions,
events, functions and methods, generators, modules, open files), naming the
field path and the type, e.g. ``args.entries[3].command: threading.Lock``.

labgob's two other checks have no Python counterpart: pickle keeps attributes
whatever their name (no "lower-case field" loss), and decoding always builds
fresh objects (no "decoding into a non-default variable").
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import queue
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

PROTOCOL = pickle.HIGHEST_PROTOCOL

_LOCK_TYPE = type(threading.Lock())
_RLOCK_TYPE = type(threading.RLock())

# Types that hold or are machine-local resources, with the name users know them by.
_FORBIDDEN_NAMES: dict[type, str] = {
    _LOCK_TYPE: "threading.Lock",
    _RLOCK_TYPE: "threading.RLock",
    threading.Condition: "threading.Condition",
    threading.Semaphore: "threading.Semaphore",
    threading.Event: "threading.Event",
    threading.Barrier: "threading.Barrier",
    threading.Thread: "threading.Thread",
    queue.Queue: "queue.Queue",
    queue.SimpleQueue: "queue.SimpleQueue",
    types.FunctionType: "function",
    types.BuiltinFunctionType: "builtin function",
    types.MethodType: "bound method",
    types.GeneratorType: "generator",
    types.CoroutineType: "coroutine",
    types.AsyncGeneratorType: "async generator",
    types.ModuleType: "module",
    io.IOBase: "file",
}
_FORBIDDEN = tuple(_FORBIDDEN_NAMES)
# A class that stands in for one of these (the simulated clock's Lock and RLock) says
# which, in a class attribute of this name, and is refused the same way.
REFUSED_AS = "labrpc_refused_as"


class CodecError(TypeError):
    """A value cannot be encoded; the message names the field path and type."""


def _refused(obj: object) -> bool:
    return isinstance(obj, _FORBIDDEN) or getattr(type(obj), REFUSED_AS, None) is not None


def _type_name(obj: object) -> str:
    stand_in = getattr(type(obj), REFUSED_AS, None)
    if isinstance(stand_in, str):
        return stand_in
    for kind, name in _FORBIDDEN_NAMES.items():
        if isinstance(obj, kind):
            if name in ("function", "bound method", "builtin function"):
                qualname = getattr(obj, "__qualname__", "?")
                return f"{name} {qualname}"
            if kind in (threading.Thread, queue.Queue) and type(obj) is not kind:
                return f"{type(obj).__module__}.{type(obj).__qualname__} ({name})"
            return name
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class _Refused(Exception):
    """Internal: the pickler met a forbidden object."""


# Classes already checked and found fine: whether a class is refused depends on the
# class alone, so each is checked once (a Raft's log entries are mostly one class).
# Bounded, for programs that make classes on the fly.
_ACCEPTED: set[type] = set()
_ACCEPTED_MAX = 4096


class _CheckingPickler(pickle.Pickler):
    # Called for every object except None, bools and exact ints, floats, bytes,
    # strs, lists, tuples, dicts, sets and frozensets, so the check is cheap
    # for the plain data that RPCs mostly carry.
    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if cls in _ACCEPTED:
            return NotImplemented
        if isinstance(obj, _FORBIDDEN) or getattr(cls, REFUSED_AS, None) is not None:
            raise _Refused()
        if len(_ACCEPTED) < _ACCEPTED_MAX:
            _ACCEPTED.add(cls)
        return NotImplemented


# A value of exactly one of these types holds nothing to check: plain pickle encodes it
# to the same bytes without the checking pickler's set-up.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """(path suffix, child) for each value ``obj`` holds, as pickle would see it."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"[{key!r}]", value
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield f"[{i}]", value
    elif isinstance(obj, set | frozenset):
        for value in obj:
            yield "{…}", value
    elif isinstance(obj, type) or isinstance(obj, str | bytes | int | float | complex):
        return
    else:
        seen: set[str] = set()
        if dataclasses.is_dataclass(obj):
            for field in dataclasses.fields(obj):
                seen.add(field.name)
                if hasattr(obj, field.name):
                    yield f".{field.name}", getattr(obj, field.name)
        for name, value in getattr(obj, "__dict__", {}).items():
            if name not in seen:
                seen.add(name)
                yield f".{name}", value
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if name not in seen and name != "__dict__" and hasattr(obj, name):
                    seen.add(name)
                    yield f".{name}", getattr(obj, name)


def _find(
    obj: Any, path: str, bad: Callable[[Any], bool], seen: set[int], outermost: bool
) -> tuple[str, Any] | None:
    """Depth-first search for a value for which ``bad`` holds.

    ``outermost`` reports a bad container before anything bad inside it (a
    Thread, not the lock inside the Thread); otherwise the innermost culprit
    wins (the field that pickle cannot encode, not every object around it).
    """
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    if outermost and bad(obj):
        return path, obj
    for suffix, child in _children(obj):
        found = _find(child, path + suffix, bad, seen, outermost)
        if found is not None:
            return found
    return (path, obj) if not outermost and bad(obj) else None


def _unpicklable_leaf(obj: Any) -> bool:
    try:
        pickle.dumps(obj, PROTOCOL)
    except Exception:
        return True
    return False


# Checking picklers with their buffers, kept for reuse: making one costs as much as
# pickling a small message with it.  A list, taken from and given back to with one
# atomic pop/append, so threads never share one and no lock is taken.
_SPARE: list[tuple[_CheckingPickler, io.BytesIO]] = []
_SPARE_MAX = 64
_SPARE_BUFFER_MAX = 1 << 16  # a buffer that grew past this (a snapshot) is not kept


def encode(value: Any, root: str = "value") -> bytes:
    """Encode ``value`` to bytes, or raise :class:`CodecError` naming the culprit.

    ``root`` names the value in error messages (``args``, ``reply``, ...).  The
    bytes are exactly ``pickle.dumps(value, PROTOCOL)`` (the tests check it):
    byte counts are the lab's.
    """
    if type(value) in _PLAIN:
        return pickle.dumps(value, PROTOCOL)
    try:
        pickler, buffer = _SPARE.pop()
    except IndexError:
        buffer = io.BytesIO()
        pickler = _CheckingPickler(buffer, PROTOCOL)
    try:
        pickler.dump(value)
        data = buffer.getvalue()
    except _Refused:
        found = _find(value, root, _refused, set(), outermost=True)
        reason = "cannot cross a network"
    except Exception as err:  # pickle's own refusal: find the innermost culprit
        found = _find(value, root, _unpicklable_leaf, set(), outermost=False)
        reason = f"cannot be encoded: {err}"
    else:
        # Clean for the next user: no memo (it would both shorten the next message
        # and keep this one's objects alive) and an empty buffer.  A pickler that
        # failed half-way is not reused.
        pickler.clear_memo()
        if buffer.tell() <= _SPARE_BUFFER_MAX and len(_SPARE) < _SPARE_MAX:
            buffer.seek(0)
            buffer.truncate()
            _SPARE.append((pickler, buffer))
        return data
    path, culprit = found if found is not None else (root, value)
    raise CodecError(f"{path}: {_type_name(culprit)} {reason}") from None


def decode(data: bytes) -> Any:
    """Rebuild a value from :func:`encode`'s bytes (always a fresh object)."""
    return pickle.loads(data)
