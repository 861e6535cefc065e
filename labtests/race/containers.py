"""Lists, dicts and sets held by the implementation's objects, with their contents tracked.

``self.log.append(e)`` reads the attribute ``log`` and writes the list's
*contents*; a field hook alone sees only the read.  So while a detector runs,
a plain ``list``, ``dict`` or ``set`` stored in a field of an instrumented
object is replaced by a subclass (:class:`RaceList`, :class:`RaceDict`,
:class:`RaceSet`) whose methods report a read or a write of the container as
one location, named after the field that first held it (``Raft.log[...]``).

Why subclasses, not proxies: ``isinstance(x, list)``, slicing, ``len`` and
iteration keep working, results of operations (``lst[a:b]``, ``lst + other``,
``d.copy()``, ``s | t``) are plain containers again, and pickling (the RPC
codec, a persister) produces a plain container, so nothing of the detector
crosses the network or reaches disk.  What changes: the stored object is a
copy of the one assigned (an alias kept elsewhere no longer sees its changes)
and ``type(x) is list`` is false.  One container is one location: writes of two
different elements by two unsynchronised threads are reported too.

Reads: indexing, ``len``, iteration, ``in``, comparisons, copies, ``repr``.
Writes: item assignment and deletion and every mutating method.
"""

from __future__ import annotations

from typing import Any

ACTIVE: Any = None  # the detector (set by labtests.race.instrument), or None
_LABEL = "_race_field"
_get_label = object.__getattribute__

CONTAINER_TYPES = (list, dict, set)


def _read(c: Any) -> None:
    det = ACTIVE
    if det is not None:
        det.access(c, "[...]", False, 3, label=_get_label(c, _LABEL))


def _write(c: Any) -> None:
    det = ACTIVE
    if det is not None:
        det.access(c, "[...]", True, 3, label=_get_label(c, _LABEL))


def _reader(base: type, name: str) -> Any:
    method = getattr(base, name)

    def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        det = ACTIVE  # _read, inlined: one Python call less per use of a container
        if det is not None:
            det.access(self, "[...]", False, 2, _get_label(self, _LABEL))
        return method(self, *args, **kwargs)

    read.__name__ = read.__qualname__ = name
    return read


def _writer(base: type, name: str) -> Any:
    method = getattr(base, name)

    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
        det = ACTIVE  # _write, inlined
        if det is not None:
            det.access(self, "[...]", True, 2, _get_label(self, _LABEL))
        return method(self, *args, **kwargs)

    write.__name__ = write.__qualname__ = name
    return write


def _inplace(base: type, name: str) -> Any:
    method = getattr(base, name)

    def write(self: Any, other: Any) -> Any:
        _write(self)
        method(self, other)
        return self

    write.__name__ = write.__qualname__ = name
    return write


_COMMON_READS = ("__len__", "__iter__", "__contains__", "__eq__", "__ne__", "copy")
_ORDER = ("__lt__", "__le__", "__gt__", "__ge__")


def _build(base: type, reads: tuple[str, ...], writes: tuple[str, ...],
           inplace: tuple[str, ...]) -> dict[str, Any]:
    ns: dict[str, Any] = {"__slots__": (_LABEL,), "__hash__": None}
    for name in reads:
        ns[name] = _reader(base, name)
    for name in writes:
        ns[name] = _writer(base, name)
    for name in inplace:
        ns[name] = _inplace(base, name)
    return ns


def _plain_list(self: Any, protocol: Any = None) -> Any:
    _read(self)
    return (list, (list.copy(self),))


def _plain_dict(self: Any, protocol: Any = None) -> Any:
    _read(self)
    return (dict, (dict.copy(self),))


def _plain_set(self: Any, protocol: Any = None) -> Any:
    _read(self)
    return (set, (list(set.__iter__(self)),))


RaceList = type("RaceList", (list,), {
    **_build(list, _COMMON_READS + _ORDER + ("__getitem__", "__reversed__", "index", "count",
                                             "__add__", "__mul__", "__rmul__", "__repr__"),
             ("__setitem__", "__delitem__", "append", "extend", "insert", "pop", "remove",
              "clear", "sort", "reverse"),
             ("__iadd__", "__imul__")),
    "__reduce_ex__": _plain_list, "__doc__": "A list whose contents are tracked."})

RaceDict = type("RaceDict", (dict,), {
    **_build(dict, _COMMON_READS + ("__getitem__", "get", "keys", "values", "items", "__or__",
                                    "__ror__", "__reversed__", "__repr__"),
             ("__setitem__", "__delitem__", "pop", "popitem", "setdefault", "update",
              "clear"),
             ("__ior__",)),
    "__reduce_ex__": _plain_dict, "__doc__": "A dict whose contents are tracked."})


def _set_repr(self: Any) -> str:
    _read(self)
    return repr(set(set.__iter__(self))) if set.__len__(self) else "set()"


RaceSet = type("RaceSet", (set,), {
    **_build(set, _COMMON_READS + _ORDER + (
        "union", "intersection", "difference", "symmetric_difference", "issubset",
        "issuperset", "isdisjoint", "__or__", "__and__", "__sub__", "__xor__", "__ror__",
        "__rand__", "__rsub__", "__rxor__"),
             ("add", "discard", "remove", "pop", "clear", "update", "intersection_update",
              "difference_update", "symmetric_difference_update"),
             ("__ior__", "__iand__", "__isub__", "__ixor__")),
    "__repr__": _set_repr, "__reduce_ex__": _plain_set,
    "__doc__": "A set whose contents are tracked."})

_TRACKED = {list: RaceList, dict: RaceDict, set: RaceSet}


def tracked(value: Any, label: str) -> Any:
    """``value`` as a tracked container labelled ``label`` if it is a plain list/dict/set."""
    cls = _TRACKED.get(type(value))
    if cls is None:
        return value
    out = cls(value)
    object.__setattr__(out, _LABEL, label)
    return out


def label_of(value: Any) -> str | None:
    """The field a tracked container was first stored in, else None."""
    try:
        return _get_label(value, _LABEL)
    except AttributeError:
        return None
