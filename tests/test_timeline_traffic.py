"""Individual RPCs on the timeline and the candidate role inferred from them.

The recorder is driven on a fake clock: a vote request makes a non-leader a
candidate; leading, a crash, hearing from the leader or a quiet election
timeout ends it; a crashed instance's traffic and non-vote traffic never make
one.  The ring of RPC events is bounded and says what it cut.  Then real
(simulated) graded runs: the network observer sees every counted call, the
bundled Raft's elections show up as candidate segments.  (The heuristic's
limit, a vote RPC named otherwise, is pinned by ``test_vote_ish_is_the_method_name_only``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labtests.timeline import html
from labtests.timeline.recorder import (
    CANDIDATE_QUIET_S,
    RPC_HEAD,
    RPC_TAIL,
    Recorder,
    header,
)
from labtests.timeline.rpcring import RpcRing
from labtests.timeline.traffic import Traffic, is_vote

VOTE, APPEND = "Raft.request_vote", "Raft.append_entries"


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _rec(n: int = 3) -> tuple[Recorder, _Clock]:
    rec = Recorder(n)
    clock = _Clock()
    rec._clock, rec.t0 = clock, 0.0
    return rec, clock


def _roles(rec: Recorder, peer: int) -> list[tuple[float, str, Any]]:
    return [(ev["t"], ev["role"], ev["term"]) for ev in rec.events()
            if ev["k"] == "state" and ev["p"] == peer]


def test_vote_requests_make_a_candidate_until_it_leads():
    rec, clock = _rec()
    rec.state(0, 3, False, "sample")
    clock.t = 1.0
    rec.rpc(0, 1, VOTE, "sent", 40, vote=True)
    rec.rpc(0, 2, VOTE, "unreachable", 40, vote=True)
    clock.t = 1.1
    rec.state(0, 4, False, "sample")  # its new term, still not leading: still a candidate
    clock.t = 1.2
    rec.state(0, 4, True, "sample")
    assert _roles(rec, 0) == [(0.0, "follower", 3), (1.0, "candidate", 3),
                              (1.1, "candidate", 4), (1.2, "leader", 4)]


def test_a_quiet_candidate_is_a_follower_again_from_the_end_of_the_quiet_time():
    rec, clock = _rec()
    rec.state(1, 2, False, "sample")
    clock.t = 0.5
    rec.rpc(1, 0, VOTE, "dropped", 40, vote=True)
    clock.t = 0.9
    rec.rpc(0, 1, VOTE, "sent", 40, vote=True)  # S1 receives a vote request: still in it
    clock.t = 0.9 + CANDIDATE_QUIET_S / 2
    rec.expire_campaigns()
    assert _roles(rec, 1)[-1][1] == "candidate"
    clock.t = 0.9 + CANDIDATE_QUIET_S + 0.3
    rec.expire_campaigns()  # the sampler's round
    assert _roles(rec, 1)[-1] == (round(0.9 + CANDIDATE_QUIET_S, 6), "follower", 2)
    # S0 sent one: a candidacy of its own (term unknown: never sampled), quiet as long
    assert _roles(rec, 0) == [(0.9, "candidate", None),
                              (round(0.9 + CANDIDATE_QUIET_S, 6), "follower", None)]


def test_hearing_from_the_leader_or_crashing_ends_a_candidacy():
    rec, clock = _rec()
    rec.state(0, 5, True, "sample")
    rec.state(1, 5, False, "sample")
    rec.state(2, 5, False, "sample")
    clock.t = 1.0
    rec.rpc(1, 2, VOTE, "sent", 40, vote=True)
    rec.rpc(2, 0, VOTE, "sent", 40, vote=True)
    clock.t = 1.05
    rec.rpc(0, 1, APPEND, "sent", 90)  # the leader's heartbeat reaches S1
    clock.t = 1.1
    rec.crash(2)
    assert _roles(rec, 1)[-1] == (1.05, "follower", 5)
    assert _roles(rec, 2)[-1] == (1.0, "candidate", 5)  # the crash event ends the lane
    assert 2 not in rec._campaigns
    assert _roles(rec, 0) == [(0.0, "leader", 5)], "a leader's vote request ends nothing"


def test_a_candidate_that_sends_entries_has_won_until_a_sample_says_otherwise():
    rec, clock = _rec()
    rec.state(1, 2, False, "sample")
    clock.t = 1.0
    rec.rpc(1, 0, VOTE, "sent", 40, vote=True)
    clock.t = 1.01
    rec.rpc(1, 0, VOTE, "replied", 20, vote=True)
    rec.rpc(1, 2, APPEND, "unreachable", 90)  # only a leader sends entries
    clock.t = 1.3
    rec.state(1, 3, True, "sample")  # the sample confirms, with the term
    clock.t = 2.0
    rec.state(1, 4, False, "sample")
    assert _roles(rec, 1) == [(0.0, "follower", 2), (1.0, "candidate", 2), (1.01, "leader", 2),
                              (1.3, "leader", 3), (2.0, "follower", 4)]
    assert rec.changes == 3, "inferred roles are no changes (they set no sampling pace)"


def test_non_vote_traffic_and_a_crashed_instance_make_no_candidate():
    rec, clock = _rec()
    rec.state(0, 1, False, "sample")
    rec.rpc(0, 1, APPEND, "sent", 90)
    rec.rpc(0, 1, VOTE, "sent", 40, vote=True, stale=True)  # the old instance's thread
    rec.unresponsive(2)
    rec.rpc(2, 1, VOTE, "sent", 40, vote=True)  # unresponsive stays unresponsive
    assert [r for _t, r, _term in _roles(rec, 0)] == ["follower"]
    assert [r for _t, r, _term in _roles(rec, 2)] == ["unresponsive"]
    msgs = [ev for ev in rec.events() if ev["k"] == "msg"]
    assert [(m["p"], m["to"], m["o"], m.get("old", False)) for m in msgs] == [
        (0, 1, "sent", False), (0, 1, "sent", True), (2, 1, "sent", False)]


def test_the_rpc_ring_keeps_the_first_and_last_and_says_how_many_it_cut():
    rec, clock = _rec(2)
    total = RPC_HEAD + RPC_TAIL + 777
    for i in range(total):
        clock.t = i * 1e-3
        rec.rpc(i % 2, 1 - i % 2, APPEND, "sent", i)
    msgs = [ev for ev in rec.events() if ev["k"] == "msg"]
    assert len(msgs) == RPC_HEAD + RPC_TAIL and rec.rpc_cut == 777
    assert msgs[0]["b"] == 0 and msgs[RPC_HEAD - 1]["b"] == RPC_HEAD - 1
    assert msgs[RPC_HEAD]["b"] == RPC_HEAD + 777 and msgs[-1]["b"] == total - 1
    notes = [ev["msg"] for ev in rec.events() if ev["k"] == "note"]
    assert any("cut 777 individual RPC events" in note for note in notes)
    assert rec.cut == 0  # the other events' caps are separate
    rec.clear()
    rec.rpc(0, 1, VOTE, "sent", 1, vote=True)
    assert rec.events() == [] and rec.rpc_cut == 0


def test_the_observer_maps_end_names_to_peers_and_ignores_unknown_ends():
    rec, _clock = _rec()
    routes = {"endA": (0, 2, 1), "endOld": (1, 0, 1)}
    generations = [1, 2, 1]  # peer 1 restarted: its generation-1 ends are stale
    traffic = Traffic(rec, routes, generations)
    traffic("endA", 2, "Raft.RequestVote", "sent", 10)
    traffic("endOld", 0, VOTE, "sent", 10)
    traffic("someone-else", 0, VOTE, "sent", 10)
    msgs = [(ev["p"], ev["to"], ev["m"], ev.get("old", False)) for ev in rec.events()
            if ev["k"] == "msg"]
    assert msgs == [(0, 2, "Raft.RequestVote", False), (1, 0, VOTE, True)]
    assert [r for _t, r, _term in _roles(rec, 0)] == ["candidate"]
    assert _roles(rec, 1) == []


@pytest.mark.parametrize(("method", "vote"), [
    ("Raft.RequestVote", True), ("Raft.request_vote", True), ("Raft.PreVote", True),
    ("Raft.append_entries", False), ("Raft.install_snapshot", False), ("Voter.ask", False),
])
def test_vote_ish_is_the_method_name_only(method, vote):
    assert is_vote(method) is vote


def test_traffic_stops_with_the_watch():
    class Net:
        on_rpc = None

    net = Net()
    rec, _clock = _rec()
    traffic = Traffic(rec, {}, [0]).install(net)
    assert net.on_rpc is traffic
    traffic.remove()
    assert net.on_rpc is None


# -- real runs (simulated time) ----------------------------------------------------------


def _recorded(test_fn: Any, seed: int, impl: Any = None) -> tuple[Any, Recorder]:
    """Run a graded test under --sim; its figures and its (first) recorder."""
    from labtests.driver import run_graded

    recorders: list[Recorder] = []
    init = Recorder.__init__

    def keep(self: Recorder, *a: Any, **kw: Any) -> None:
        init(self, *a, **kw)
        recorders.append(self)

    Recorder.__init__ = keep  # type: ignore[method-assign]
    clear = Recorder.clear
    Recorder.clear = lambda self: None  # type: ignore[method-assign]  # keep the events
    try:
        run = run_graded(test_fn, seed=seed, impl=impl)
    finally:
        Recorder.__init__ = init  # type: ignore[method-assign]
        Recorder.clear = clear  # type: ignore[method-assign]
    return run, recorders[0]


def test_a_simulated_election_test_shows_each_rpc_and_the_candidates():
    from labtests import test_2a

    run, rec = _recorded(test_2a.test_re_election_2a, seed=1)
    evs = rec.events()
    msgs = [ev for ev in evs if ev["k"] == "msg"]
    requests = [m for m in msgs if m["o"] in ("sent", "dropped", "unreachable")]
    replies = [m for m in msgs if m["o"] not in ("sent", "dropped", "unreachable")]
    sent = sum(m["o"] == "sent" for m in msgs)
    assert len(replies) <= sent, "a reply event only for a request that reached its server"
    assert {m["m"] for m in msgs} == {"Raft.request_vote", "Raft.append_entries"}
    assert all(m["p"] != m["to"] and 0 <= m["to"] < 3 for m in msgs)
    # every call of the test proper is seen (the figures count those after begin())
    begin = next(ev["t"] for ev in evs if ev["k"] == "begin")
    end = next(ev["t"] for ev in evs if ev["k"] == "end")
    assert sum(begin <= m["t"] <= end for m in requests) == run.figures["rpcs"]
    candidates = [ev for ev in evs if ev["k"] == "state" and ev["role"] == "candidate"]
    assert len({ev["p"] for ev in candidates}) >= 2, "re-elections: several peers campaign"
    # and the page draws them: candidate segments, and each RPC when zoomed in
    page = html.render(header(3, test="test_re_election_2a", seed=1, mode="sim"), evs)
    assert '"role":"candidate"' in page and '"k":"msg"' in page


# -- the compact store --------------------------------------------------------------------


def test_the_ring_keeps_every_event_of_concurrent_callers_and_hostile_values():
    import threading

    ring = RpcRing(100, 400)
    ring.allocate()
    seq = iter(range(10**9))

    def caller(p: int) -> None:
        for i in range(50):
            ring.add(next(seq), float(i), p, None if i % 7 == 0 else 300, f"Raft.m{i % 3}",
                     "sent" if i % 2 else "no-such-outcome", 2**40, stale=i % 5 == 0)

    threads = [threading.Thread(target=caller, args=(p,)) for p in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    items = ring.items()
    assert len(items) == 400 and ring.taken == 400 and ring.cut == 0
    assert len({it[0] for it in items}) == 400, "no slot written twice"
    assert {it[3] for it in items} == {None}, "a callee that is no peer index is None"
    assert {it[5] for it in items} == {"sent", "failed"}  # an unknown outcome: "failed"
    assert {it[6] for it in items} == {2**40}
    assert sum(it[7] for it in items) == 8 * 10


def test_a_hostile_raft_with_endless_or_huge_method_names_stays_bounded():
    from labtests.timeline.rpcring import MAX_METHODS, MAX_NAME

    rec, _clock = _rec()
    traffic = Traffic(rec, {"e": (0, 1, 1)}, [1, 1, 1])
    huge = "Raft." + "v" * 1_000_000
    traffic("e", 1, huge, "sent", 1)
    for i in range(5_000):
        traffic("e", 1, f"Raft.m{i}", "sent", 1)
    ring = rec.rpcs
    assert len(ring._names) == MAX_METHODS and ring.taken == 5_001 and ring.cut == 0
    assert max(len(name) for name in ring._names) == MAX_NAME
    assert len(traffic._votes) == MAX_METHODS
    assert ring.items()[-1][4] == "(other methods)"
    assert ring.items()[0][4].endswith("...")


def test_what_the_recorder_keeps_costs_a_few_megabytes_at_its_caps():
    """Measured, not assumed: a recorder filled to its bulk caps with applies (plus the
    RPC ring full) holds less than 3 MB: ~1.9 MB in columns (a flat tuple per event held
    6.6 MB, a dict per event ~25 MB at the old caps)."""
    import gc
    import tracemalloc

    from labtests.timeline.recorder import BULK_HEAD, BULK_TAIL

    commands = [10**18 + i for i in range(BULK_HEAD + BULK_TAIL)]  # the tester's log holds them
    indices = list(range(1000, 1000 + len(commands)))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rec, clock = _rec(5)
        for n, (i, c) in enumerate(zip(indices, commands, strict=True)):
            clock.t = n * 1e-3
            rec.add("apply", n % 5, i=i, c=c)
        for n in range(RPC_HEAD + RPC_TAIL):
            rec.rpc(n % 5, (n + 1) % 5, APPEND, "sent", 200 + n)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert rec.cut == 0 and rec.rpc_cut == 0
    assert held < 3_000_000, f"{held / 1e6:.1f} MB"
    print(f"{BULK_HEAD + BULK_TAIL} applies and {RPC_HEAD + RPC_TAIL} RPCs: {held / 1e6:.1f} MB")
    applies = [ev for ev in rec.events() if ev["k"] == "apply"]
    assert applies[0]["c"] == str(commands[0]), "a command is still written as text"


def test_under_isolate_the_tester_still_sees_each_rpc_and_the_candidates(tmp_path):
    """Isolated peers send through the tester's network (``call_raw``): the observer sees
    their RPCs, and the bundle's events show them and the candidates they make."""
    import json
    import os
    import subprocess
    import sys

    toy = Path(__file__).parent / "toys_timeline" / "forgets_state.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
           "labtests", "-k", "test_persist2_2c", "--raft-impl", str(toy), "--seed", "7",
           "--isolate", "--raftlab-bundle-dir", str(tmp_path / "bundles")]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    bundles = list((tmp_path / "bundles").glob("*/events.jsonl"))
    assert len(bundles) == 1, done.stdout[-3000:]
    lines = bundles[0].read_text().splitlines()
    assert json.loads(lines[0])["mode"] == "isolate"
    evs = [json.loads(line) for line in lines[1:]]
    msgs = [ev for ev in evs if ev["k"] == "msg"]
    assert {m["m"] for m in msgs} == {"Raft.request_vote", "Raft.append_entries"}
    assert {m["o"] for m in msgs} >= {"sent", "replied", "unreachable"}
    assert any(ev["k"] == "state" and ev["role"] == "candidate" for ev in evs)


def test_with_the_sampler_on_the_observer_still_changes_no_simulated_schedule(monkeypatch):
    """The candidate events it infers neither wake the sampler nor count as changes (which
    set the sampler's pace), so a simulated run with the sampler makes the same steps with
    and without the observer.  (When they woke it, the schedule of a deposed-leader toy
    run depended on a deadlocked run made before it in the same process.)"""
    from labtests import test_2b, timeline
    from labtests.driver import run_graded

    start_watch = timeline.start_watch
    toy = str(Path(__file__).parent / "toys_sim" / "no_step_down.py")
    runs = {}
    for traffic in (True, False):
        monkeypatch.setattr(timeline, "start_watch", lambda cfg, traffic=traffic, **kw:
                            start_watch(cfg, **{**kw, "traffic": traffic}))
        for name, fn, impl in (("bundled", test_2b.test_rejoin_2b, None),
                               ("toy", test_2b.test_rejoin_2b, toy)):
            run = run_graded(fn, 3, impl)
            runs[name, traffic] = (run.switches, run.virtual_s, run.figures)
    assert runs["bundled", True] == runs["bundled", False]
    assert runs["toy", True] == runs["toy", False]
