"""Part 2C: persistence (docs/tests.md, Part 2C), in the lab's file order."""

from __future__ import annotations

import random
import threading

import pytest

from labtests.config import RAFT_ELECTION_TIMEOUT, is_int
from labtests.failures import start_helper

pytestmark = pytest.mark.part2c


def test_persist1_2c(make_config):
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2C): basic persistence")

    cfg.one(11, servers, True)

    # crash and re-start all
    for i in range(servers):
        cfg.start1(i, cfg.applier)
    for i in range(servers):
        cfg.disconnect(i)
        cfg.connect(i)

    cfg.one(12, servers, True)

    leader1 = cfg.check_one_leader()
    cfg.disconnect(leader1)
    cfg.start1(leader1, cfg.applier)
    cfg.connect(leader1)

    cfg.one(13, servers, True)

    leader2 = cfg.check_one_leader()
    cfg.disconnect(leader2)
    cfg.one(14, servers - 1, True)
    cfg.start1(leader2, cfg.applier)
    cfg.connect(leader2)

    cfg.wait(4, servers, -1)  # wait for leader2 to join before killing i3

    i3 = (cfg.check_one_leader() + 1) % servers
    cfg.disconnect(i3)
    cfg.one(15, servers - 1, True)
    cfg.start1(i3, cfg.applier)
    cfg.connect(i3)

    cfg.one(16, servers, True)

    cfg.end()


def test_persist2_2c(make_config):
    servers = 5
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2C): more persistence")

    index = 1
    for _iters in range(5):
        cfg.one(10 + index, servers, True)
        index += 1

        leader1 = cfg.check_one_leader()

        cfg.disconnect((leader1 + 1) % servers)
        cfg.disconnect((leader1 + 2) % servers)

        cfg.one(10 + index, servers - 2, True)
        index += 1

        cfg.disconnect((leader1 + 0) % servers)
        cfg.disconnect((leader1 + 3) % servers)
        cfg.disconnect((leader1 + 4) % servers)

        cfg.start1((leader1 + 1) % servers, cfg.applier)
        cfg.start1((leader1 + 2) % servers, cfg.applier)
        cfg.connect((leader1 + 1) % servers)
        cfg.connect((leader1 + 2) % servers)

        cfg.sleep(RAFT_ELECTION_TIMEOUT)

        cfg.start1((leader1 + 3) % servers, cfg.applier)
        cfg.connect((leader1 + 3) % servers)

        cfg.one(10 + index, servers - 2, True)
        index += 1

        cfg.connect((leader1 + 4) % servers)
        cfg.connect((leader1 + 0) % servers)

    cfg.one(1000, servers, True)

    cfg.end()


def test_persist3_2c(make_config):
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2C): partitioned leader and one follower crash, leader restarts")

    cfg.one(101, 3, True)

    leader = cfg.check_one_leader()
    cfg.disconnect((leader + 2) % servers)

    cfg.one(102, 2, True)

    cfg.crash1((leader + 0) % servers)
    cfg.crash1((leader + 1) % servers)
    cfg.connect((leader + 2) % servers)
    cfg.start1((leader + 0) % servers, cfg.applier)
    cfg.connect((leader + 0) % servers)

    cfg.one(103, 2, True)

    cfg.start1((leader + 1) % servers, cfg.applier)
    cfg.connect((leader + 1) % servers)

    cfg.one(104, servers, True)

    cfg.end()


def _figure8_sleep(cfg) -> None:
    """Mostly a short sleep (0-12 ms); 10 % of the time up to half an election timeout."""
    if (cfg.rand_int() % 1000) < 100:
        ms = cfg.rand_int() % (int(RAFT_ELECTION_TIMEOUT * 1000) // 2)
        cfg.sleep(ms / 1000)
    else:
        ms = cfg.rand_int() % 13
        cfg.sleep(ms / 1000)


def test_figure8_2c(make_config):
    """Test the scenarios described in Figure 8 of the extended Raft paper.

    Each iteration asks a leader, if there is one, to insert a command in the
    Raft log.  If there is a leader, that leader will fail quickly with a high
    probability (perhaps without committing the command), or crash after a
    while with low probability (most likely committing the command).  If the
    number of alive servers isn't enough to form a majority, perhaps start a
    new server.  The leader in a new term may try to finish replicating log
    entries that haven't been committed yet.
    """
    servers = 5
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2C): Figure 8")

    cfg.one(cfg.rand_int(), 1, True)

    nup = servers
    for _iters in range(1000):
        leader = -1
        for i in range(servers):
            rf = cfg.rafts[i]
            if rf is not None:
                _, _, ok = rf.start(cfg.rand_int())
                if ok:
                    leader = i

        _figure8_sleep(cfg)

        if leader != -1:
            cfg.crash1(leader)
            nup -= 1

        if nup < 3:
            s = cfg.rand_int() % servers
            if cfg.rafts[s] is None:
                cfg.start1(s, cfg.applier)
                cfg.connect(s)
                nup += 1

    for i in range(servers):
        if cfg.rafts[i] is None:
            cfg.start1(i, cfg.applier)
            cfg.connect(i)

    cfg.one(cfg.rand_int(), servers, True)

    cfg.end()


def test_unreliable_agree_2c(make_config):
    servers = 5
    cfg = make_config(servers, True, False)

    cfg.begin("Test (2C): unreliable agreement")

    threads: list[threading.Thread] = []
    for iters in range(1, 50):
        for j in range(4):
            threads.append(
                start_helper(
                    cfg.failures, f"tester-one-{iters}.{j}", cfg.one, (100 * iters) + j, 1, True
                )
            )
        cfg.one(iters, 1, True)

    cfg.set_unreliable(False)

    for thread in threads:
        thread.join()

    cfg.one(100, servers, True)

    cfg.end()


def test_figure8_unreliable_2c(make_config):
    servers = 5
    cfg = make_config(servers, True, False)

    cfg.begin("Test (2C): Figure 8 (unreliable)")

    cfg.one(cfg.rand_int() % 10000, 1, True)

    nup = servers
    for iters in range(1000):
        if iters == 200:
            cfg.set_long_reordering(True)
        leader = -1
        for i in range(servers):
            _, _, ok = cfg.rafts[i].start(cfg.rand_int() % 10000)
            if ok and cfg.connected[i]:
                leader = i

        _figure8_sleep(cfg)

        if leader != -1 and (cfg.rand_int() % 1000) < int(RAFT_ELECTION_TIMEOUT * 1000) // 2:
            cfg.disconnect(leader)
            nup -= 1

        if nup < 3:
            s = cfg.rand_int() % servers
            if not cfg.connected[s]:
                cfg.connect(s)
                nup += 1

    for i in range(servers):
        if not cfg.connected[i]:
            cfg.connect(i)

    cfg.one(cfg.rand_int() % 10000, servers, True)

    cfg.end()


def internal_churn(make_config, unreliable: bool) -> None:
    """Concurrent clients submit while servers are disconnected, crashed and restarted;
    everything a client saw committed must be in the final log."""
    servers = 5
    cfg = make_config(servers, unreliable, False)

    if unreliable:
        cfg.begin("Test (2C): unreliable churn")
    else:
        cfg.begin("Test (2C): churn")

    stop = threading.Event()

    # create concurrent clients
    def cfn(me: int, rng: random.Random, results: list) -> None:
        ret = None
        try:
            values: list[int] = []
            while not stop.is_set():
                x = rng.randrange(2**63)
                index = -1
                ok = False
                for i in range(servers):
                    # try them all, maybe one of them is a leader
                    with cfg.mu:
                        rf = cfg.rafts[i]
                    if rf is not None:
                        index1, _, ok1 = rf.start(x)
                        if ok1:
                            ok = ok1
                            index = index1
                if ok:
                    # maybe leader will commit our value, maybe not.
                    # but don't wait forever.
                    for to in (10, 20, 50, 100, 200):
                        nd, cmd = cfg.n_committed(index)
                        if nd > 0:
                            if is_int(cmd):
                                if cmd == x:
                                    values.append(x)
                            else:
                                cfg.fail("wrong command type")
                            break
                        cfg.sleep(to / 1000)
                else:
                    cfg.sleep((79 + me * 17) / 1000)
            ret = values
        finally:
            results[me] = ret

    ncli = 3
    results: list = [None] * ncli
    clients = [
        start_helper(cfg.failures, f"tester-churn-client-{i}", cfn, i,
                     random.Random(cfg.rand_int()), results)
        for i in range(ncli)
    ]

    for _iters in range(20):
        if (cfg.rand_int() % 1000) < 200:
            i = cfg.rand_int() % servers
            cfg.disconnect(i)

        if (cfg.rand_int() % 1000) < 500:
            i = cfg.rand_int() % servers
            if cfg.rafts[i] is None:
                cfg.start1(i, cfg.applier)
            cfg.connect(i)

        if (cfg.rand_int() % 1000) < 200:
            i = cfg.rand_int() % servers
            if cfg.rafts[i] is not None:
                cfg.crash1(i)

        # Make crash/restart infrequent enough that the peers can often
        # keep up, but not so infrequent that everything has settled
        # down from one change to the next. Pick a value smaller than
        # the election timeout, but not hugely smaller.
        cfg.sleep((RAFT_ELECTION_TIMEOUT * 7) / 10)

    cfg.sleep(RAFT_ELECTION_TIMEOUT)
    cfg.set_unreliable(False)
    for i in range(servers):
        if cfg.rafts[i] is None:
            cfg.start1(i, cfg.applier)
        cfg.connect(i)

    stop.set()

    values: list[int] = []
    for i in range(ncli):
        clients[i].join()
        vv = results[i]
        if vv is None:
            cfg.fail("client failed")
        values.extend(vv)

    cfg.sleep(RAFT_ELECTION_TIMEOUT)

    last_index = cfg.one(cfg.rand_int(), servers, True)

    really = [0] * (last_index + 1)
    for index in range(1, last_index + 1):
        v = cfg.wait(index, servers, -1)
        if is_int(v):
            really.append(v)
        else:
            cfg.fail("not an int")

    really_set = set(really)
    for v1 in values:
        if v1 not in really_set:
            cfg.fail("didn't find a value")

    cfg.end()


def test_reliable_churn_2c(make_config):
    internal_churn(make_config, False)


def test_unreliable_churn_2c(make_config):
    internal_churn(make_config, True)
