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
to a list or a slot of the bulk columns (atomic under the GIL, no lock):
cheap enough for every apply.

Bounded: the essential events (faults, checks, the failure) are kept up to
:data:`ESSENTIAL_CAP`; the bulky ones (state samples, applies, RPC counts,
debug lines) keep the first :data:`BULK_HEAD` and the last :data:`BULK_TAIL`
(the end of a failing test is what matters), and a ``cut`` note says how many
were dropped.  Both kinds are kept in columns (:mod:`labtests.timeline.bulkring`:
an apply costs ~38 bytes instead of a ~170-byte tuple with its float and int).
Individual RPCs (:meth:`Recorder.rpc`, from the network's observer,
:mod:`labtests.timeline.traffic`) are kept in a bounded ring of their own:
the first :data:`RPC_HEAD` and the last :data:`RPC_TAIL`.

The candidate role is inferred, since ``get_state()`` says only leader or
not: a peer not known to lead that sends a vote request (a method whose name
contains "vote") is a candidate from then on, until it is seen to lead, is
crashed, receives a request from the peer last seen leading, or takes no part
in any vote-ish RPC (sent or received) for :data:`CANDIDATE_QUIET_S`; then it
is drawn as a follower again from the end of that quiet time.  A candidate
that sends any other request (only a leader sends AppendEntries or
InstallSnapshot) has won: it is drawn as leader from then on, until a sample
says otherwise.  Such an
inferred event neither wakes the sampler nor counts as a change, so the
sampler's rounds (part of a simulated run) are the same without the observer.
Its limits: a
Raft whose vote RPC is named otherwise shows no candidates; one whose election
timeout exceeds :data:`CANDIDATE_QUIET_S` shows gaps between its elections; a
leader that campaigns again without being sampled as a follower first stays
drawn as leader.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

from labtests.timeline import simstate
from labtests.timeline.bulkring import BulkRing
from labtests.timeline.rpcring import RpcRing

ESSENTIAL_CAP = 50_000
BULK_HEAD = 10_000
BULK_TAIL = 30_000
RPC_HEAD = 2_000  # individual RPCs: the first ones...
RPC_TAIL = 8_000  # ...and the last ones (each request and each reply is one)
CANDIDATE_QUIET_S = 1.0  # no vote-ish RPC for this long: no longer a candidate
SHORT_VALUE = 40  # characters of a command kept in an event
MAX_MESSAGE = 4_000  # characters of a failure message kept in an event
REQUEST_OUTCOMES = frozenset({"sent", "dropped", "unreachable"})  # the rest are replies
RPC_KEYS = (("to", "m", "o", "b"), ("to", "m", "o", "b", "old"))  # an RPC event's fields
NOT_CAMPAIGNING = ("leader", "unresponsive")  # last roles that a vote request does not change
APPLY_KEYS = ("i", "c")  # an apply event's fields: index and command (see short)
BULK_KINDS = frozenset({"state", "apply", "rpc", "dbg", "snapshot"})
# What makes the sampler look closely again (labtests.timeline.sampler): faults and roles.
CHANGE_KINDS = frozenset({"crash", "start", "connect", "disconnect", "net", "state", "fail"})
# Roles inferred from RPCs (src "rpc") neither count as changes nor wake the sampler: the
# sampler's rounds, part of a simulated run, stay what they are without the observer.
INFERRED = "rpc"

Event = tuple[Any, ...]  # (seq, t, kind, peer, field names, *field values)

# Thread-name prefixes of the tester's helpers -> the check a failure there belongs to.
HELPER_CHECKS = (("tester-applier", "apply"),)


def short(value: Any) -> str | int:
    """A command as the timeline shows it: Go-like ``%v``, cut to :data:`SHORT_VALUE`.

    A plain int is kept as it is: the very object the tester's log holds already,
    so an apply event costs no string (:meth:`Recorder.events` writes it as text)."""
    if type(value) is int:
        return value
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
        # Events are kept in columns (labtests.timeline.bulkring) and read back as flat
        # tuples (seq, t, kind, peer, field names, *field values): the essential ones up
        # to their cap, the bulk ones as a head and a ring.
        self._essential = BulkRing(ESSENTIAL_CAP, 0)
        self._bulk = BulkRing(BULK_HEAD, BULK_TAIL)
        self._apply_code = self._bulk.layout("apply", APPLY_KEYS, True, False)  # see apply()
        self._checks: dict[int, list[tuple[int, str]]] = {}  # thread ident -> open checks
        self._check_ids = itertools.count(1)
        self.changes = 0  # events of CHANGE_KINDS so far
        self.on_change: Any = None  # called (no arguments) on a change the tester made
        self.failed_check: str | None = None
        self.failure_message: str | None = None
        self._last_state: dict[int, tuple[Any, str]] = {}
        self.rpcs = RpcRing(RPC_HEAD, RPC_TAIL)  # individual RPCs (labtests.timeline.traffic)
        self._campaigns: dict[int, float] = {}  # candidate peer -> its last vote-ish RPC
        self.enabled = True

    # -- the one way in --------------------------------------------------------------

    def now(self) -> float:
        return round(self._clock() - self.t0, 6)

    def add(self, kind: str, peer: int | None = None, **fields: Any) -> None:
        """Record one event now (a no-op once :attr:`enabled` is off)."""
        if self.enabled:
            self._record(next(self._seq), None, kind, peer, fields)

    def add_at(self, t: float | None, kind: str, peer: int | None = None, **fields: Any) -> None:
        """Record one event at time ``t`` (None: now); events are shown in time order."""
        if self.enabled:
            self._record(next(self._seq), t, kind, peer, fields)

    def _record(self, seq: int, t: float | None, kind: str, peer: int | None,
                fields: dict[str, Any]) -> None:
        if t is None:
            t = self.now()
        if kind in CHANGE_KINDS and fields.get("src") != INFERRED:
            self.changes += 1
            if self.on_change is not None and fields.get("src") != "sample":
                self.on_change()
        if kind in BULK_KINDS:
            self._bulk.add(seq, t, kind, peer, fields)
        else:
            self._essential.add(seq, t, kind, peer, fields)

    def apply(self, peer: int, index: Any, command: Any) -> None:
        """The tester's reader took ``command`` at ``index`` from ``peer``: the event of
        ``add("apply", peer, i=index, c=short(command))``, by a shorter path (it runs for
        every apply of every peer: 2.1 instead of 4.8 us, timeit in session 8)."""
        if not self.enabled:
            return
        seq = next(self._seq)
        t = self.now()
        c = short(command)
        if BulkRing.fits(peer, index):  # the layout add() would choose, made once
            self._bulk.put(seq, t, self._apply_code, peer, index, c)
        else:
            self._record(seq, t, "apply", peer, {"i": index, "c": c})

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
        if peer in self._campaigns:
            if leader is True:
                self._campaigns.pop(peer, None)
            else:
                self._expire(peer, self.now())
        role = "leader" if leader is True else \
            "candidate" if peer in self._campaigns else "follower"
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
        self._campaigns.pop(peer, None)
        self.add("crash", peer)

    def start(self, peer: int, generation: int) -> None:
        self._last_state.pop(peer, None)  # the new instance's first state is recorded
        self._campaigns.pop(peer, None)
        self.add("start", peer, gen=generation)

    # -- individual RPCs and the candidate role (labtests.timeline.traffic) ---------------

    def rpc(self, caller: int, callee: Any, method: str, outcome: str, nbytes: int, *,
            vote: bool = False, stale: bool = False) -> None:
        """One RPC event on the wire (a request's fate or a reply's, see labrpc's
        ``on_rpc``), from peer ``caller``'s end to server ``callee``.  ``vote``: the
        method is vote-ish; ``stale``: the caller's end belongs to a crashed instance."""
        if not self.enabled:
            return
        t = self._clock() - self.t0  # rounded when read: this is the hot path
        self.rpcs.add(next(self._seq), t, caller, callee, method, outcome, nbytes, stale)
        if stale:
            return
        campaigns = self._campaigns
        if not campaigns and not vote:
            return  # the common case: a heartbeat while nobody campaigns
        request = outcome in REQUEST_OUTCOMES
        if caller in campaigns:
            self._expire(caller, t)
            if request and not vote and caller in campaigns:
                self._end_campaign(caller, round(t, 6), won=True)  # only leaders send these
        if isinstance(callee, int) and callee in campaigns:
            self._expire(callee, t)
            if request and outcome == "sent" and not vote \
                    and self._last_state.get(caller, (None, ""))[1] == "leader":
                self._end_campaign(callee, round(t, 6))  # heard from the leader: a follower
        if not vote:
            return
        if caller in campaigns:
            campaigns[caller] = t
        elif request and self._last_state.get(caller, (None, ""))[1] not in NOT_CAMPAIGNING:
            campaigns[caller] = t
            term = self._last_state.get(caller, (None, ""))[0]
            self._last_state[caller] = (term, "candidate")
            self.add_at(round(t, 6), "state", caller, term=term, role="candidate", src=INFERRED)
        if request and outcome == "sent" and isinstance(callee, int) and callee in campaigns:
            campaigns[callee] = t  # a candidate that receives a vote request is still in it

    def expire_campaigns(self) -> None:
        """End the candidacies quiet for :data:`CANDIDATE_QUIET_S` (the sampler's rounds)."""
        if self._campaigns:
            now = self.now()
            for peer in list(self._campaigns):
                self._expire(peer, now)

    def _expire(self, peer: int, now: float) -> None:
        since = self._campaigns.get(peer)
        if since is not None and now - since > CANDIDATE_QUIET_S:
            self._end_campaign(peer, round(since + CANDIDATE_QUIET_S, 6))

    def _end_campaign(self, peer: int, t: float, won: bool = False) -> None:
        if self._campaigns.pop(peer, None) is None:
            return
        term, role = self._last_state.get(peer, (None, "candidate"))
        if role == "candidate":
            role = "leader" if won else "follower"
            self._last_state[peer] = (term, role)
            self.add_at(t, "state", peer, term=term, role=role, src=INFERRED)

    def clear(self) -> None:
        """Drop every event and record nothing more (the report is made: free the memory,
        since pytest keeps each test's context until the end of the session)."""
        self.enabled = False
        self._essential.clear()
        self._bulk.clear()
        self.rpcs.clear()
        self._campaigns.clear()

    # -- reading -----------------------------------------------------------------------

    @property
    def cut(self) -> int:
        """How many events the caps dropped (individual RPCs aside: :attr:`rpc_cut`)."""
        return self._essential.cut + self._bulk.cut

    @property
    def rpc_cut(self) -> int:
        """How many individual RPC events the ring dropped."""
        return self.rpcs.cut

    def events(self) -> list[dict[str, Any]]:
        """Every kept event in order, as JSON-ready dicts (plus a ``cut`` note if any).

        An individual RPC is ``{"k": "msg", "p": caller, "to": callee, "m": method,
        "o": outcome, "b": bytes}`` (plus ``"old": true`` from a crashed instance's end).
        """
        rpcs = [(seq, round(t, 6), "msg", caller, RPC_KEYS[stale], callee, method, outcome,
                 nbytes, True)[:9 + stale]
                for seq, t, caller, callee, method, outcome, nbytes, stale in self.rpcs.items()]
        merged = sorted(itertools.chain(self._essential.items(), self._bulk.items(), rpcs),
                        key=lambda ev: (ev[1], ev[0]))  # by time, then by recording order
        out = []
        for stored in merged:
            _seq, t, kind, peer, keys = stored[:5]
            ev: dict[str, Any] = {"t": t, "k": kind}
            if peer is not None:
                ev["p"] = peer
            ev.update(zip(keys, stored[5:], strict=True))
            if type(ev.get("c")) is int:
                ev["c"] = str(ev["c"])  # a command (see short), text as before
            out.append(ev)
        end = out[-1]["t"] if out else 0.0
        if self.cut:
            out.append({"t": end, "k": "note",
                        "msg": f"cut {self.cut} events (the timeline keeps the first "
                               f"{BULK_HEAD} and last {BULK_TAIL} samples, applies, RPC counts "
                               f"and debug lines, and {ESSENTIAL_CAP} other events)"})
        if self.rpc_cut:
            out.append({"t": end, "k": "note",
                        "msg": f"cut {self.rpc_cut} individual RPC events (the timeline keeps "
                               f"the first {RPC_HEAD} and the last {RPC_TAIL}; the RPC counts "
                               f"cover the whole test)"})
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
