"""The timeline page of explore's minimal failing schedule (labtests/explore/timeline.py).

It is built from what a run keeps anyway, so a run with a timeline is the same run
(same violation, same debug log) as without; the page shows the schedule's steps,
the crash and restart of a peer, the sampled roles and the failure.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("greenlet")

from labtests.explore.runner import run_schedule  # noqa: E402
from labtests.explore.schedule import Schedule, Step  # noqa: E402
from tests.test_explore_vote_timer import _mutant, _quiet_voters  # noqa: E402
from tools.explore.command import main  # noqa: E402


def test_a_timeline_changes_nothing_in_the_run_and_shows_what_happened():
    impl = _mutant("vote_no_timer")
    seed = next(s for s in range(40) if run_schedule(_quiet_voters(s), impl).violation)
    schedule = _quiet_voters(seed)
    plain = run_schedule(schedule, impl, debug=True)
    seen = run_schedule(schedule, impl, debug=True, timeline=True)
    assert plain.violation == seen.violation and plain.log == seen.log
    assert plain.timeline is None and seen.timeline is not None
    head, events = seen.timeline
    assert head["n"] == 3 and head["seed"] == schedule.seed
    kinds = {e["k"] for e in events}
    assert {"state", "check", "disconnect", "start", "dbg", "fail"} <= kinds, kinds
    [fail] = [e for e in events if e["k"] == "fail"]
    assert fail["check"] == "early-election" and "early-election" in fail["first"]
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    assert any(e["k"] == "check" and e["name"].startswith("partition") for e in events)


def test_crashes_restarts_and_network_modes_reach_the_timeline():
    steps = (Step(0.5, "unreliable", {"on": True}), Step(1.0, "crash", {"peer": 1}),
             Step(1.5, "restart", {"peer": 1}), Step(2.0, "unreliable", {"on": False}))
    run = run_schedule(Schedule(3, 4, steps, 3.0), None, debug=True, timeline=True)
    assert run.violation is None
    _head, events = run.timeline
    assert [e for e in events if e["k"] == "crash"] == [{"t": 1.0, "k": "crash", "p": 1}]
    assert any(e["k"] == "start" and e["p"] == 1 and e["gen"] == 3 for e in events)
    nets = [e for e in events if e["k"] == "net" and "reliable" in e]
    assert [e["reliable"] for e in nets][:2] == [False, True]
    with pytest.raises(ValueError, match="debug log"):
        run_schedule(Schedule(3, 4, steps, 3.0), None, timeline=True)


def test_command_writes_the_timeline_of_each_minimal_failure(tmp_path):
    from tests.mutants.make_mutants import materialize

    out = tmp_path / "out"
    code = main(["--impl", materialize("vote_no_timer"), "-n", "12", "-p", "2",
                 "-o", str(out), "--shrink-runs", "10"])
    assert code == 1
    page = (out / "failures" / "early-election.timeline.html").read_text()
    assert "<html" in page.lower() and "early-election" in page
    lines = (out / "failures" / "early-election.events.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["k"] == "meta" and len(lines) > 10
    summary = json.loads((out / "summary.json").read_text())["minimal"]["early-election"]
    assert summary["timeline_file"].endswith("early-election.timeline.html")
