"""Failing graded tests write a bundle (real time, --sim, --isolate); passing ones write nothing.

Each case runs pytest in a subprocess against a broken toy, as a student would,
and reads what it left: the bundle's files and fields (the names ``raftlab
stress`` and ``raftlab grade`` group by), the ``raftlab_bundle`` property in the
JUnit XML, the ``timeline: <path>`` line, events that show the test's crashes
and partitions, byte-identical events for one seed under --sim, and a deadlocked
peer shown as unresponsive without changing the verdict.  All subprocesses start
at once, so the file takes about as long as its slowest case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
FORGETS = TESTS / "toys_timeline" / "forgets_state.py"
NEVER_ELECTS = TESTS / "toys" / "never_elects.py"
HANGS = TESTS / "toys" / "hangs.py"
ISOLATED_NEVER_ELECTS = TESTS / "toys_isolated" / "never_elects.py"
SIM_DEADLOCK = TESTS / "toys_sim" / "deadlock_raft.py"
START_BLOCKS = TESTS / "toys_timeline" / "start_blocks.py"
BUNDLE_FILES = {"failure.txt", "rerun.txt", "meta.json", "events.jsonl", "timeline.html",
                "env.json"}
META_KEYS = {"test", "name", "seed", "mode", "verdict", "check", "artifact", "reason",
             "description", "rerun", "timer_lag", "events", "events_cut"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


class Run:
    """One pytest subprocess running one graded test; started at once, read on demand."""

    def __init__(self, root: Path, name: str, test: str, impl: Path | None, *extra: str,
                 env: dict[str, str] | None = None, bundle_option: bool = True) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.bundles = self.dir / "bundles"
        self.junit = self.dir / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
               "labtests", "-k", test, f"--junitxml={self.junit}", *extra]
        if impl is not None:
            cmd += ["--raft-impl", str(impl)]
        if bundle_option:
            cmd += ["--raftlab-bundle-dir", str(self.bundles)]
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env or _env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._out: str | None = None

    @property
    def out(self) -> str:
        if self._out is None:
            self._out, _ = self.proc.communicate(timeout=600)
        return self._out

    def folders(self, root: Path | None = None) -> list[Path]:
        self.out  # noqa: B018 - wait for the run
        base = root or self.bundles
        return sorted(p for p in base.iterdir()) if base.is_dir() else []

    def one_bundle(self) -> Path:
        folders = self.folders()
        assert len(folders) == 1, f"expected one bundle, got {folders}\n{self.out[-3000:]}"
        return folders[0]

    def junit_props(self) -> dict[str, str]:
        self.out  # noqa: B018
        props: dict[str, str] = {}
        for prop in ET.parse(self.junit).iter("property"):
            props[prop.get("name", "")] = prop.get("value", "")
        return props


def _events(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (bundle / "events.jsonl").read_text().splitlines()]


def _kinds(events: list[dict[str, Any]]) -> set[str]:
    return {ev["k"] for ev in events}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("timeline-bundles")
    env_dir = root / "from-env"
    persist = ("test_persist2_2c", FORGETS, "--seed", "7")
    started = {
        "real": Run(root, "real", *persist),
        "sim": Run(root, "sim", *persist, "--sim"),
        "sim_again": Run(root, "sim_again", *persist, "--sim"),
        "sim_debug": Run(root, "sim_debug", *persist, "--sim", "--raft-debug"),
        "passing": Run(root, "passing", "test_initial_election_2a", None, "--sim"),
        "env1": Run(root, "env1", "test_initial_election_2a", NEVER_ELECTS, "--sim", "--seed",
                    "3", env=_env(RAFTLAB_BUNDLE_DIR=str(env_dir)), bundle_option=False),
        "default": Run(root, "default", "test_initial_election_2a", NEVER_ELECTS, "--sim",
                       "--seed", "3", bundle_option=False),
        "isolate": Run(root, "isolate", "test_initial_election_2a", ISOLATED_NEVER_ELECTS,
                       "--isolate", "--seed", "2"),
        "hangs": Run(root, "hangs", "test_initial_election_2a", HANGS, "--seed", "3",
                     "--raft-timeout", "3"),
        "sim_deadlock": Run(root, "sim_deadlock", "test_initial_election_2a", SIM_DEADLOCK,
                            "--sim", "--seed", "5"),
        "sim_all_blocked": Run(root, "sim_all_blocked", "test_basic_agree_2b", START_BLOCKS,
                               "--sim", "--seed", "3"),
    }
    started["env_dir"] = env_dir  # type: ignore[assignment]
    return started


def test_a_failing_real_time_test_writes_a_complete_bundle(runs):
    run = runs["real"]
    bundle = run.one_bundle()
    assert bundle.name == "test_persist2_2c-seed7"
    assert BUNDLE_FILES <= {p.name for p in bundle.iterdir()}
    assert f"timeline: {bundle / 'timeline.html'}" in run.out
    meta = json.loads((bundle / "meta.json").read_text())
    assert META_KEYS <= set(meta)
    assert meta["mode"] == "real" and meta["seed"] == 7 and meta["verdict"] == "failed"
    assert meta["check"] == "apply" and meta["reason"].startswith("apply error: commit index=")
    assert meta["test"] == "labtests/test_2c.py::test_persist2_2c"
    assert meta["timer_lag"]["timer_lag_measured"] is True
    rerun = (bundle / "rerun.txt").read_text().strip()
    assert rerun == meta["rerun"]
    assert rerun.startswith("raftlab test test_persist2_2c --seed 7 --impl ")
    failure = (bundle / "failure.txt").read_text()
    assert "  ... FAILED -- apply error: commit index=" in failure
    env = json.loads((bundle / "env.json").read_text())
    assert env["cores"] == os.cpu_count() and env["python"] and env["raftlab"]
    assert run.junit_props()["raftlab_bundle"] == str(bundle)
    events = _events(bundle)
    assert events[0]["k"] == "meta" and events[0]["n"] == 5
    assert {"crash", "start", "disconnect", "connect", "check", "state", "apply", "fail",
            "begin"} <= _kinds(events)
    assert [ev["check"] for ev in events if ev["k"] == "fail"] == ["apply"]
    assert not (bundle / "debug.log").exists()  # the debug log was off


def test_a_simulated_failure_replays_to_the_same_events_byte_for_byte(runs):
    one, two = runs["sim"].one_bundle(), runs["sim_again"].one_bundle()
    meta = json.loads((one / "meta.json").read_text())
    assert meta["mode"] == "sim" and meta["timer_lag"] == {"timer_lag_measured": False}
    assert (one / "rerun.txt").read_text().strip().endswith("--sim")
    assert (one / "events.jsonl").read_bytes() == (two / "events.jsonl").read_bytes()
    assert (one / "timeline.html").read_bytes() == (two / "timeline.html").read_bytes()
    events = _events(one)
    assert {"crash", "disconnect", "state", "fail"} <= _kinds(events)
    assert any(ev["k"] == "state" and ev.get("src") == "sample" for ev in events)


def test_the_debug_log_goes_in_the_bundle_and_its_lines_on_the_lanes(runs):
    bundle = runs["sim_debug"].one_bundle()
    log = (bundle / "debug.log").read_text()
    assert " TEST -- " in log and " S0 " in log
    dbg = [ev for ev in _events(bundle) if ev["k"] == "dbg"]
    assert dbg and all(ev["topic"] != "TEST" for ev in dbg)
    assert {ev["p"] for ev in dbg if "p" in ev} <= set(range(5))


def test_a_passing_test_writes_nothing(runs):
    run = runs["passing"]
    assert "1 passed" in run.out, run.out[-2000:]
    assert run.folders() == [] and not run.bundles.exists()
    assert "raftlab_bundle" not in run.junit_props()


def test_the_bundle_folder_comes_from_the_environment_or_defaults_under_the_cwd(runs):
    env_dir: Path = runs["env_dir"]  # type: ignore[assignment]
    runs["env1"].out  # noqa: B018
    assert [p.name for p in sorted(env_dir.iterdir())] == ["test_initial_election_2a-seed3"]
    default = runs["default"]
    root = default.dir / ".raftlab" / "failures"
    assert [p.name for p in default.folders(root)] == ["test_initial_election_2a-seed3"]


def test_a_second_failure_of_the_same_test_and_seed_gets_its_own_folder(tmp_path):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
           "labtests", "-k", "test_initial_election_2a", "--raft-impl", str(NEVER_ELECTS),
           "--sim", "--seed", "4", "--raftlab-bundle-dir", str(tmp_path)]
    for _ in range(2):
        subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, timeout=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "test_initial_election_2a-seed4", "test_initial_election_2a-seed4-2"]


def test_an_isolated_failure_writes_a_bundle_with_sampled_states(runs):
    bundle = runs["isolate"].one_bundle()
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["mode"] == "isolate" and meta["reason"] == "expected one leader, got none"
    assert meta["check"] == "check_one_leader"
    states = [ev for ev in _events(bundle) if ev["k"] == "state"]
    assert {ev["p"] for ev in states if ev["src"] == "sample"} == {0, 1, 2}


def test_a_deadlocked_peer_is_unresponsive_and_the_verdict_is_the_watchdogs(runs):
    run = runs["hangs"]
    bundle = run.one_bundle()
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["reason"].startswith("Timeout (>3.0s)")
    assert meta["check"] == "check_one_leader"  # where the test was stuck
    unresponsive = {ev["p"] for ev in _events(bundle)
                    if ev["k"] == "state" and ev["role"] == "unresponsive"}
    assert unresponsive == {0, 1, 2}
    # The stuck probers are the Raft's doing: no leak report or warning names them.
    for line in run.out.splitlines():
        if "still running" in line or "left blocked" in line:
            assert "raftlab-timeline" not in line, line


def test_a_simulated_deadlock_is_still_reported_as_one(runs):
    run = runs["sim_deadlock"]
    bundle = run.one_bundle()
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["reason"].startswith("deadlock: "), meta["reason"]
    assert "SimDeadlock: deadlock: " in run.out


def test_the_sampler_steps_aside_when_every_other_simulated_thread_is_blocked(runs):
    """Its timer must not keep the clock alive: the verdict stays the simulation's
    "no timer pending" deadlock, not a virtual time limit 600 s later."""
    run = runs["sim_all_blocked"]
    bundle = run.one_bundle()
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["reason"].startswith(
        "deadlock: every thread is blocked and no timer is pending"), meta["reason"]
    notes = [ev["msg"] for ev in _events(bundle) if ev["k"] == "note"]
    assert any("state sampling stopped: every other simulated thread is blocked" in n
               for n in notes), notes


def test_raftlab_timeline_rewrites_the_page_and_says_what_is_wrong(runs, tmp_path):
    bundle = runs["sim"].one_bundle()
    page = bundle / "timeline.html"
    before = page.read_bytes()
    page.unlink()
    for target in (bundle, bundle / "events.jsonl"):
        done = subprocess.run(["raftlab", "timeline", str(target)], env=_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(page)
        assert page.read_bytes() == before
    out = tmp_path / "elsewhere.html"
    done = subprocess.run(["raftlab", "timeline", str(bundle), "-o", str(out)], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and out.read_bytes() == before
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"k":"meta","n":3}\n{"k":"crash"}\n')
    cases = {
        str(tmp_path / "missing"): "no such file or folder",
        str(tmp_path): "has no events.jsonl",
        str(bad): "line 2 has no time 't'",
    }
    for target, expected in cases.items():
        done = subprocess.run(["raftlab", "timeline", target], env=_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
