"""Part 2D: log compaction / snapshots (docs/tests.md, Part 2D; 2023 set), in file order."""

from __future__ import annotations

import pytest

from labtests.config import MAX_LOG_SIZE, SNAPSHOT_INTERVAL

pytestmark = pytest.mark.part2d


def snapcommon(make_config, name: str, disconnect: bool, reliable: bool, crash: bool) -> None:
    """30 rounds of pushing the log past snapshot points while one peer is
    disconnected or crashed, so that it may need an InstallSnapshot to catch up;
    the persisted Raft state must stay under MAX_LOG_SIZE throughout."""
    iters = 30
    servers = 3
    cfg = make_config(servers, not reliable, True)

    cfg.begin(name)

    cfg.one(cfg.rand_int(), servers, True)
    leader1 = cfg.check_one_leader()

    for i in range(iters):
        victim = (leader1 + 1) % servers
        sender = leader1
        if i % 3 == 1:
            sender = (leader1 + 1) % servers
            victim = leader1

        if disconnect:
            cfg.disconnect(victim)
            cfg.one(cfg.rand_int(), servers - 1, True)
        if crash:
            cfg.crash1(victim)
            cfg.one(cfg.rand_int(), servers - 1, True)

        # perhaps send enough to get a snapshot
        nn = (SNAPSHOT_INTERVAL // 2) + (cfg.rand_int() % SNAPSHOT_INTERVAL)
        for _i in range(nn):
            cfg.rafts[sender].start(cfg.rand_int())

        # let applier threads catch up with the Start()'s
        if not disconnect and not crash:
            # make sure all followers have caught up, so that
            # an InstallSnapshot RPC isn't required for
            # TestSnapshotBasic2D().
            cfg.one(cfg.rand_int(), servers, True)
        else:
            cfg.one(cfg.rand_int(), servers - 1, True)

        if cfg.log_size() >= MAX_LOG_SIZE:
            cfg.fail("Log size too large")
        if disconnect:
            # reconnect a follower, who maybe behind and
            # needs to rceive a snapshot to catch up.
            cfg.connect(victim)
            cfg.one(cfg.rand_int(), servers, True)
            leader1 = cfg.check_one_leader()
        if crash:
            cfg.start1(victim, cfg.applier_snap)
            cfg.connect(victim)
            cfg.one(cfg.rand_int(), servers, True)
            leader1 = cfg.check_one_leader()

    cfg.end()


def test_snapshot_basic_2d(make_config):
    snapcommon(make_config, "Test (2D): snapshots basic", False, True, False)


def test_snapshot_install_2d(make_config):
    snapcommon(make_config, "Test (2D): install snapshots (disconnect)", True, True, False)


def test_snapshot_install_unreliable_2d(make_config):
    snapcommon(make_config, "Test (2D): install snapshots (disconnect+unreliable)",
               True, False, False)


def test_snapshot_install_crash_2d(make_config):
    snapcommon(make_config, "Test (2D): install snapshots (crash)", False, True, True)


def test_snapshot_install_uncrash_2d(make_config):
    snapcommon(make_config, "Test (2D): install snapshots (unreliable+crash)", False, False, True)


def test_snapshot_all_crash_2d(make_config):
    """Do the servers persist the snapshots, and restart using snapshot along with
    the tail of the log?"""
    servers = 3
    iters = 5
    cfg = make_config(servers, False, True)

    cfg.begin("Test (2D): crash and restart all servers")

    cfg.one(cfg.rand_int(), servers, True)

    for _i in range(iters):
        # perhaps enough to get a snapshot
        nn = (SNAPSHOT_INTERVAL // 2) + (cfg.rand_int() % SNAPSHOT_INTERVAL)
        for _j in range(nn):
            cfg.one(cfg.rand_int(), servers, True)

        index1 = cfg.one(cfg.rand_int(), servers, True)

        # crash all
        for i in range(servers):
            cfg.crash1(i)

        # revive all
        for i in range(servers):
            cfg.start1(i, cfg.applier_snap)
            cfg.connect(i)

        index2 = cfg.one(cfg.rand_int(), servers, True)
        if index2 < index1 + 1:
            cfg.fail(f"index decreased from {index1} to {index2}")

    cfg.end()


def test_snapshot_init_2d(make_config):
    """Do servers correctly initialize their in-memory copy of the snapshot,
    making sure that future writes to persistent state don't lose state?"""
    servers = 3
    cfg = make_config(servers, False, True)

    cfg.begin("Test (2D): snapshot initialization after crash")
    cfg.one(cfg.rand_int(), servers, True)

    # enough ops to make a snapshot
    nn = SNAPSHOT_INTERVAL + 1
    for _i in range(nn):
        cfg.one(cfg.rand_int(), servers, True)

    # crash all
    for i in range(servers):
        cfg.crash1(i)

    # revive all
    for i in range(servers):
        cfg.start1(i, cfg.applier_snap)
        cfg.connect(i)

    # a single op, to get something to be written back to persistent storage.
    cfg.one(cfg.rand_int(), servers, True)

    # crash all
    for i in range(servers):
        cfg.crash1(i)

    # revive all
    for i in range(servers):
        cfg.start1(i, cfg.applier_snap)
        cfg.connect(i)

    # do another op to trigger potential bug
    cfg.one(cfg.rand_int(), servers, True)
    cfg.end()
