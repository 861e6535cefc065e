"""A Raft whose state lives in one thread: an event loop fed by a queue.

Not a full Raft: enough of one (elections and replication, no persistence
subtleties) to pass the 2A/2B basics, with every field read and written only
by the loop thread.  RPC handlers and the API methods post a request on the
queue and wait for the loop's answer on a per-request queue.  The race
detector must report nothing: the queue orders everything.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from raft.api import ApplyMsg

HEARTBEAT = 0.1


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


@dataclass
class Reply:
    term: int
    ok: bool
    match: int = 0


class Raft:
    def __init__(self, peers, me, persister, apply_ch) -> None:  # noqa: ANN001
        self.peers, self.me, self.n = peers, me, len(peers)
        self.apply_ch = apply_ch
        self.inbox: queue.Queue = queue.Queue()
        self.term, self.voted, self.role = 0, -1, "follower"
        self.log: list[tuple[int, Any]] = [(0, None)]
        self.commit = self.applied = 0
        self.votes = 0
        self.next = [1] * self.n
        self.match = [0] * self.n
        self.deadline = 0.0
        self.dead = threading.Event()
        self._reset()
        self.loop = threading.Thread(target=self._loop, name=f"loop-S{me}", daemon=True)
        self.loop.start()

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
        pass

    def kill(self) -> None:
        self.dead.set()
        self.inbox.put(("kill", None, None))
        self.loop.join(5)

    def request_vote(self, args):  # noqa: ANN001, ANN201
        return self._ask("vote", args) or Reply(0, False)  # killed: a refusal

    def append_entries(self, args):  # noqa: ANN001, ANN201
        return self._ask("append", args) or Reply(0, False)

    # -- the loop: the only thread that touches state ---------------------------------
    def _reset(self) -> None:
        self.deadline = time.monotonic() + random.uniform(0.35, 0.7)

    def _loop(self) -> None:
        next_beat = 0.0
        while True:
            now = time.monotonic()
            wait = max(0.0, min(self.deadline, next_beat if self.role == "leader" else 1e18) - now)
            try:
                kind, arg, answer = self.inbox.get(timeout=min(wait, 0.05))
            except queue.Empty:
                kind = None
            if kind == "kill":
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

    def _step_down(self, term: int) -> None:
        if term > self.term:
            self.term, self.voted, self.role = term, -1, "follower"

    def _campaign(self) -> None:
        self.term += 1
        self.role, self.voted, self.votes = "candidate", self.me, 1
        self._reset()
        args = Args(self.term, self.me, len(self.log) - 1, self.log[-1][0])
        for p in range(self.n):
            if p != self.me:
                self._send(p, "Raft.request_vote", args, "vote_reply")

    def _broadcast(self) -> None:
        for p in range(self.n):
            if p != self.me:
                prev = self.next[p] - 1
                args = Args(self.term, self.me, prev_index=prev, prev_term=self.log[prev][0],
                            entries=self.log[prev + 1:], commit=self.commit)
                self._send(p, "Raft.append_entries", args, "append_reply")

    def _send(self, p: int, method: str, args: Args, reply_kind: str) -> None:
        def call() -> None:
            reply = self.peers[p].call(method, args)
            if reply is not None and not self.dead.is_set():
                self.inbox.put((reply_kind, (p, args, reply), None))
        threading.Thread(target=call, daemon=True).start()

    def _on_state(self, _: Any) -> tuple[int, bool]:
        return self.term, self.role == "leader"

    def _on_start(self, command: Any) -> tuple[int, int, bool]:
        if self.role != "leader":
            return -1, self.term, False
        self.log.append((self.term, command))
        self.match[self.me] = len(self.log) - 1
        return len(self.log) - 1, self.term, True

    def _on_vote(self, a: Args) -> Reply:
        self._step_down(a.term)
        mine = (self.log[-1][0], len(self.log) - 1)
        ok = (a.term == self.term and self.voted in (-1, a.src)
              and (a.last_term, a.last_index) >= mine)
        if ok:
            self.voted = a.src
            self._reset()
        return Reply(self.term, ok)

    def _on_vote_reply(self, x: Any) -> None:
        _, args, reply = x
        self._step_down(reply.term)
        if self.role == "candidate" and self.term == args.term and reply.ok:
            self.votes += 1
            if self.votes * 2 > self.n:
                self.role = "leader"
                self.next = [len(self.log)] * self.n
                self.match = [0] * self.n
                self.match[self.me] = len(self.log) - 1
                self._broadcast()

    def _on_append(self, a: Args) -> Reply:
        self._step_down(a.term)
        if a.term < self.term:
            return Reply(self.term, False)
        self.role = "follower"
        self._reset()
        if a.prev_index >= len(self.log) or self.log[a.prev_index][0] != a.prev_term:
            return Reply(self.term, False)
        for i, entry in enumerate(a.entries):
            at = a.prev_index + 1 + i
            if at < len(self.log) and self.log[at][0] != entry[0]:
                del self.log[at:]
            if at >= len(self.log):
                self.log.append(tuple(entry))
        match = a.prev_index + len(a.entries)
        if a.commit > self.commit:
            self.commit = min(a.commit, match)
        return Reply(self.term, True, match)

    def _on_append_reply(self, x: Any) -> None:
        p, args, reply = x
        self._step_down(reply.term)
        if self.role != "leader" or self.term != args.term:
            return
        if reply.ok:
            self.match[p] = max(self.match[p], reply.match)
            self.next[p] = self.match[p] + 1
            for i in range(len(self.log) - 1, self.commit, -1):
                if self.log[i][0] == self.term and sum(m >= i for m in self.match) * 2 > self.n:
                    self.commit = i
                    break
        else:
            self.next[p] = max(1, self.next[p] - 1)

    def _apply(self) -> None:
        while self.applied < self.commit:
            self.applied += 1
            msg = ApplyMsg(command_valid=True, command=self.log[self.applied][1],
                           command_index=self.applied)
            if not self.apply_ch.put(msg):
                return


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201
    return Raft(peers, me, persister, apply_ch)
