"""Part 2B: log replication (docs/tests.md, Part 2B; 2023 set), in the lab's file order."""

from __future__ import annotations

import pytest

from labtests.config import RAFT_ELECTION_TIMEOUT, fmt_v, is_int, randstring
from labtests.failures import start_helper

pytestmark = pytest.mark.part2b


def test_basic_agree_2b(make_config):
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): basic agreement")

    iters = 3
    for index in range(1, iters + 1):
        nd, _ = cfg.n_committed(index)
        if nd > 0:
            cfg.fail("some have committed before Start()")

        xindex = cfg.one(index * 100, servers, False)
        if xindex != index:
            cfg.fail(f"got index {xindex} but expected {index}")

    cfg.end()


def test_rpc_bytes_2b(make_config):
    """Check, based on counting bytes of RPCs, that each command is sent to each peer
    just once."""
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): RPC byte count")

    cfg.one(99, servers, False)
    bytes0 = cfg.bytes_total()

    iters = 10
    sent = 0
    for index in range(2, iters + 2):
        cmd = randstring(cfg.rng, 5000)
        xindex = cfg.one(cmd, servers, False)
        if xindex != index:
            cfg.fail(f"got index {xindex} but expected {index}")
        sent += len(cmd)

    bytes1 = cfg.bytes_total()
    got = bytes1 - bytes0
    expected = servers * sent
    if got > expected + 50000:
        cfg.fail(f"too many RPC bytes; got {got}, expected {expected}")

    cfg.end()


def test_follower_failure_2b(make_config):
    """Test just failure of followers."""
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): test progressive failure of followers")

    cfg.one(101, servers, False)

    # disconnect one follower from the network.
    leader1 = cfg.check_one_leader()
    cfg.disconnect((leader1 + 1) % servers)

    # the leader and remaining follower should be
    # able to agree despite the disconnected follower.
    cfg.one(102, servers - 1, False)
    cfg.sleep(RAFT_ELECTION_TIMEOUT)
    cfg.one(103, servers - 1, False)

    # disconnect the remaining follower
    leader2 = cfg.check_one_leader()
    cfg.disconnect((leader2 + 1) % servers)
    cfg.disconnect((leader2 + 2) % servers)

    # submit a command.
    index, _, ok = cfg.rafts[leader2].start(104)
    if not ok:
        cfg.fail("leader rejected Start()")
    if index != 4:
        cfg.fail(f"expected index 4, got {index}")

    cfg.sleep(2 * RAFT_ELECTION_TIMEOUT)

    # check that command 104 did not commit.
    n, _ = cfg.n_committed(index)
    if n > 0:
        cfg.fail(f"{n} committed but no majority")

    cfg.end()


def test_leader_failure_2b(make_config):
    """Test just failure of leaders."""
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): test failure of leaders")

    cfg.one(101, servers, False)

    # disconnect the first leader.
    leader1 = cfg.check_one_leader()
    cfg.disconnect(leader1)

    # the remaining followers should elect
    # a new leader.
    cfg.one(102, servers - 1, False)
    cfg.sleep(RAFT_ELECTION_TIMEOUT)
    cfg.one(103, servers - 1, False)

    # disconnect the new leader.
    leader2 = cfg.check_one_leader()
    cfg.disconnect(leader2)

    # submit a command to each server.
    for i in range(servers):
        cfg.rafts[i].start(104)

    cfg.sleep(2 * RAFT_ELECTION_TIMEOUT)

    # check that command 104 did not commit.
    n, _ = cfg.n_committed(4)
    if n > 0:
        cfg.fail(f"{n} committed but no majority")

    cfg.end()


def test_fail_agree_2b(make_config):
    """Test that a follower participates after disconnect and re-connect."""
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): agreement after follower reconnects")

    cfg.one(101, servers, False)

    # disconnect one follower from the network.
    leader = cfg.check_one_leader()
    cfg.disconnect((leader + 1) % servers)

    # the leader and remaining follower should be
    # able to agree despite the disconnected follower.
    cfg.one(102, servers - 1, False)
    cfg.one(103, servers - 1, False)
    cfg.sleep(RAFT_ELECTION_TIMEOUT)
    cfg.one(104, servers - 1, False)
    cfg.one(105, servers - 1, False)

    # re-connect
    cfg.connect((leader + 1) % servers)

    # the full set of servers should preserve
    # previous agreements, and be able to agree
    # on new commands.
    cfg.one(106, servers, True)
    cfg.sleep(RAFT_ELECTION_TIMEOUT)
    cfg.one(107, servers, True)

    cfg.end()


def test_fail_no_agree_2b(make_config):
    servers = 5
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): no agreement if too many followers disconnect")

    cfg.one(10, servers, False)

    # 3 of 5 followers disconnect
    leader = cfg.check_one_leader()
    cfg.disconnect((leader + 1) % servers)
    cfg.disconnect((leader + 2) % servers)
    cfg.disconnect((leader + 3) % servers)

    index, _, ok = cfg.rafts[leader].start(20)
    if not ok:
        cfg.fail("leader rejected Start()")
    if index != 2:
        cfg.fail(f"expected index 2, got {index}")

    cfg.sleep(2 * RAFT_ELECTION_TIMEOUT)

    n, _ = cfg.n_committed(index)
    if n > 0:
        cfg.fail(f"{n} committed but no majority")

    # repair
    cfg.connect((leader + 1) % servers)
    cfg.connect((leader + 2) % servers)
    cfg.connect((leader + 3) % servers)

    # the disconnected majority may have chosen a leader from
    # among their own ranks, forgetting index 2.
    leader2 = cfg.check_one_leader()
    index2, _, ok2 = cfg.rafts[leader2].start(30)
    if not ok2:
        cfg.fail("leader2 rejected Start()")
    if index2 < 2 or index2 > 3:
        cfg.fail(f"unexpected index {index2}")

    cfg.one(1000, servers, True)

    cfg.end()


def test_concurrent_starts_2b(make_config):
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): concurrent Start()s")

    success = False
    for attempt in range(5):
        if attempt > 0:
            # give solution some time to settle
            cfg.sleep(3)

        leader = cfg.check_one_leader()
        _, term, ok = cfg.rafts[leader].start(1)
        if not ok:
            # leader moved on really quickly
            continue

        iters = 5
        collected: list[int] = []  # the channel "is" of the Go test

        def starter(i: int, rf=cfg.rafts[leader], term=term, collected=collected) -> None:
            index, term1, ok = rf.start(100 + i)
            if term1 != term:
                return
            if not ok:
                return
            collected.append(index)

        threads = [
            start_helper(cfg.failures, f"tester-start-{attempt}.{ii}", starter, ii)
            for ii in range(iters)
        ]
        for thread in threads:
            thread.join()

        term_changed = False
        for j in range(servers):
            t, _ = cfg.rafts[j].get_state()
            if t != term:
                # term changed -- can't expect low RPC counts
                term_changed = True
                break
        if term_changed:
            continue

        failed = False
        cmds: list[int] = []
        for index in collected:
            cmd = cfg.wait(index, servers, term)
            if is_int(cmd):
                if cmd == -1:
                    # peers have moved on to later terms
                    # so we can't expect all Start()s to
                    # have succeeded
                    failed = True
                    break
                cmds.append(cmd)
            else:
                cfg.fail(f"value {fmt_v(cmd)} is not an int")

        if failed:
            continue

        for ii in range(iters):
            x = 100 + ii
            found = False
            for j in range(len(cmds)):
                if cmds[j] == x:
                    found = True
            if not found:
                cfg.fail(f"cmd {x} missing in {fmt_v(cmds)}")

        success = True
        break

    if not success:
        cfg.fail("term changed too often")

    cfg.end()


def test_rejoin_2b(make_config):
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): rejoin of partitioned leader")

    cfg.one(101, servers, True)

    # leader network failure
    leader1 = cfg.check_one_leader()
    cfg.disconnect(leader1)

    # make old leader try to agree on some entries
    cfg.rafts[leader1].start(102)
    cfg.rafts[leader1].start(103)
    cfg.rafts[leader1].start(104)

    # new leader commits, also for index=2
    cfg.one(103, 2, True)

    # new leader network failure
    leader2 = cfg.check_one_leader()
    cfg.disconnect(leader2)

    # old leader connected again
    cfg.connect(leader1)

    cfg.one(104, 2, True)

    # all together now
    cfg.connect(leader2)

    cfg.one(105, servers, True)

    cfg.end()


def test_backup_2b(make_config):
    servers = 5
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): leader backs up quickly over incorrect follower logs")

    cfg.one(cfg.rand_int(), servers, True)

    # put leader and one follower in a partition
    leader1 = cfg.check_one_leader()
    cfg.disconnect((leader1 + 2) % servers)
    cfg.disconnect((leader1 + 3) % servers)
    cfg.disconnect((leader1 + 4) % servers)

    # submit lots of commands that won't commit
    for _i in range(50):
        cfg.rafts[leader1].start(cfg.rand_int())

    cfg.sleep(RAFT_ELECTION_TIMEOUT / 2)

    cfg.disconnect((leader1 + 0) % servers)
    cfg.disconnect((leader1 + 1) % servers)

    # allow other partition to recover
    cfg.connect((leader1 + 2) % servers)
    cfg.connect((leader1 + 3) % servers)
    cfg.connect((leader1 + 4) % servers)

    # lots of successful commands to new group.
    for _i in range(50):
        cfg.one(cfg.rand_int(), 3, True)

    # now another partitioned leader and one follower
    leader2 = cfg.check_one_leader()
    other = (leader1 + 2) % servers
    if leader2 == other:
        other = (leader2 + 1) % servers
    cfg.disconnect(other)

    # lots more commands that won't commit
    for _i in range(50):
        cfg.rafts[leader2].start(cfg.rand_int())

    cfg.sleep(RAFT_ELECTION_TIMEOUT / 2)

    # bring original leader back to life,
    for i in range(servers):
        cfg.disconnect(i)
    cfg.connect((leader1 + 0) % servers)
    cfg.connect((leader1 + 1) % servers)
    cfg.connect(other)

    # lots of successful commands to new group.
    for _i in range(50):
        cfg.one(cfg.rand_int(), 3, True)

    # now everyone
    for i in range(servers):
        cfg.connect(i)
    cfg.one(cfg.rand_int(), servers, True)

    cfg.end()


def test_count_2b(make_config):
    servers = 3
    cfg = make_config(servers, False, False)

    cfg.begin("Test (2B): RPC counts aren't too high")

    def rpcs() -> int:
        n = 0
        for j in range(servers):
            n += cfg.rpc_count(j)
        return n

    leader = cfg.check_one_leader()

    total1 = rpcs()

    if total1 > 30 or total1 < 1:
        cfg.fail(f"too many or few RPCs ({total1}) to elect initial leader\n")

    total2 = 0
    success = False
    for attempt in range(5):
        if attempt > 0:
            # give solution some time to settle
            cfg.sleep(3)

        leader = cfg.check_one_leader()
        total1 = rpcs()

        iters = 10
        starti, term, ok = cfg.rafts[leader].start(1)
        if not ok:
            # leader moved on really quickly
            continue
        cmds: list[int] = []
        retry = False
        for i in range(1, iters + 2):
            x = cfg.rand_int31()
            cmds.append(x)
            index1, term1, ok = cfg.rafts[leader].start(x)
            if term1 != term:
                # Term changed while starting
                retry = True
                break
            if not ok:
                # No longer the leader, so term has changed
                retry = True
                break
            if starti + i != index1:
                cfg.fail("Start() failed")
        if retry:
            continue

        for i in range(1, iters + 1):
            cmd = cfg.wait(starti + i, servers, term)
            if not is_int(cmd) or cmd != cmds[i - 1]:
                if is_int(cmd) and cmd == -1:
                    # term changed -- try again
                    retry = True
                    break
                cfg.fail(
                    f"wrong value {fmt_v(cmd)} committed for index {starti + i}; "
                    f"expected {fmt_v(cmds)}\n"
                )
        if retry:
            continue

        failed = False
        total2 = 0
        for j in range(servers):
            t, _ = cfg.rafts[j].get_state()
            if t != term:
                # term changed -- can't expect low RPC counts
                # need to keep going to update total2
                failed = True
            total2 += cfg.rpc_count(j)

        if failed:
            continue

        if total2 - total1 > (iters + 1 + 3) * 3:
            cfg.fail(f"too many RPCs ({total2 - total1}) for {iters} entries\n")

        success = True
        break

    if not success:
        cfg.fail("term changed too often")

    cfg.sleep(RAFT_ELECTION_TIMEOUT)

    total3 = 0
    for j in range(servers):
        total3 += cfg.rpc_count(j)

    if total3 - total2 > 3 * 20:
        cfg.fail(f"too many RPCs ({total3 - total2}) for 1 second of idleness\n")

    cfg.end()
