"""A Raft peer: the skeleton to fill in, part by part (2A, 2B, 2C, 2D).

Read the extended Raft paper first; its Figure 2 is the specification of
almost everything below, and Section 7 (with Figure 13) of snapshots for 2D.
Every method says which part needs it.  Until you write them, the tests fail
with the lab's own messages ("expected one leader, got none", "one(...)
failed to reach agreement"): that is where you start.

The tester's side of the contract (the README of your workspace has it all):

* ``make(peers, me, persister, apply_ch)`` returns at once; long-running work
  goes in threads it starts, and every one of them ends soon after ``kill()``.
* Every *public* method that takes exactly one argument is an RPC handler that
  other peers can call with ``peers[j].call("Raft.request_vote", args)``.
  ``start(command)`` is one too (harmless); helpers that take one argument and
  must not be callable over the network start with ``_``.  A handler must
  always return a reply object, even after ``kill()`` (returning ``None`` fails
  the test).
* RPC argument and reply classes are defined at module level (as here): they
  are pickled on their way through the network.
* ``call`` returns the reply, or ``None`` if the network lost the request or
  the reply; it may take up to about 7 seconds to give up, so never call it
  while holding ``self.mu``, and never wait for one peer before asking the next.
* Only ``threading``, ``time``, ``queue`` and ``random`` for concurrency and
  time: that is what the simulated clock (``raftlab test --sim``) can follow.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from raft.api import ApplyMsg  # noqa: F401 - you will send these on apply_ch (2B)
from raft.apply_channel import ApplyChannel
from raft.debuglog import dlog
from raft.persister import Persister

# --- RPC messages (Figure 2) -------------------------------------------------------
# Field names are yours to choose; these follow the paper.


@dataclass
class RequestVoteArgs:
    """RequestVote RPC arguments (2A; the last-log fields matter from 2B on)."""

    term: int = 0
    candidate_id: int = 0
    last_log_index: int = 0
    last_log_term: int = 0


@dataclass
class RequestVoteReply:
    """RequestVote RPC reply (2A)."""

    term: int = 0
    vote_granted: bool = False


@dataclass
class AppendEntriesArgs:
    """AppendEntries RPC arguments: heartbeats in 2A, log entries from 2B on."""

    term: int = 0
    leader_id: int = 0
    prev_log_index: int = 0
    prev_log_term: int = 0
    entries: list[Any] | None = None
    leader_commit: int = 0


@dataclass
class AppendEntriesReply:
    """AppendEntries RPC reply (2A, 2B; 2C's unreliable tests need the faster back-up of
    the paper's Section 5.3: add the conflicting term and its first index)."""

    term: int = 0
    success: bool = False


@dataclass
class InstallSnapshotArgs:
    """InstallSnapshot RPC arguments (2D, Figure 13; no chunking: send ``data`` whole)."""

    term: int = 0
    leader_id: int = 0
    last_included_index: int = 0
    last_included_term: int = 0
    data: bytes = b""


@dataclass
class InstallSnapshotReply:
    """InstallSnapshot RPC reply (2D)."""

    term: int = 0


# --- the peer -------------------------------------------------------------------------


class Raft:
    """One Raft peer."""

    def __init__(self, peers: list[Any], me: int, persister: Persister,
                 apply_ch: ApplyChannel) -> None:
        self.mu = threading.Lock()  # guards every field below that threads share
        self.peers = peers          # labrpc ClientEnds, one per peer; peers[me] is this one
        self.me = me                # this peer's index in peers
        self.persister = persister  # where _persist() saves the state (2C) and snapshot (2D)
        self.apply_ch = apply_ch    # committed commands and snapshots go here (2B, 2D)
        self.dead = threading.Event()  # set by kill()

        # Your state here (2A, 2B, 2C, 2D): Figure 2's "State" box.
        # Persistent on all servers: current term, voted for, log[].
        # Volatile on all servers: commit index, last applied.
        # Volatile on leaders: next index[], match index[].
        # Also whatever you need to run elections (when did you last hear from a leader?).
        self.current_term = 0

    # --- the API the tester calls ------------------------------------------------------

    def get_state(self) -> tuple[int, bool]:
        """Return (current term, whether this peer believes it is the leader).  (2A)"""
        term = 0
        is_leader = False
        # Your code here (2A).
        return term, is_leader

    def start(self, command: Any) -> tuple[int, int, bool]:
        """Start agreement on ``command``; return (index, term, is_leader) at once.  (2B)

        If this peer is not the leader, return ``is_leader = False``.  Otherwise
        append the command to the log and return the index it will have if it is
        ever committed, and the current term, without waiting for agreement: the
        command may never commit (the leader may fail or lose an election).
        """
        index = -1
        term = -1
        is_leader = False
        # Your code here (2B).
        return index, term, is_leader

    def snapshot(self, index: int, snapshot: bytes) -> None:
        """The service has made a snapshot of every entry up to ``index``.  (2D)

        Discard the log up to and including ``index`` and keep ``snapshot`` (save
        it with your state on every later save).  The tester calls this from the
        thread that reads the apply channel, every 10 applied entries, and waits
        for it: never hold ``self.mu`` while you block on ``apply_ch.put``.
        """
        # Your code here (2D).

    def kill(self) -> None:
        """The tester is done with this peer (a crash, or the end of a test).

        Stop acting: every thread this peer started must end promptly (long
        sleeps and waits should check :meth:`killed`).  Handlers may still be
        called after this and must still return a reply.
        """
        self.dead.set()
        dlog("INFO", self.me, "killed")  # a debug log line: raftlab test --debug shows them
        # Your code here, if anything (wake up threads that wait on conditions).

    def killed(self) -> bool:
        return self.dead.is_set()

    # --- persistence (2C) ---------------------------------------------------------------

    def _persist(self) -> None:
        """Save the state Figure 2 calls persistent (2C), with the snapshot (2D).

        For example: ``self.persister.save(pickle.dumps((self.current_term,
        self.voted_for, self.log)), None)``; from 2D on pass the current snapshot
        instead of ``None``, or it is lost.  2D's tests require the saved state
        (not counting the snapshot) to stay under 2000 bytes.
        """
        # Your code here (2C).

    def _read_persist(self, data: bytes) -> None:
        """Restore the state saved by :meth:`_persist` (``data`` is empty on a first start)."""
        if not data:
            return
        # Your code here (2C).

    # --- RPC handlers (called by other peers) --------------------------------------------

    def request_vote(self, args: RequestVoteArgs) -> RequestVoteReply:
        """RequestVote RPC handler (Figure 2, "RequestVote RPC: receiver implementation")."""
        reply = RequestVoteReply()
        # Your code here (2A, 2B).
        return reply

    def append_entries(self, args: AppendEntriesArgs) -> AppendEntriesReply:
        """AppendEntries RPC handler: heartbeats (2A), log replication (2B)."""
        reply = AppendEntriesReply()
        # Your code here (2A, 2B).
        return reply

    def install_snapshot(self, args: InstallSnapshotArgs) -> InstallSnapshotReply:
        """InstallSnapshot RPC handler (2D, Figure 13).

        A snapshot newer than your log goes to the service on the apply channel as
        ``ApplyMsg(snapshot_valid=True, snapshot=..., snapshot_term=...,
        snapshot_index=...)`` (not while holding ``self.mu``); commands then
        continue at ``snapshot_index + 1``.
        """
        reply = InstallSnapshotReply()
        # Your code here (2D).
        return reply

    # --- sending RPCs -------------------------------------------------------------------

    def _send_request_vote(self, server: int, args: RequestVoteArgs) -> RequestVoteReply | None:
        """Ask peer ``server`` for its vote: the reply, or None if the network lost it.

        Never call this while holding ``self.mu``; send to all peers in parallel
        (a thread per call, or a pool), since one call may take seconds to fail.
        """
        return self.peers[server].call("Raft.request_vote", args)

    # --- background work ----------------------------------------------------------------

    def _ticker(self) -> None:
        """Start an election when no heartbeat arrived for a randomised timeout.  (2A)

        The tests want a new leader within about five seconds of a failure, and a
        leader sends at most about ten heartbeats per second, so the election
        timeout must be longer than the paper's 150-300 ms and randomised.
        """
        while not self.killed():
            # Your code here (2A): should this peer start an election?
            # Pause for a random time between 50 and 350 ms.
            time.sleep(random.uniform(0.05, 0.35))


def make(peers: list[Any], me: int, persister: Persister, apply_ch: ApplyChannel) -> Raft:
    """Create a Raft peer and start its background threads; return at once.

    ``persister`` holds what this peer saved before it last crashed (empty on a
    first start).  Committed commands go to ``apply_ch`` as ``ApplyMsg``s with
    ``command_valid=True`` and ``command_index`` 1, 2, 3, ... without gaps (2B).
    """
    rf = Raft(peers, me, persister, apply_ch)
    # Initialise from the state persisted before a crash (2C).
    rf._read_persist(persister.read_raft_state())
    threading.Thread(target=rf._ticker, name=f"raft-S{me}-ticker", daemon=True).start()
    return rf
