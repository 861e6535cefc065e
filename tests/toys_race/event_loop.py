"""A whole Raft (2A-2D) whose state lives in one thread: an event loop fed by a queue.

A reference design, and the race detector's "must report nothing" case.  Every
field of the Raft is read and written only by the loop thread (``_loop``).  The
other threads never touch state:

* the API methods (``get_state``, ``start``) and the RPC handlers post a request
  on the loop's queue (``inbox``) and wait for the answer on a queue of their
  own; ``snapshot`` posts and does not wait (the tester calls it from the thread
  that reads the apply channel, which the loop may be feeding at that moment);
* each outgoing RPC runs in a short-lived thread that posts the reply back on
  the inbox;
* one applier thread takes apply messages the loop queued (``outbox``) and
  sends them on the apply channel, so a slow reader never stalls the loop.

The queues order everything (a put happens before the get that takes it), so
there is nothing to lock.  Persistence: the loop saves term, vote and log after
every change, before it answers or sends anything that depends on it.  The log
is ``[(term, command), ...]`` with ``log[0]`` standing for the snapshot (index
``base``, its term), so index ``i`` is at ``log[i - base]``.
"""

from __future__ import annotations

import pickle
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from raft.api import ApplyMsg

HEARTBEAT = 0.1
ELECTION = (0.35, 0.7)  # election timeout range, seconds


@dataclass
class Args:
    term: int
    src: int
    last_index: int = 0
    last_term: int = 0
    prev_index: int = 0
    prev_term: int = 0
    entries: list[Any] = field(default_factory=list)
    commit: int = 0
    snapshot: bytes = b""


@dataclass
class Reply:
    term: int
    ok: bool
    match: int = 0
    conflict: int = 0  # on a refused append: where the leader should try next


class Raft:
    def __init__(self, peers, me, persister, apply_ch) -> None:  # noqa: ANN001
        self.peers, self.me, self.n = peers, me, len(peers)
        self.persister = persister
        self.apply_ch = apply_ch
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()  # ApplyMsg for the applier, or None: stop
        self.term, self.voted, self.role = 0, -1, "follower"
        self.base = 0  # index of the last entry in the snapshot (log[0])
        self.log: list[tuple[int, Any]] = [(0, None)]
        self.snap = persister.read_snapshot()
        self._restore(persister.read_raft_state())
        self.commit = self.applied = self.base  # the tester restores the snapshot itself
        self.votes = 0
        self.next = [1] * self.n
        self.match = [0] * self.n
        self.deadline = 0.0
        self.dead = threading.Event()
        self._reset()
        self.loop = threading.Thread(target=self._loop, name=f"loop-S{me}", daemon=True)
        self.applier = threading.Thread(target=self._applier, name=f"apply-S{me}", daemon=True)
        self.loop.start()
        self.applier.start()

    # -- the API and the RPC handlers post to the loop ------------------------------
    def _ask(self, kind: str, arg: Any = None) -> Any:
        answer: queue.Queue = queue.Queue()
        self.inbox.put((kind, arg, answer))
        while True:
            try:
                return answer.get(timeout=0.5)
            except queue.Empty:
                if self.dead.is_set():
                    return None

    def get_state(self):  # noqa: ANN201
        r = self._ask("state")
        return r if r is not None else (0, False)

    def start(self, command):  # noqa: ANN001, ANN201
        r = self._ask("start", command)
        return r if r is not None else (-1, 0, False)

    def snapshot(self, index, snapshot) -> None:  # noqa: ANN001
        self.inbox.put(("snapshot", (index, snapshot), None))  # no wait: see the docstring

    def kill(self) -> None:
        self.dead.set()
        self.inbox.put(("kill", None, None))
        self.loop.join(5)

    def request_vote(self, args):  # noqa: ANN001, ANN201
        return self._ask("vote", args) or Reply(0, False)  # killed: a refusal

    def append_entries(self, args):  # noqa: ANN001, ANN201
        return self._ask("append", args) or Reply(0, False)

    def install_snapshot(self, args):  # noqa: ANN001, ANN201
        return self._ask("install", args) or Reply(0, False)

    # -- the applier: apply messages from the loop to the channel, in order ----------
    def _applier(self) -> None:
        while True:
            msg = self.outbox.get()
            if msg is None or not self.apply_ch.put(msg):
                return  # killed, or the channel is closed: the test is over

    # -- the loop: the only thread that touches state ---------------------------------
    def _reset(self) -> None:
        self.deadline = time.monotonic() + random.uniform(*ELECTION)

    def _loop(self) -> None:
        next_beat = 0.0
        while True:
            # Sleep until the next message or this role's own deadline, nothing else: a
            # leader's election deadline is stale (it does not campaign), and waiting on
            # it made the leader's loop spin; state only changes on a message or a timer,
            # so no periodic poll is needed either.
            due = next_beat if self.role == "leader" else self.deadline
            try:
                kind, arg, answer = self.inbox.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:
                kind = None
            if kind == "kill":
                self.outbox.put(None)
                return
            if kind is not None:
                result = getattr(self, f"_on_{kind}")(arg)
                if answer is not None:
                    answer.put(result)
            now = time.monotonic()
            if self.role != "leader" and now >= self.deadline:
                self._campaign()
            if self.role == "leader" and now >= next_beat:
                self._broadcast()
                next_beat = now + HEARTBEAT
            self._apply()

    # -- the log, with the snapshot in front --------------------------------------------
    def _last(self) -> int:
        return self.base + len(self.log) - 1

    def _term_at(self, i: int) -> int:
        return self.log[i - self.base][0]

    def _persist(self) -> None:
        state = pickle.dumps((self.term, self.voted, self.base, self.log))
        self.persister.save(state, self.snap or None)

    def _restore(self, data: bytes) -> None:
        if data:
            self.term, self.voted, self.base, log = pickle.loads(data)
            self.log = [tuple(e) for e in log]

    def _trim(self, index: int, term: int) -> None:
        """Drop the log up to ``index`` (now in the snapshot), keeping what follows it."""
        if index <= self._last() and self._term_at(index) == term:
            rest = self.log[index - self.base + 1:]
        else:
            rest = []
        self.log = [(term, None), *rest]
        self.base = index

    # -- elections ------------------------------------------------------------------
    def _step_down(self, term: int) -> None:
        if term > self.term:
            self.term, self.voted, self.role = term, -1, "follower"
            self._persist()

    def _campaign(self) -> None:
        self.term += 1
        self.role, self.voted, self.votes = "candidate", self.me, 1
        self._persist()
        self._reset()
        args = Args(self.term, self.me, self._last(), self._term_at(self._last()))
        for p in range(self.n):
            if p != self.me:
                self._send(p, "Raft.request_vote", args, "vote_reply")

    def _on_vote(self, a: Args) -> Reply:
        self._step_down(a.term)
        mine = (self._term_at(self._last()), self._last())
        ok = (a.term == self.term and self.voted in (-1, a.src)
              and (a.last_term, a.last_index) >= mine)
        if ok:
            self.voted = a.src
            self._persist()
            self._reset()
        return Reply(self.term, ok)

    def _on_vote_reply(self, x: Any) -> None:
        _, args, reply = x
        self._step_down(reply.term)
        if self.role == "candidate" and self.term == args.term and reply.ok:
            self.votes += 1
            if self.votes * 2 > self.n:
                self.role = "leader"
                self.next = [self._last() + 1] * self.n
                self.match = [0] * self.n
                self.match[self.me] = self._last()
                self._broadcast()

    # -- replication ----------------------------------------------------------------
    def _broadcast(self) -> None:
        for p in range(self.n):
            if p == self.me:
                continue
            prev = self.next[p] - 1
            if prev < self.base:  # what it needs is in the snapshot: send that
                args = Args(self.term, self.me, last_index=self.base,
                            last_term=self._term_at(self.base), snapshot=self.snap)
                self._send(p, "Raft.install_snapshot", args, "install_reply")
                continue
            args = Args(self.term, self.me, prev_index=prev, prev_term=self._term_at(prev),
                        entries=self.log[prev - self.base + 1:], commit=self.commit)
            self._send(p, "Raft.append_entries", args, "append_reply")

    def _send(self, p: int, method: str, args: Args, reply_kind: str) -> None:
        peer, inbox, dead = self.peers[p], self.inbox, self.dead

        def call() -> None:
            reply = peer.call(method, args)
            if reply is not None and not dead.is_set():
                inbox.put((reply_kind, (p, args, reply), None))
        threading.Thread(target=call, daemon=True).start()

    def _on_state(self, _: Any) -> tuple[int, bool]:
        return self.term, self.role == "leader"

    def _on_start(self, command: Any) -> tuple[int, int, bool]:
        if self.role != "leader":
            return -1, self.term, False
        self.log.append((self.term, command))
        self._persist()
        self.match[self.me] = self._last()
        return self._last(), self.term, True

    def _on_append(self, a: Args) -> Reply:
        self._step_down(a.term)
        if a.term < self.term:
            return Reply(self.term, False)
        self.role = "follower"
        self._reset()
        if a.prev_index > self._last():
            return Reply(self.term, False, conflict=self._last() + 1)
        if a.prev_index < self.base:  # the start is in our snapshot: skip what it covers
            skip = self.base - a.prev_index
            if skip > len(a.entries):
                return Reply(self.term, True, a.prev_index + len(a.entries))
            a = Args(a.term, a.src, prev_index=self.base, prev_term=self._term_at(self.base),
                     entries=a.entries[skip:], commit=a.commit)
        if self._term_at(a.prev_index) != a.prev_term:
            bad = self._term_at(a.prev_index)
            first = a.prev_index
            while first - 1 > self.base and self._term_at(first - 1) == bad:
                first -= 1
            return Reply(self.term, False, conflict=max(first, self.base + 1))
        changed = False
        for i, entry in enumerate(a.entries):
            at = a.prev_index + 1 + i
            if at <= self._last() and self._term_at(at) != entry[0]:
                del self.log[at - self.base:]
                changed = True
            if at > self._last():
                self.log.append(tuple(entry))
                changed = True
        if changed:
            self._persist()
        match = a.prev_index + len(a.entries)
        if a.commit > self.commit:
            self.commit = max(self.commit, min(a.commit, match))
        return Reply(self.term, True, match)

    def _on_append_reply(self, x: Any) -> None:
        p, args, reply = x
        self._step_down(reply.term)
        if self.role != "leader" or self.term != args.term:
            return
        if reply.ok:
            self.match[p] = max(self.match[p], reply.match)
            self.next[p] = self.match[p] + 1
            self._advance_commit()
        else:
            self.next[p] = max(1, min(self.next[p] - 1, reply.conflict or self.next[p] - 1))

    def _advance_commit(self) -> None:
        """Commit the highest index a majority holds, if it is of this term (terms only
        grow along the log, so no lower index is of this term then either)."""
        majority = sorted(self.match)[(self.n - 1) // 2]  # held by n - (n-1)//2 peers
        if majority > self.commit and self._term_at(majority) == self.term:
            self.commit = majority

    # -- snapshots --------------------------------------------------------------------
    def _on_snapshot(self, x: tuple[int, bytes]) -> None:
        index, data = x
        if index <= self.base or index > self._last():
            return  # stale, or not ours to take yet
        self.snap = data
        self._trim(index, self._term_at(index))
        self._persist()

    def _on_install(self, a: Args) -> Reply:
        self._step_down(a.term)
        if a.term < self.term:
            return Reply(self.term, False)
        self.role = "follower"
        self._reset()
        if a.last_index <= self.base:
            return Reply(self.term, True, a.last_index)
        self.snap = a.snapshot
        self._trim(a.last_index, a.last_term)
        self._persist()
        self.commit = max(self.commit, a.last_index)
        if self.applied < a.last_index:
            self.applied = a.last_index
            self.outbox.put(ApplyMsg(snapshot_valid=True, snapshot=a.snapshot,
                                     snapshot_term=a.last_term, snapshot_index=a.last_index))
        return Reply(self.term, True, a.last_index)

    def _on_install_reply(self, x: Any) -> None:
        p, args, reply = x
        self._step_down(reply.term)
        if self.role == "leader" and self.term == args.term and reply.ok:
            self.match[p] = max(self.match[p], args.last_index)
            self.next[p] = self.match[p] + 1

    # -- applying -----------------------------------------------------------------------
    def _apply(self) -> None:
        while self.applied < self.commit:
            self.applied += 1
            self.outbox.put(ApplyMsg(command_valid=True, command=self._command_at(self.applied),
                                     command_index=self.applied))

    def _command_at(self, i: int) -> Any:
        return self.log[i - self.base][1]


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201
    return Raft(peers, me, persister, apply_ch)
