"""The reference Raft (parts 2A-2D): the threaded shell around :mod:`raft.reference.rules`.

Threads of one peer (all named, all ended promptly by :meth:`Raft.kill`):

* ``raft-S{me}-ticker`` starts elections when no leader has been heard from
  within a randomised timeout;
* ``raft-S{me}-repl`` decides, while this peer leads, what each other peer
  needs next -- entries, a snapshot, or a heartbeat -- and sends it (see
  :meth:`Raft._spawn`).  One thread for all followers, not one each: sending
  never blocks it, and one wake-up serves every follower due at once (a
  wake-up of a Python thread costs more CPU than the decision it wakes for);
* ``raft-S{me}-rpc`` pool threads make the RPCs (which may block for seconds)
  and process the replies -- in real time only when the ends lack labrpc's
  ``call_async``: with it no thread waits for an RPC's outcome (see :meth:`Raft._rpc`);
* ``raft-S{me}-applier`` delivers committed commands and installed snapshots on
  the apply channel, never holding the lock while it blocks there (the tester
  calls :meth:`Raft.snapshot` from the thread that takes the messages).

One lock (``self.mu``) guards all state; every condition variable shares it.
Nothing waits while holding it, and every RPC reply is checked against the term
and role it was sent in before it changes anything.

Replication sends each entry to each follower about once: at most one RPC
carrying entries is outstanding per follower (re-sent only if no answer came
within ``REPL_RETRY``), while heartbeats carry no entries.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import raft.reference.rules as rules
from labrpc.pool import ThreadPool
from labrpc.wake import real_threading
from raft.api import ApplyMsg
from raft.apply_channel import ApplyChannel
from raft.debuglog import dlog
from raft.persister import Persister
from raft.reference.log import Entry, RaftLog, decode_state, encode_state

HEARTBEAT = 0.1  # s between heartbeats: <= 60 RPCs per idle second over 3 peers
ELECTION_TIMEOUT = (0.35, 0.7)  # s, drawn uniformly for every new timer
REPL_RETRY = 0.5  # s before entries whose RPC got no answer yet are sent again
FAIL_BACKOFF = 0.02  # s before entries whose RPC failed are sent again
COMMIT_PUSH = 0.02  # s: a new commit index reaches followers this soon (batched)
IDLE_WAIT = 1.0  # s: longest any thread sleeps without a reason to wake (see Raft._idle)

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"


@dataclass
class RequestVoteArgs:
    term: int
    cand: int
    last_index: int
    last_term: int


@dataclass
class RequestVoteReply:
    term: int
    granted: bool


@dataclass
class AppendEntriesArgs:
    term: int
    leader: int
    prev_index: int
    prev_term: int
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0


@dataclass
class AppendEntriesReply:
    """On failure, ``conflict_term``/``conflict_index`` let the leader back up a term at a time."""

    term: int
    success: bool
    conflict_term: int = rules.NO_TERM
    conflict_index: int = 0


@dataclass
class InstallSnapshotArgs:
    term: int
    leader: int
    last_index: int
    last_term: int
    data: bytes


@dataclass
class InstallSnapshotReply:
    term: int


class Raft:
    """One Raft peer.  Create it with :func:`make`."""

    def __init__(self, peers: list[Any], me: int, persister: Persister,
                 apply_ch: ApplyChannel) -> None:
        self.mu = threading.Lock()
        self.peers = peers
        self.me = me
        self.n = len(peers)
        self.persister = persister
        self.apply_ch = apply_ch
        self._dead = threading.Event()

        # Persistent state (Figure 2) plus the snapshot it goes with.
        self.term = 0
        self.voted_for = rules.NO_VOTE
        self.log = RaftLog()
        self.snapshot_data = persister.read_snapshot()
        state = persister.read_raft_state()
        if state:
            self.term, self.voted_for, self.log = decode_state(state)

        # Volatile state.  The tester has already ingested a persisted snapshot.
        self.role = FOLLOWER
        self.commit_index = self.log.base_index
        self.last_applied = self.log.base_index
        self.pending_snapshot: ApplyMsg | None = None
        self.votes = 0
        self.election_deadline = 0.0
        self._reset_election_timer()

        # Leader state, per peer.
        self.next_index = [1] * self.n
        self.match_index = [0] * self.n
        self.send_seq = [0] * self.n  # identifies the outstanding replication RPC
        self.retry_at = [0.0] * self.n  # no new replication RPC before this time
        self.last_sent = [0.0] * self.n  # when the last RPC of any kind was sent

        self.ticker_cond = threading.Condition(self.mu)
        self.apply_cond = threading.Condition(self.mu)
        self.repl_cond = threading.Condition(self.mu)  # wakes the replicator
        # Spare the replicator's idle wake-ups in real time only (as _idle below): a
        # Python thread's wake-up costs more CPU than the decision it wakes for.  In
        # simulated time and under the race detector, where a wake-up costs nothing,
        # every notify stays where it was, and so do recorded schedules.
        self._lazy = real_threading()
        # When the replicator's current wait ends (inf: no timeout; 0.0: it is not
        # waiting, so it rescans before it waits again).  See _wake_replicator.
        self._repl_wake = 0.0
        self.pool = ThreadPool(f"raft-S{me}-rpc")
        # See _rpc: asynchronous calls in real time, where a waiting thread costs a pid.
        self._async = real_threading() and all(hasattr(p, "call_async") for p in peers)
        # How long a thread with nothing to do waits before looking again.  Every state
        # change it waits for notifies it under the lock (become leader, step down, a
        # commit, a snapshot, kill()), so in real time it waits for that and nothing
        # else: a wake-up of a Python thread costs tens of microseconds, and a 7-peer
        # cluster has 36 idle replicators and 7 appliers.  In simulated time and under
        # the race detector the bound stays, so recorded schedules stay as they were.
        self._idle: float | None = None if real_threading() else IDLE_WAIT

        dlog("INFO", me, "start: term %d, log %r", self.term, self.log)
        self._threads = [
            threading.Thread(target=self._ticker, name=f"raft-S{me}-ticker", daemon=True),
            threading.Thread(target=self._applier, name=f"raft-S{me}-applier", daemon=True),
        ]
        if self.n > 1:
            self._threads.append(threading.Thread(target=self._replicator,
                                                  name=f"raft-S{me}-repl", daemon=True))
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ API

    def get_state(self) -> tuple[int, bool]:
        """(current term, whether this peer believes it is the leader)."""
        with self.mu:
            return self.term, self.role == LEADER

    def start(self, command: Any) -> tuple[int, int, bool]:
        """Append ``command`` if leader; returns (index, term, is_leader) at once."""
        with self.mu:
            if self.role != LEADER or self._dead.is_set():
                return -1, self.term, False
            index = self.log.append(self.term, command)
            self.match_index[self.me] = index
            self._persist()
            dlog("LOG1", self.me, "start: index %d term %d", index, self.term)
            # Wake the replicator only if a follower may be sent entries now: one with an
            # RPC of entries outstanding (or backing off) is served when it settles or at
            # retry_at.
            now = time.monotonic()
            if any(p != self.me and now >= self.retry_at[p] for p in range(self.n)):
                self._wake_replicator(now)
            if self.n == 1:
                self._advance_commit()
            return index, self.term, True

    def snapshot(self, index: int, snapshot: bytes) -> None:
        """The service has a snapshot of everything up to ``index``: trim the log."""
        with self.mu:
            if self._dead.is_set() or index <= self.log.base_index or index > self.log.last_index:
                return
            self.log.compact_to(index)
            self.snapshot_data = snapshot
            self._persist()
            dlog("SNAP", self.me, "snapshot up to %d; log now %r", index, self.log)

    def kill(self) -> None:
        """Stop: every thread of this peer exits promptly; nothing more is applied."""
        with self.mu:
            self._dead.set()
            self.ticker_cond.notify_all()
            self.apply_cond.notify_all()
            self.repl_cond.notify_all()
        self.pool.close()
        dlog("INFO", self.me, "killed")

    def killed(self) -> bool:
        return self._dead.is_set()

    # --------------------------------------------------------- RPC handlers

    def request_vote(self, args: RequestVoteArgs) -> RequestVoteReply:
        with self.mu:
            if self._dead.is_set():
                return RequestVoteReply(self.term, False)
            dirty = self._observe_term(args.term)
            granted = False
            if args.term == self.term:
                up_to_date = rules.log_up_to_date(self.log.last_index, self.log.last_term,
                                                  args.last_index, args.last_term)
                granted = rules.grant_vote(self.voted_for, args.cand, up_to_date)
                if granted:
                    dirty = dirty or self.voted_for != args.cand
                    self.voted_for = args.cand
                    self._reset_election_timer()
            if dirty:
                self._persist()
            dlog("VOTE", self.me, "%s vote to S%d in term %d", "granted" if granted else "denied",
                 args.cand, self.term)
            return RequestVoteReply(self.term, granted)

    def append_entries(self, args: AppendEntriesArgs) -> AppendEntriesReply:
        with self.mu:
            if self._dead.is_set() or args.term < self.term:
                return AppendEntriesReply(self.term, False)
            dirty = self._observe_term(args.term)
            self._hear_from_leader()
            check = rules.check_prev(self.log, args.prev_index, args.prev_term)
            if not check.ok:
                if dirty:
                    self._persist()
                dlog("LOG2", self.me, "reject AE prev %d/%d from S%d: conflict %d@%d",
                     args.prev_index, args.prev_term, args.leader, check.conflict_term,
                     check.conflict_index)
                return AppendEntriesReply(self.term, False, check.conflict_term,
                                          check.conflict_index)
            entries = args.entries
            truncate_at, skip = rules.merge_point(self.log, args.prev_index, entries)
            if truncate_at:
                assert truncate_at > self.commit_index, (truncate_at, self.commit_index)
                self.log.truncate_from(truncate_at)
                dirty = True
            if skip < len(entries):
                self.log.extend(entries[skip:] if skip else entries)
                dirty = True
            if dirty:
                self._persist()
            if entries:
                dlog("LOG2", self.me, "accepted %d entries after %d from S%d; last %d",
                     len(entries), args.prev_index, args.leader, self.log.last_index)
            commit = rules.follower_commit(self.commit_index, args.commit,
                                           args.prev_index + len(entries))
            if commit > self.commit_index:
                self._set_commit(commit)
            return AppendEntriesReply(self.term, True)

    def install_snapshot(self, args: InstallSnapshotArgs) -> InstallSnapshotReply:
        with self.mu:
            if self._dead.is_set() or args.term < self.term:
                return InstallSnapshotReply(self.term)
            dirty = self._observe_term(args.term)
            self._hear_from_leader()
            if args.last_index <= self.commit_index:
                if dirty:
                    self._persist()
                return InstallSnapshotReply(self.term)
            if self.log.term_at(args.last_index) == args.last_term:
                self.log.compact_to(args.last_index)
            else:
                self.log.reset(args.last_index, args.last_term)
            self.snapshot_data = args.data
            self.commit_index = args.last_index
            self.pending_snapshot = ApplyMsg(snapshot_valid=True, snapshot=args.data,
                                             snapshot_term=args.last_term,
                                             snapshot_index=args.last_index)
            self._persist()
            self.apply_cond.notify()
            dlog("SNAP", self.me, "installed snapshot %d/%d from S%d", args.last_index,
                 args.last_term, args.leader)
            return InstallSnapshotReply(self.term)

    # -------------------------------------------- state changes (lock held)

    def _persist(self) -> None:
        state = encode_state(self.term, self.voted_for, self.log)
        self.persister.save(state, self.snapshot_data)
        dlog("PERS", self.me, "saved term %d vote %d %r: %d bytes", self.term, self.voted_for,
             self.log, len(state))

    def _reset_election_timer(self) -> None:
        self.election_deadline = time.monotonic() + random.uniform(*ELECTION_TIMEOUT)

    def _observe_term(self, term: int) -> bool:
        """Adopt a newer term seen in any message (and become follower); True if changed."""
        if term <= self.term:
            return False
        dlog("TERM", self.me, "term %d -> %d", self.term, term)
        was_leader = self.role == LEADER
        self.term = term
        self.voted_for = rules.NO_VOTE
        self.role = FOLLOWER
        if was_leader:
            self._reset_election_timer()
            self.ticker_cond.notify()
        return True

    def _hear_from_leader(self) -> None:
        """A current-term leader exists: stop any candidacy and restart the election timer."""
        if self.role == CANDIDATE:
            self.role = FOLLOWER
        self._reset_election_timer()

    def _wake_replicator(self, at: float) -> None:
        """Make the replicator look again by time ``at``: notify it only if its wait would
        end later.  A wake-up costs tens of microseconds of CPU (more than the decision it
        wakes for); one that finds nothing new to do is the commonest waste."""
        if at < self._repl_wake or not self._lazy:
            self._repl_wake = 0.0
            self.repl_cond.notify()

    def _poke_replicator(self, p: int) -> None:
        """Follower ``p``'s state changed: wake the replicator if ``p`` has entries to be
        sent sooner than it planned to look (at ``retry_at[p]``, 0 meaning now)."""
        if self._lazy and self.role == LEADER and self.next_index[p] <= self.log.last_index:
            self._wake_replicator(self.retry_at[p])

    def _set_commit(self, index: int) -> None:
        dlog("CMIT", self.me, "commit %d -> %d", self.commit_index, index)
        self.commit_index = index
        self.apply_cond.notify()

    def _advance_commit(self) -> None:
        self.match_index[self.me] = self.log.last_index
        commit = rules.leader_commit(self.commit_index, self.term, self.match_index, self.log)
        if commit > self.commit_index:
            self._set_commit(commit)
            # Tell followers soon, batching commits that arrive close together.
            push = time.monotonic() - HEARTBEAT + COMMIT_PUSH
            pushed = False
            for p in range(self.n):
                if p != self.me and self.last_sent[p] > push:
                    self.last_sent[p] = push
                    pushed = True
            if pushed:
                self._wake_replicator(push + HEARTBEAT)

    def _become_leader(self) -> None:
        dlog("LEAD", self.me, "leader in term %d, log %r", self.term, self.log)
        self.role = LEADER
        for p in range(self.n):
            self.next_index[p] = self.log.last_index + 1
            self.match_index[p] = 0
            self.retry_at[p] = 0.0
            self.last_sent[p] = 0.0
        self._repl_wake = 0.0
        self.repl_cond.notify()
        self.match_index[self.me] = self.log.last_index

    # ------------------------------------------------------------ elections

    def _ticker(self) -> None:
        while True:
            with self.mu:
                if self._dead.is_set():
                    return
                now = time.monotonic()
                if self.role == LEADER or now < self.election_deadline:
                    timeout = self._idle if self.role == LEADER else self.election_deadline - now
                    self.ticker_cond.wait(timeout)
                    continue
                args = self._start_election()
            for p in range(self.n):
                if p != self.me:
                    self._spawn(lambda p=p, a=args: self._send_vote(p, a))

    def _start_election(self) -> RequestVoteArgs:
        self.term += 1
        self.role = CANDIDATE
        self.voted_for = self.me
        self.votes = 1
        self._persist()
        self._reset_election_timer()
        dlog("TIMR", self.me, "election timeout: candidate in term %d", self.term)
        if self.votes >= rules.majority(self.n):
            self._become_leader()
        return RequestVoteArgs(self.term, self.me, self.log.last_index, self.log.last_term)

    def _spawn(self, task: Any) -> None:
        """Run ``task`` (which sends an RPC) concurrently: with ``call_async`` it returns
        at once, so here; else on a pool thread, as the call blocks (see :meth:`_rpc`)."""
        if self._async:
            task()
        else:
            self.pool.submit(task)

    def _rpc(self, p: int, method: str, args: Any, on_reply: Any) -> None:
        """Send ``method(args)`` to ``p``; ``on_reply(reply or None)`` runs when it settles.

        Why two ways: a call to an unreachable peer takes up to 7 s to fail, and a
        thread waiting for it costs a process id (the machine's scarcest resource
        when a hundred test processes run at once: ``kernel.pid_max`` is shared).
        With labrpc's ``call_async`` (real time, in-process ends) the network's
        timer waits instead and ``on_reply`` runs on a network thread; otherwise
        (isolated peers, simulated time, the race detector, where threads cost
        nothing and recorded schedules must stay as they were) this is a pool
        thread (:meth:`_spawn`) and makes the blocking call.  With ``call_async``
        nothing is sent once this peer is killed (the closed pool does that otherwise).
        """
        if self._async:
            if not self._dead.is_set():
                self.peers[p].call_async(method, args, on_reply)
        else:
            on_reply(self.peers[p].call(method, args))

    def _send_vote(self, p: int, args: RequestVoteArgs) -> None:
        self._rpc(p, "Raft.request_vote", args, lambda reply: self._vote_reply(p, args, reply))

    def _vote_reply(self, p: int, args: RequestVoteArgs, reply: Any) -> None:
        if reply is None:
            return
        with self.mu:
            if self._dead.is_set():
                return
            if self._observe_term(reply.term):
                self._persist()
                return
            if self.role != CANDIDATE or self.term != args.term or not reply.granted:
                return
            self.votes += 1
            dlog("VOTE", self.me, "got vote from S%d (%d) in term %d", p, self.votes, self.term)
            if self.votes >= rules.majority(self.n):
                self._become_leader()

    # ---------------------------------------------------------- replication

    def _replicator(self) -> None:
        """Decide what each follower needs while we lead, and send it (:meth:`_spawn`)."""
        cond = self.repl_cond
        while True:
            with self.mu:
                if self._dead.is_set():
                    return
                if self.role != LEADER:
                    self._repl_wake = float("inf")  # _idle: None in real time
                    cond.wait(self._idle)
                    self._repl_wake = 0.0
                    continue
                tasks, timeout = [], HEARTBEAT
                for p in range(self.n):
                    if p != self.me:
                        task, wait = self._next_send(p)
                        if task is None:
                            timeout = min(timeout, wait)
                        else:
                            tasks.append(task)
                if not tasks:
                    if self._lazy:
                        self._repl_wake = time.monotonic() + timeout
                    cond.wait(timeout)
                    self._repl_wake = 0.0
                    continue
            for task in tasks:
                self._spawn(task)

    def _next_send(self, p: int) -> tuple[Any, float]:
        """(the RPC to send to ``p`` now, or None; how long to wait otherwise)."""
        now = time.monotonic()
        nxt = self.next_index[p]
        if nxt <= self.log.last_index and now >= self.retry_at[p]:
            self.send_seq[p] += 1
            seq = self.send_seq[p]
            self.retry_at[p] = now + REPL_RETRY
            self.last_sent[p] = now
            if nxt <= self.log.base_index:
                sargs = InstallSnapshotArgs(self.term, self.me, self.log.base_index,
                                            self.log.base_term, self.snapshot_data)
                dlog("SNAP", self.me, "send snapshot %d to S%d", self.log.base_index, p)
                return (lambda: self._send_snapshot(p, sargs, seq)), 0.0
            args = AppendEntriesArgs(self.term, self.me, nxt - 1, self.log.term_at(nxt - 1),
                                     self.log.slice(nxt), self.commit_index)
            dlog("LOG1", self.me, "send %d entries after %d to S%d", len(args.entries), nxt - 1, p)
            return (lambda: self._send_append(p, args, seq)), 0.0
        due = self.last_sent[p] + HEARTBEAT
        if now >= due:
            self.last_sent[p] = now
            prev = max(nxt - 1, self.log.base_index)
            args = AppendEntriesArgs(self.term, self.me, prev, self.log.term_at(prev), [],
                                     self.commit_index)
            return (lambda: self._send_append(p, args, 0)), 0.0
        wake = due
        if self.retry_at[p] > now:  # entries start() adds meanwhile go out at retry_at
            wake = min(wake, self.retry_at[p])
        return None, max(wake - now, 0.001)

    def _finish_send(self, p: int, seq: int, ok: bool) -> None:
        """The outstanding replication RPC ``seq`` to ``p`` ended: allow the next one.

        After a failure the entries go again after ``FAIL_BACKOFF``.  After an
        answer, in real time, the reply's handler wakes the replicator once it knows
        what ``p`` still lacks (:meth:`_poke_replicator`), so an answer that leaves
        ``p`` up to date wakes nobody.
        """
        if seq and seq == self.send_seq[p]:
            self.retry_at[p] = 0.0 if ok else time.monotonic() + FAIL_BACKOFF
            if not self._lazy:
                self.repl_cond.notify()
            elif not ok:
                self._poke_replicator(p)

    def _reply_counts(self, p: int, seq: int, reply: Any, sent_term: int) -> bool:
        """Lock held.  Settle the RPC ``seq`` to ``p``; may its reply still change state?

        Only while this peer is still the leader of the term the RPC was sent in;
        a newer term in the reply makes it a follower instead.
        """
        if self._dead.is_set():
            return False
        self._finish_send(p, seq, reply is not None)
        if reply is None:
            return False
        if self.term != sent_term:  # sent before a later election: p may be sent to now
            self._poke_replicator(p)
        if self._observe_term(reply.term):
            self._persist()
            return False
        return self.role == LEADER and self.term == sent_term

    def _send_append(self, p: int, args: AppendEntriesArgs, seq: int) -> None:
        self._rpc(p, "Raft.append_entries", args,
                  lambda reply: self._append_reply(p, args, seq, reply))

    def _append_reply(self, p: int, args: AppendEntriesArgs, seq: int, reply: Any) -> None:
        with self.mu:
            if not self._reply_counts(p, seq, reply, args.term):
                return
            if reply.success:
                match = args.prev_index + len(args.entries)
                if match > self.match_index[p]:
                    self.match_index[p] = match
                    self._advance_commit()
                if match + 1 > self.next_index[p]:
                    self.next_index[p] = match + 1
                self._poke_replicator(p)
                return
            self.next_index[p] = rules.next_index_after_conflict(
                self.log, reply.conflict_term, reply.conflict_index, self.match_index[p])
            dlog("LOG1", self.me, "S%d rejected prev %d: next %d", p, args.prev_index,
                 self.next_index[p])
            if self._lazy:
                self._poke_replicator(p)
            else:
                self.repl_cond.notify()

    def _send_snapshot(self, p: int, args: InstallSnapshotArgs, seq: int) -> None:
        self._rpc(p, "Raft.install_snapshot", args,
                  lambda reply: self._snapshot_reply(p, args, seq, reply))

    def _snapshot_reply(self, p: int, args: InstallSnapshotArgs, seq: int, reply: Any) -> None:
        with self.mu:
            if not self._reply_counts(p, seq, reply, args.term):
                return
            if args.last_index > self.match_index[p]:
                self.match_index[p] = args.last_index
                self._advance_commit()
            if args.last_index + 1 > self.next_index[p]:
                self.next_index[p] = args.last_index + 1
            self._poke_replicator(p)

    # -------------------------------------------------------------- applier

    def _applier(self) -> None:
        """Deliver snapshots and committed commands in order, without holding the lock."""
        while True:
            with self.mu:
                while (not self._dead.is_set() and self.pending_snapshot is None
                       and self.last_applied >= self.commit_index):
                    self.apply_cond.wait(self._idle)
                if self._dead.is_set():
                    return
                if self.pending_snapshot is not None:
                    msgs = [self.pending_snapshot]
                    self.pending_snapshot = None
                    self.last_applied = max(self.last_applied, msgs[0].snapshot_index)
                else:
                    start, stop = self.last_applied + 1, self.commit_index + 1
                    msgs = [ApplyMsg(command_valid=True, command=cmd, command_index=i)
                            for i, (_, cmd) in zip(range(start, stop),
                                                   self.log.slice(start, stop), strict=True)]
                    self.last_applied = self.commit_index
            for msg in msgs:
                if self._dead.is_set() or not self.apply_ch.put(msg):
                    return


def make(peers: list[Any], me: int, persister: Persister, apply_ch: ApplyChannel) -> Raft:
    """Create a Raft peer; ``peers[me]`` is this peer.  Returns at once."""
    return Raft(peers, me, persister, apply_ch)
