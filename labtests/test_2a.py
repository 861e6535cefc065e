"""Part 2A: leader election (docs/tests.md, Part 2A), in the lab's file order."""

from __future__ import annotations

import pytest

from labtests.config import RAFT_ELECTION_TIMEOUT

pytestmark = pytest.mark.part2a


def test_initial_election_2a(make_config):
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2A): initial election")

    # is a leader elected?
    cfg.check_one_leader()

    # sleep a bit to avoid racing with followers learning of the
    # election, then check that all peers agree on the term.
    cfg.sleep(0.050)
    term1 = cfg.check_terms()
    if term1 < 1:
        cfg.fail(f"term is {term1}, but should be at least 1")

    # does the leader+term stay the same if there is no network failure?
    cfg.sleep(2 * RAFT_ELECTION_TIMEOUT)
    term2 = cfg.check_terms()
    if term1 != term2:
        cfg.warn("warning: term changed even though there were no failures")

    # there should still be a leader.
    cfg.check_one_leader()

    cfg.end()


def test_re_election_2a(make_config):
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2A): election after network failure")

    leader1 = cfg.check_one_leader()

    # if the leader disconnects, a new one should be elected.
    cfg.disconnect(leader1)
    cfg.check_one_leader()

    # if the old leader rejoins, that shouldn't disturb the new leader.
    # and the old leader should switch to follower.
    cfg.connect(leader1)
    leader2 = cfg.check_one_leader()

    # if there's no quorum, no new leader should be elected.
    cfg.disconnect(leader2)
    cfg.disconnect((leader2 + 1) % servers)
    cfg.sleep(2 * RAFT_ELECTION_TIMEOUT)

    # check that the one connected server does not think it is the leader.
    cfg.check_no_leader()

    # if a quorum arises, it should elect a leader.
    cfg.connect((leader2 + 1) % servers)
    cfg.check_one_leader()

    # re-join of last node shouldn't prevent leader from existing.
    cfg.connect(leader2)
    cfg.check_one_leader()

    cfg.end()


def test_many_elections_2a(make_config):
    servers = 7
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2A): multiple elections")

    cfg.check_one_leader()

    iters = 10
    for _ii in range(1, iters):
        # disconnect three nodes
        i1 = cfg.rand_int() % servers
        i2 = cfg.rand_int() % servers
        i3 = cfg.rand_int() % servers
        cfg.disconnect(i1)
        cfg.disconnect(i2)
        cfg.disconnect(i3)

        # either the current leader should still be alive,
        # or the remaining four should elect a new one.
        cfg.check_one_leader()

        cfg.connect(i1)
        cfg.connect(i2)
        cfg.connect(i3)

    cfg.check_one_leader()

    cfg.end()
