"""Raft's safety and liveness properties, checked from outside while a schedule runs.

The monitors see an implementation only through the lab's public API: what
``get_state()`` and ``start()`` return, what arrives on each apply channel,
what the tester's snapshots contain, and what the network carried (which
peer's request reached whom, which reply came back).  They never read a log or
a ``votedFor``.  Each check below says what it can and cannot see.

Safety (a violation is a bug whatever the timing):

``election-safety``
    Two different peers were leaders of the same term.  Seen through
    ``get_state()`` samples (every 10 ms of virtual time on every live peer) and
    through every ``start()`` that answered ``is_leader``.  Cannot see a
    leadership that began and ended between two samples and accepted no command.
``term-monotonicity``
    A peer's term went down, within one run of the peer or across a restart
    (``currentTerm`` is persistent state).  Sampled, so a dip between two
    samples is missed.
``state-machine-safety``
    Two peers applied different commands at one index, or one peer applied a
    different command at an index it had applied before (an applied entry
    changed); also a snapshot whose commands disagree with what was applied.
    Sees every apply; cannot see entries that were committed but never applied.
``apply-order``
    A peer applied indexes out of order or with a gap (after a restart or an
    installed snapshot, the next index must follow the snapshot's).
``log-matching``
    As far as it is observable: one (index, term) given to two different
    commands by ``start()``; a command applied at another index than the one
    ``start()`` gave it; a command applied that no client submitted.  Logs that
    differ but are never applied are invisible.
``leader-completeness``
    Through commits: once a peer has applied index ``i`` and was then seen in
    term ``B``, a leader of any term above ``B`` must hold ``i``, so its
    ``start()`` must return an index above ``i``.  (The applying peer's term is
    at least the term that committed ``i``; terms never go down, which
    ``term-monotonicity`` checks.)  A leader that never accepts a command is
    not checked.

Liveness (reported separately: the run was too slow or stuck, not wrong):

``stale-leader``
    A peer that received a reply from a peer known to be in a higher term (the
    call was made after that term was sampled, to the same run of that peer)
    still claims to lead its old term a second later.  Figure 2's rule for all
    servers says it must have stepped down.
``quorum-liveness``
    A majority of peers, up and connected both ways on a reliable network (no
    long reordering), elected no leader within :data:`QUORUM_BOUND` seconds,
    while every other peer was down, could not send to them at all, or was a
    stale leader of a lower term (whose AppendEntries a correct peer rejects
    without resetting its election timer).  Checked on every round of samples;
    any change to the majority, a restart, or a leader of its term restarts the
    clock.  It cannot see a leader that existed only between two samples.
``early-election``
    A peer started an election (sent a RequestVote) sooner than
    :data:`EARLY_ELECTION` after it granted a vote: granting a vote must reset
    the election timer, and no election timeout is that short (the paper's
    range starts at 150 ms; the lab asks for more).  Votes themselves are not
    visible, so a grant is only inferred where it is certain: a peer first
    seen leading a term had received RequestVote replies, since it was last
    seen in a lower term, from exactly a majority minus one other peers, so
    each of them granted (at or after the call was sent).  Elections that
    followed grants nobody could have needed are not judged.  A Raft whose own
    minimum election timeout is below 150 ms would be misjudged here.
``liveness-leader``
    After the heal (every link working, every peer up, network reliable), no
    leader in the highest term within :data:`LEADER_BOUND` seconds.
``liveness-commit``
    After the heal, a fresh command offered to the peers (like the lab's
    ``one()``) was not applied by every peer within :data:`COMMIT_BOUND` seconds.

Races (only with ``raftlab explore --race``): ``data-race``, two accesses to
one of the implementation's fields from different threads, at least one a
write, neither happening before the other (the detector of :mod:`labtests.race`,
with seeded line preemption); the report names the field, both lines and the
locks held.

Errors: ``crash`` (an RPC handler, ``kill()`` or a Raft thread raised),
``deadlock`` (every thread blocked, reported by the simulation), ``time-limit``
(the run's virtual or wall-clock limit, e.g. a thread polling the clock in a
loop) and ``hang`` (set by ``raftlab explore`` when a worker's run gives no
result at all: a loop that never blocks cannot be stopped inside the simulation).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

SAFETY = ("election-safety", "term-monotonicity", "state-machine-safety", "apply-order",
          "log-matching", "leader-completeness")
LIVENESS = ("stale-leader", "quorum-liveness", "early-election", "liveness-leader",
            "liveness-commit")
ERRORS = ("crash", "deadlock", "time-limit", "hang", "exit")  # exit: the Raft ended its process
RACES = ("data-race",)  # with --race: the detector's report (labtests.race)

LEADER_BOUND = 10.0  # virtual s after the heal for a leader to exist
COMMIT_BOUND = 20.0  # virtual s after the heal for a fresh command to be applied by all
QUORUM_BOUND = 10.0  # virtual s a connected majority may take to elect (7 s long-delay + 3)
STEP_DOWN_GRACE = 1.0  # virtual s a leader may take to act on a higher-term reply
EARLY_ELECTION = 0.150  # virtual s: the shortest election timeout a lab Raft may use


def kind_of(monitor: str) -> str:
    if monitor in SAFETY:
        return "safety"
    if monitor in LIVENESS:
        return "liveness"
    if monitor in RACES:
        return "race"
    return "error"


@dataclass(frozen=True)
class Violation:
    """The first property a run broke: which monitor, when (virtual s), and what exactly."""

    monitor: str
    at: float
    message: str

    @property
    def kind(self) -> str:
        return kind_of(self.monitor)

    def headline(self) -> str:
        return f"{self.kind} violation [{self.monitor}] at {self.at:.3f}s: {self.message}"


def _c(cmd: Any) -> str:
    return repr(cmd)


@dataclass
class _Reply:
    """A reply ``src`` got from ``dst`` to a call made at ``sent``, when ``dst`` had
    already reached ``dst_term``: the evidence of the stale-leader check."""

    src: int
    dst: int
    method: str
    sent: float
    received: float
    dst_term: int  # a term dst had already reached before the call was made
    src_incarnation: int


class Monitors:
    """Receives observations from the explore cluster; keeps the first violation.

    Thread-safe (one lock); every method is cheap and never calls into a Raft.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._lock = threading.Lock()
        self.violation: Violation | None = None
        self.leaders: dict[int, tuple[int, float, str]] = {}  # term -> (peer, time, how)
        self.last_term: list[tuple[int, float, int] | None] = [None] * n  # (term, t, inc)
        self.committed: dict[int, tuple[Any, int, float]] = {}  # index -> (cmd, peer, t)
        self.next_apply: list[int] = [1] * n
        self.applied_by: dict[int, set[int]] = {}  # index -> peers (current runs)
        self.accepted: dict[Any, tuple[int, int, int, float]] = {}  # cmd -> (index, term, peer, t)
        self.slots: dict[tuple[int, int], Any] = {}  # (index, term) -> cmd
        self.submitted: set[Any] = set()
        self.unknown_index: set[Any] = set()
        self.pending_bounds: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        self.bounds: dict[int, tuple[int, int, float]] = {}  # B -> (max index, peer, t)
        self.replies: list[_Reply] = []
        self.samples = 0
        self.lower_seen: list[float] = [0.0] * n  # last time a peer was seen below its term
        # (src, src run, dst, dst run, sent, received) of RequestVote replies, recent ones
        self.vote_replies: list[tuple[int, int, int, int, float, float]] = []
        self.judged_terms: set[int] = set()
        # peer -> (its run, term, leader, earliest call sent, reply received): certain grants
        self.grants: dict[int, tuple[int, int, int, float, float]] = {}

    # -- recording ---------------------------------------------------------------

    def fail(self, monitor: str, at: float, message: str) -> None:
        with self._lock:
            self._fail(monitor, at, message)

    def _fail(self, monitor: str, at: float, message: str) -> None:
        if self.violation is None:
            self.violation = Violation(monitor, round(at, 3), message)

    @property
    def failed(self) -> bool:
        return self.violation is not None

    # -- get_state and start -------------------------------------------------------

    def _leader(self, peer: int, term: int, now: float, how: str) -> None:
        seen = self.leaders.get(term)
        if seen is None:
            self.leaders[term] = (peer, now, how)
        elif seen[0] != peer:
            self._fail("election-safety", now,
                       f"S{seen[0]} and S{peer} were both leaders of term {term} "
                       f"(S{seen[0]} seen at {seen[1]:.3f}s via {seen[2]}, "
                       f"S{peer} at {now:.3f}s via {how})")

    def _term(self, peer: int, inc: int, term: int, now: float) -> None:
        last = self.last_term[peer]
        if last is not None and term > last[0]:
            self.lower_seen[peer] = last[1]
        if last is not None and term < last[0]:
            across = "after a restart" if last[2] != inc else "in one run of the peer"
            self._fail("term-monotonicity", now,
                       f"S{peer}'s term went down from {last[0]} (at {last[1]:.3f}s) to {term} "
                       f"{across}; currentTerm must never decrease and must be persisted")
        self.last_term[peer] = (term, now, inc)
        pend = self.pending_bounds[peer]
        if pend:
            for index, t in pend:
                best = self.bounds.get(term)
                if best is None or index > best[0]:
                    self.bounds[term] = (index, peer, t)
            pend.clear()

    def state(self, peer: int, inc: int, term: int, is_leader: bool, now: float) -> None:
        """A ``get_state()`` sample of run ``inc`` of ``peer``."""
        with self._lock:
            self.samples += 1
            self._term(peer, inc, term, now)
            if is_leader:
                self._leader(peer, term, now, "get_state")
                self._infer_grants(peer, inc, term, now)
                self._check_stale(peer, inc, term, now)

    def unrecorded(self, cmd: Any) -> None:
        """``cmd`` may have been accepted at an index nobody recorded: don't check its index."""
        with self._lock:
            self.unknown_index.add(cmd)

    def submitted_cmd(self, cmd: Any) -> None:
        with self._lock:
            self.submitted.add(cmd)

    def started(self, peer: int, inc: int, cmd: Any, index: int, term: int, ok: bool,
                now: float) -> None:
        """What ``start(cmd)`` on ``peer`` returned."""
        with self._lock:
            if not ok:
                return  # the API leaves the term of a refused start() unspecified
            self._term(peer, inc, term, now)
            self._leader(peer, term, now, f"start() of {_c(cmd)}")
            self._infer_grants(peer, inc, term, now)
            other = self.slots.get((index, term))
            if other is not None and other != cmd:
                self._fail("log-matching", now,
                           f"start() gave index {index} of term {term} to both {_c(other)} "
                           f"and {_c(cmd)} (S{peer})")
            self.slots[(index, term)] = cmd
            self.accepted[cmd] = (index, term, peer, now)
            applied = self.committed.get(index)
            if applied is not None and applied[0] != cmd:
                # It may legitimately lose, but a leader elected after the commit may not.
                pass
            for bound, (i, p, t) in self.bounds.items():
                if term > bound and index <= i:
                    self._fail("leader-completeness", now,
                               f"S{peer} led term {term} without committed index {i}: its "
                               f"start({_c(cmd)}) returned index {index}, but S{p} had applied "
                               f"index {i} at {t:.3f}s and was later seen in term {bound} "
                               f"< {term}")
                    break

    # -- applies and snapshots --------------------------------------------------------

    def restarted(self, peer: int, snapshot_index: int, commands: list[Any] | None,
                  now: float) -> None:
        """A new run of ``peer`` starts from its persisted snapshot (or none)."""
        with self._lock:
            for s in self.applied_by.values():
                s.discard(peer)
            self.next_apply[peer] = snapshot_index + 1
            if commands is not None:
                self._check_snapshot(peer, snapshot_index, commands, now, "its persisted")

    def _check_snapshot(self, peer: int, index: int, commands: list[Any], now: float,
                        what: str) -> None:
        for i in range(1, min(index, len(commands) - 1) + 1):
            seen = self.committed.get(i)
            if seen is not None and seen[0] != commands[i]:
                self._fail("state-machine-safety", now,
                           f"{what} snapshot of S{peer} holds {_c(commands[i])} at index {i}, "
                           f"but S{seen[1]} applied {_c(seen[0])} there at {seen[2]:.3f}s")
                return

    def snapshot(self, peer: int, index: int, commands: list[Any], now: float) -> None:
        """``peer`` delivered an installed snapshot up to ``index`` on its apply channel."""
        with self._lock:
            self._check_snapshot(peer, index, commands, now, "an installed")
            self.next_apply[peer] = index + 1

    def applied(self, peer: int, index: int, cmd: Any, now: float) -> None:
        """``peer`` applied ``cmd`` at ``index``."""
        with self._lock:
            expected = self.next_apply[peer]
            if index != expected:
                what = "a gap" if index > expected else "going back"
                self._fail("apply-order", now,
                           f"S{peer} applied index {index} when {expected} was next ({what})")
            self.next_apply[peer] = max(expected, index + 1)
            seen = self.committed.get(index)
            if seen is None:
                self.committed[index] = (cmd, peer, now)
            elif seen[0] != cmd:
                if seen[1] == peer:
                    detail = (f"S{peer} applied {_c(cmd)} at index {index}, where it had applied "
                              f"{_c(seen[0])} at {seen[2]:.3f}s (an applied entry changed)")
                else:
                    detail = (f"index {index} applied as {_c(seen[0])} by S{seen[1]} at "
                              f"{seen[2]:.3f}s but as {_c(cmd)} by S{peer}")
                self._fail("state-machine-safety", now, detail)
            self.applied_by.setdefault(index, set()).add(peer)
            if cmd not in self.submitted:
                self._fail("log-matching", now,
                           f"S{peer} applied {_c(cmd)} at index {index}, which no client "
                           f"submitted")
            acc = self.accepted.get(cmd)
            if acc is not None and acc[0] != index and cmd not in self.unknown_index:
                self._fail("log-matching", now,
                           f"{_c(cmd)} was given index {acc[0]} (term {acc[1]}) by S{acc[2]}'s "
                           f"start() but S{peer} applied it at index {index}")
            self.pending_bounds[peer].append((index, now))

    # -- votes and early elections ----------------------------------------------------

    def vote_reply(self, src: int, src_inc: int, dst: int, dst_inc: int, sent: float,
                   now: float) -> None:
        """Run ``src_inc`` of ``src`` got run ``dst_inc`` of ``dst``'s reply to a RequestVote."""
        with self._lock:
            self.vote_replies.append((src, src_inc, dst, dst_inc, sent, now))
            if len(self.vote_replies) > 256:
                del self.vote_replies[:128]

    def _infer_grants(self, leader: int, inc: int, term: int, now: float) -> None:
        """``leader`` (run ``inc``) is seen leading ``term``: whose votes did it surely need?"""
        if term in self.judged_terms or self.leaders.get(term, (leader,))[0] != leader:
            return
        self.judged_terms.add(term)
        since = self.lower_seen[leader]
        voters: dict[int, tuple[int, float, float]] = {}  # dst -> (run, first sent, received)
        for src, src_inc, dst, dst_inc, sent, got in self.vote_replies:
            if src != leader or src_inc != inc or sent <= since or got > now:
                continue
            run, first, last = voters.get(dst, (dst_inc, sent, got))
            if run != dst_inc:
                return  # two runs of one voter answered: not certain which granted
            voters[dst] = (run, min(first, sent), max(last, got))
        if len(voters) != self.n // 2 or not voters:
            return
        for p, (run, first, got) in voters.items():
            self.grants[p] = (run, term, leader, first, got)

    def vote_sent(self, peer: int, inc: int, at: float) -> None:
        """Run ``inc`` of ``peer`` calls RequestVote at ``at``: too soon after a grant?"""
        with self._lock:
            g = self.grants.get(peer)
            if g is None:
                return
            run, term, leader, first, got = g
            if run != inc or at < got:
                return
            if at - first < EARLY_ELECTION:
                self._fail("early-election", at,
                           f"S{peer} sent a RequestVote at {at:.3f}s, at most {at - first:.3f}s "
                           f"after it granted its vote to S{leader} for term {term} (S{leader} "
                           f"became leader with the RequestVote replies of exactly a majority "
                           f"minus one: S{peer}'s vote was needed); granting a vote must reset "
                           f"the election timer, and no election timeout is below "
                           f"{EARLY_ELECTION * 1000:.0f} ms")
            else:
                del self.grants[peer]

    # -- stale leaders ---------------------------------------------------------------

    def known_term(self, peer: int) -> tuple[int, float, int] | None:
        """The last sampled (term, time, run) of ``peer``: captured when a call is made."""
        with self._lock:
            return self.last_term[peer]

    def reply(self, src: int, src_inc: int, dst: int, known: tuple[int, float, int] | None,
              dst_inc_now: int, method: str, sent: float, now: float) -> None:
        """``src`` got a reply from ``dst`` to a call it made at ``sent``.

        ``known`` is what had been sampled of ``dst`` when the call was made: if the
        same run of ``dst`` handled the call, its reply carried at least that term.
        """
        if known is None or known[2] != dst_inc_now:
            return
        with self._lock:
            self.replies.append(_Reply(src, dst, method, sent, now, known[0], src_inc))
            if len(self.replies) > 64:
                del self.replies[:32]

    def _check_stale(self, peer: int, inc: int, term: int, now: float) -> None:
        for r in self.replies:
            if (r.src == peer and r.src_incarnation == inc and r.dst_term > term
                    and now >= r.received + STEP_DOWN_GRACE):
                self._fail("stale-leader", now,
                           f"S{peer} still led term {term} at {now:.3f}s although at "
                           f"{r.received:.3f}s it got S{r.dst}'s reply to {r.method} (sent at "
                           f"{r.sent:.3f}s, when S{r.dst} was already in term {r.dst_term})")
                return
