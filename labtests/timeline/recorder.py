"""The harness's event recorder: what happened during one graded test, in memory, bounded.

Why the harness records its own events instead of parsing logs: the timeline of
a failure (labtests.timeline.html) must not depend on what the student prints,
and the tester already knows every fault it injects and every check it makes.
Each :class:`Config` owns one :class:`Recorder`; its methods are one-line calls
from the tester's methods (crash, connect, checks, applies...) and from the
state sampler (labtests.timeline.sampler).

Time is the clock in use: under ``--sim`` the virtual clock, read without
counting as a poll of the simulation's spin guard (:mod:`labtests.timeline.simstate`),
so recording never changes the simulated schedule and a seed gives the same
events byte for byte; otherwise ``time.monotonic()``.  Recording is an append
to a list (atomic under the GIL, no lock): cheap enough for every apply.

Bounded: the essential events (faults, checks, the failure) are kept up to
:data:`ESSENTIAL_CAP`; the bulky ones (state samples, applies, RPC counts,
debug lines) keep the first :data:`BULK_HEAD` and the last :data:`BULK_TAIL`
(the end of a failing test is what matters), and a ``cut`` note says how many
were dropped.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from labtests.timeline import simstate

ESSENTIAL_CAP = 50_000
BULK_HEAD = 20_000
BULK_TAIL = 60_000
SHORT_VALUE = 40  # characters of a command kept in an event
MAX_MESSAGE = 4_000  # characters of a failure message kept in an event
BULK_KINDS = frozenset({"state", "apply", "rpc", "dbg", "snapshot"})
# What makes the sampler look closely again (labtests.timeline.sampler): faults and roles.
CHANGE_KINDS = frozenset({"crash", "start", "connect", "disconnect", "net", "state", "fail"})

# Thread-name prefixes of the tester's helpers -> the check a failure there belongs to.
HELPER_CHECKS = (("tester-applier", "apply"),)


def short(value: Any) -> str:
    """A command as the timeline shows it: Go-like ``%v``, cut to :data:`SHORT_VALUE`."""
    if isinstance(value, str):
        text = value if len(value) <= SHORT_VALUE else f"<str {len(value)}>"
    elif value is None:
        text = "<nil>"
    else:
        try:
            text = str(value)
        except Exception:  # noqa: BLE001 - a hostile __str__ must not break recording
            text = f"<{type(value).__name__}>"
    return text if len(text) <= SHORT_VALUE else text[: SHORT_VALUE - 3] + "..."


class Recorder:
    """Events of one test: ``(seq, t, kind, peer, fields)``, ``t`` in seconds from creation."""

    def __init__(self, n: int, seed: int | None = None) -> None:
        self.n = n
        self.seed = seed
        self._clock = simstate.clock()
        self.t0 = self._clock()
        self._seq = itertools.count()
        self._essential: list[tuple[int, float, str, int | None, dict[str, Any]]] = []
        self._bulk_head: list[tuple[int, float, str, int | None, dict[str, Any]]] = []
        self._bulk_tail: deque[tuple[int, float, str, int | None, dict[str, Any]]] = deque(
            maxlen=BULK_TAIL)
        self._bulk_seen = 0
        self._essential_cut = 0
        self._checks: dict[int, list[tuple[int, str]]] = {}  # thread ident -> open checks
        self._check_ids = itertools.count(1)
        self.changes = 0  # events of CHANGE_KINDS so far
        self.on_change: Any = None  # called (no arguments) on a change the tester made
        self.failed_check: str | None = None
        self.failure_message: str | None = None
        self._last_state: dict[int, tuple[Any, str]] = {}
        self.enabled = True

    # -- the one way in --------------------------------------------------------------

    def now(self) -> float:
        return round(self._clock() - self.t0, 6)

    def add(self, kind: str, peer: int | None = None, **fields: Any) -> None:
        """Record one event now (a no-op once :attr:`enabled` is off)."""
        self.add_at(None, kind, peer, **fields)

    def add_at(self, t: float | None, kind: str, peer: int | None = None, **fields: Any) -> None:
        """Record one event at time ``t`` (None: now); events are shown in time order."""
        if not self.enabled:
            return
        ev = (next(self._seq), self.now() if t is None else t, kind, peer, fields)
        if kind in CHANGE_KINDS:
            self.changes += 1
            if self.on_change is not None and fields.get("src") != "sample":
                self.on_change()
        if kind in BULK_KINDS:
            self._bulk_seen += 1
            if len(self._bulk_head) < BULK_HEAD:
                self._bulk_head.append(ev)
            else:
                self._bulk_tail.append(ev)
        elif len(self._essential) < ESSENTIAL_CAP:
            self._essential.append(ev)
        else:
            self._essential_cut += 1

    # -- the tester's calls (one line each in labtests/config.py) ----------------------

    def check_begin(self, name: str, **fields: Any) -> int:
        """A tester check starts (``one``, ``check_one_leader``...); returns its id."""
        cid = next(self._check_ids)
        self._checks.setdefault(threading.get_ident(), []).append((cid, name))
        self.add("check", None, name=name, id=cid, phase="begin", **fields)
        return cid

    def check_end(self, cid: int, name: str, ok: bool = True, **fields: Any) -> None:
        stack = self._checks.get(threading.get_ident())
        if stack and stack[-1][0] == cid:
            stack.pop()
        self.add("check", None, name=name, id=cid, phase="end", ok=ok, **fields)

    def current_check(self) -> str | None:
        """The innermost open check of the calling thread (or the helper's kind)."""
        stack = self._checks.get(threading.get_ident())
        if stack:
            return stack[-1][1]
        name = threading.current_thread().name
        for prefix, check in HELPER_CHECKS:
            if name.startswith(prefix):
                return check
        return None

    def failure(self, message: str, check: str | None = None) -> None:
        """The first failure of the test: where (which check) and its message."""
        if self.failure_message is not None:
            return
        check = check or self.current_check()
        self.failed_check = check
        self.failure_message = message
        first = message.splitlines()[0] if message else ""
        self.add("fail", None, msg=message[:MAX_MESSAGE], first=first, check=check)

    def state(self, peer: int, term: Any, leader: Any, source: str) -> None:
        """What ``get_state()`` (or ``start()``) of ``peer`` said: term and leadership."""
        if isinstance(term, bool) or not isinstance(term, int):
            term = None
        role = "leader" if leader is True else "follower"
        if self._last_state.get(peer) == (term, role):
            return  # unchanged: the lane already shows it
        self._last_state[peer] = (term, role)
        self.add("state", peer, term=term, role=role, src=source)

    def unresponsive(self, peer: int, t: float | None = None) -> None:
        """``peer`` did not answer ``get_state()`` (since ``t``, the call's start, if known)."""
        self._last_state[peer] = (None, "unresponsive")
        self.add_at(t, "state", peer, term=None, role="unresponsive", src="sample")

    def crash(self, peer: int) -> None:
        self._last_state.pop(peer, None)
        self.add("crash", peer)

    def start(self, peer: int, generation: int) -> None:
        self._last_state.pop(peer, None)  # the new instance's first state is recorded
        self.add("start", peer, gen=generation)

    def clear(self) -> None:
        """Drop every event and record nothing more (the report is made: free the memory,
        since pytest keeps each test's context until the end of the session)."""
        self.enabled = False
        self._essential = []
        self._bulk_head = []
        self._bulk_tail.clear()
        self._bulk_seen = 0
        self._essential_cut = 0

    # -- reading -----------------------------------------------------------------------

    @property
    def cut(self) -> int:
        """How many events the caps dropped."""
        kept_bulk = len(self._bulk_head) + len(self._bulk_tail)
        return self._essential_cut + (self._bulk_seen - kept_bulk)

    def events(self) -> list[dict[str, Any]]:
        """Every kept event in order, as JSON-ready dicts (plus a ``cut`` note if any)."""
        merged = sorted(itertools.chain(self._essential, self._bulk_head, self._bulk_tail),
                        key=lambda ev: (ev[1], ev[0]))  # by time, then by recording order
        out = []
        for _seq, t, kind, peer, fields in merged:
            ev: dict[str, Any] = {"t": t, "k": kind}
            if peer is not None:
                ev["p"] = peer
            ev.update(fields)
            out.append(ev)
        if self.cut:
            out.append({"t": out[-1]["t"] if out else 0.0, "k": "note",
                        "msg": f"cut {self.cut} events (the timeline keeps the first "
                               f"{BULK_HEAD} and last {BULK_TAIL} samples, applies, RPC counts "
                               f"and debug lines, and {ESSENTIAL_CAP} other events)"})
        return out


def header(n: int, **fields: Any) -> dict[str, Any]:
    """The first line of an events.jsonl file: what the rest describes."""
    return {"k": "meta", "version": 1, "n": n, **fields}


def dump_jsonl(head: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """``events.jsonl``: the header line, then one event per line."""
    return "".join(json.dumps(ev, separators=(",", ":"), default=str) + "\n"
                   for ev in itertools.chain([head], events))


def load_jsonl(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Parse ``events.jsonl``; ValueError says which line is wrong."""
    head: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {lineno} is not JSON ({exc.msg})") from None
        if not isinstance(ev, dict) or "k" not in ev:
            raise ValueError(f"line {lineno} is not an event (a JSON object with a 'k' field)")
        if head is None:
            if ev["k"] != "meta" or not isinstance(ev.get("n"), int):
                raise ValueError("line 1 is not the header (a 'meta' event with the peer count n)")
            head = ev
            continue
        if not isinstance(ev.get("t"), int | float):
            raise ValueError(f"line {lineno} has no time 't'")
        events.append(ev)
    if head is None:
        raise ValueError("empty: no header line")
    return head, events


def iter_kind(events: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (ev for ev in events if ev.get("k") == kind)
