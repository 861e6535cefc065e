"""Toy for simulated time: the bundled Raft with one change -- a leader that does not
step down when a reply carries a higher term.

A deposed leader (partitioned away while the others elected a new one, then
reconnected) sends its entries, is refused (its term is stale), backs up its
``next_index`` and sends again at once: a busy exchange of zero-delay RPCs
with its followers, until the new leader's next heartbeat (a *request*, which
still makes it step down) arrives, about 100 ms later.  In real time that is
harmless; a simulator whose clock only moves when every thread is blocked
never reaches that heartbeat.  The self-test checks that ``--sim`` gives this
Raft the verdict real time gives it.

The change is the whole of :meth:`Raft._reply_counts` below: the reference's
version, minus the step-down.  If the reference Raft is refactored so that the
method disappears, this module refuses to load, naming what to update.
"""

from __future__ import annotations

from typing import Any

from raft.reference import raft as reference

if not hasattr(reference.Raft, "_reply_counts"):  # pragma: no cover - a refactor's reminder
    raise ImportError("tests/toys_sim/no_step_down.py overrides "
                      "raft.reference.raft.Raft._reply_counts, which no longer exists: "
                      "move its one change to the new reply path")


class Raft(reference.Raft):
    def _reply_counts(self, p: int, seq: int, reply: Any, sent_term: int) -> bool:
        if self._dead.is_set():
            return False
        self._finish_send(p, seq, reply is not None)
        if reply is None:
            return False
        # BUG: the reference calls self._observe_term(reply.term) here and steps down.
        return self.role == reference.LEADER and self.term == sent_term


def make(peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Raft:
    return Raft(peers, me, persister, apply_ch)
