"""Individual RPCs for the timeline: labrpc's ``on_rpc`` observer, mapped to peers.

labrpc knows end and server names, not peers.  The tester names each end it
makes (``Config.start1``) and keeps the route of every name: (caller peer,
callee peer, generation of the caller's instance).  :class:`Traffic` looks the
end up there and hands the event to the recorder (:meth:`Recorder.rpc`), which
keeps a bounded ring of them and infers the candidate role from the vote-ish
ones.  A call from a crashed instance's end is kept, marked ``old``, and never
makes a candidate.

Why this is safe to leave on in every run: the observer runs on the caller's
thread, takes no lock and blocks on nothing (dict reads and list appends
under the GIL), draws nothing from the network's random stream, and reads the
clock the recorder uses (virtual under ``--sim``, without counting as a poll):
so a simulated schedule is the same with it as without it
(``tests/test_timeline.py``).  Under ``--isolate`` the peers' RPCs still cross
the tester's network (``call_raw``), so it sees them too.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from labtests.timeline.recorder import Recorder
from labtests.timeline.rpcring import MAX_METHODS


def is_vote(method: str) -> bool:
    """Vote-ish: the method's name contains "vote", in any case (``Raft.RequestVote``,
    ``Raft.request_vote``...).  The heuristic behind the candidate role."""
    return "vote" in method.rpartition(".")[2].lower()


class Traffic:
    """The network observer of one Config: install with :meth:`install`."""

    def __init__(self, recorder: Recorder, routes: dict[Any, tuple[int, int, int]],
                 generations: list[int]) -> None:
        self.rec = recorder
        self.routes = routes  # Config._end_routes: end name -> (caller, callee, generation)
        self.generations = generations  # Config._generation: peer -> current instance
        self._votes: dict[str, bool] = {}
        self.net: Any = None

    def install(self, net: Any) -> Traffic:
        self.rec.rpcs.allocate()  # here, in the tester's thread, before any RPC
        self.net = net
        net.on_rpc = self
        return self

    def remove(self) -> None:
        if self.net is not None and self.net.on_rpc is self:
            self.net.on_rpc = None

    def __call__(self, endname: Hashable, servername: Hashable, method: str, outcome: str,
                 nbytes: int) -> None:
        route = self.routes.get(endname)
        if route is None:
            return  # not an end the tester made
        caller, callee, generation = route
        vote = self._votes.get(method)
        if vote is None:
            vote = is_vote(method)
            if len(self._votes) < MAX_METHODS:  # a hostile Raft may invent any number
                self._votes[method] = vote
        stale = generation != self.generations[caller]
        self.rec.rpc(caller, callee, method, outcome, nbytes, vote=vote, stale=stale)
