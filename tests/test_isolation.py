"""Isolated mode (--isolate) end to end: the bundled Raft passes, hostile toys get precise verdicts.

Each case runs pytest on the graded suites in a subprocess with ``--isolate``
and a toy from ``tests/toys_isolated/`` as the implementation, and checks the
verdict: the lab's message for a Raft that never elects, the exit status or
signal of a peer that dies, the stacks of a peer that deadlocks, the codec's
field path, and that an implementation trying to rig the verdict from inside
its process changes nothing.  All subprocesses start at once (they mostly
sleep), so the file takes about as long as its slowest case.  Every run is
bounded by a subprocess timeout well above its expected time: a hang is a
failure of this file, never a hang of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labtests import overload
from labtests.isolation import procs
from tests.inconclusive_support import rerun_while_inconclusive

TOYS = Path(__file__).parent / "toys_isolated"
RUN_TIMEOUT_S = 240  # far above any case's expected time (the slowest is ~40 s)


@dataclass(frozen=True)
class Case:
    impl: str | None  # a toy's file name, or None for the bundled Raft
    select: str
    extra: tuple[str, ...] = ()


CASES = {
    "bundled": Case(None, "2A or backup or persist1 or snapshot_basic"),
    "never_elects": Case("never_elects", "test_initial_election_2a"),
    "exits_zero": Case("exits_zero", "test_initial_election_2a or test_re_election_2a"),
    "sigkills_self": Case("sigkills_self", "test_initial_election_2a"),
    "leaves_threads": Case("leaves_threads", "test_initial_election_2a"),
    "kill_deadlocks": Case("kill_deadlocks", "test_initial_election_2a"),
    "apply_under_lock": Case("apply_under_lock", "test_snapshot_basic_2d"),
    "cheats": Case("cheats", "test_initial_election_2a"),
    "double_forks": Case("double_forks", "test_initial_election_2a or test_re_election_2a"),
    "lock_in_args": Case("lock_in_args", "test_initial_election_2a"),
    "unknown_method": Case("unknown_method", "test_initial_election_2a"),
    "import_error": Case("import_error", "test_initial_election_2a or test_re_election_2a"),
    "prints": Case("prints", "test_initial_election_2a or test_re_election_2a"),
    "lies_about_pid": Case("lies_about_pid", "test_initial_election_2a"),
    "hostile_wire": Case("hostile_wire", "test_initial_election_2a"),
    "no_snapshot": Case("no_snapshot", "test_initial_election_2a"),
    "missing_api": Case("../toys/missing_api", "test_initial_election_2a"),
}


@dataclass
class Outcome:
    returncode: int
    output: str
    seconds: float
    failures: dict[str, str] = field(default_factory=dict)  # test name -> failure text
    passed: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # side files the toys wrote
    # Failed tests whose verdict was "inconclusive" (machine overloaded), with their lag.
    inconclusive: dict[str, float] = field(default_factory=dict)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    env["TOY_PIDFILE"] = str(tmp / "pids")
    env["TOY_REPORT"] = str(tmp / "report")
    return env


def _start(name: str, case: Case, root: Path) -> tuple[subprocess.Popen[str], Path, float]:
    tmp = root / name
    tmp.mkdir()
    cmd = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "labtests",
        "-k", case.select, "--isolate", "-q", "-rA", f"--junitxml={tmp / 'junit.xml'}",
        *case.extra,
    ]
    if case.impl is not None:
        cmd += ["--raft-impl", str(TOYS / f"{case.impl}.py")]
    proc = subprocess.Popen(cmd, cwd=tmp, env=_env(tmp), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, tmp, time.monotonic()


def _finish(proc: subprocess.Popen[str], tmp: Path, t0: float) -> Outcome:
    try:
        output, _ = proc.communicate(timeout=max(1.0, RUN_TIMEOUT_S - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        output += f"\n[isolated run hung for {RUN_TIMEOUT_S} s and was killed]"
    outcome = Outcome(proc.returncode, output, time.monotonic() - t0)
    (tmp / "output.txt").write_text(output)  # kept with pytest's temporary directories
    junit = tmp / "junit.xml"
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = case.get("name", "")
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None:
                outcome.failures[name] = (bad.get("message") or "") + "\n" + (bad.text or "")
                props = {p.get("name"): p.get("value") for p in case.iter("property")}
                if props.get(overload.VERDICT_KEY) == overload.INCONCLUSIVE:
                    outcome.inconclusive[name] = float(props.get("timer_lag_max_ms", "nan"))
            elif case.find("skipped") is None:
                outcome.passed.append(name)
    for side in ("pids", "report", "report.pwned"):
        if (tmp / side).exists():
            outcome.files[side] = (tmp / side).read_text()
    return outcome


@pytest.fixture(scope="module")
def isolated_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("isolated")


@pytest.fixture(scope="module")
def outcomes(isolated_root: Path) -> dict[str, Outcome]:
    root = isolated_root
    results: dict[str, Outcome] = {}

    def run(name: str, case: Case) -> None:
        results[name] = _finish(*_start(name, case, root))

    # One waiter per run, so each run's duration is its own.  The toys all at once; the
    # bundled Raft after them: it must pass, and on a 2-core machine sixteen interpreters
    # starting beside its first elections can make its timers late enough for an
    # "inconclusive" (exit 6).  It failed once in session 6 beside a soak (output not kept).
    toys = [item for item in CASES.items() if item[0] != "bundled"]
    waiters = [threading.Thread(target=run, args=item) for item in toys]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join()
    run("bundled", CASES["bundled"])
    # A run whose failure the overload rule made inconclusive says nothing about the toy:
    # it runs again, alone (tests/inconclusive_support.py).
    for name, case in CASES.items():
        results[name] = rerun_while_inconclusive(
            results[name], lambda out: out.inconclusive,
            lambda attempt, name=name, case=case: _finish(*_start(f"{name}-retry{attempt}",
                                                                  case, root)), name)
    return results


@pytest.fixture(autouse=True)
def no_child_left():
    """After each test, no child process of this one remains (checked in /proc)."""
    yield
    deadline = time.monotonic() + 5
    while procs.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert procs.children() == {}


def _only_failure(outcome: Outcome, test: str) -> str:
    assert test in outcome.failures, outcome.output[-4000:]
    return outcome.failures[test]


def test_bundled_raft_passes_isolated(outcomes):
    out = outcomes["bundled"]
    assert out.returncode == 0, out.output[-6000:]
    assert len(out.passed) == 6 and not out.failures, out.output[-6000:]
    assert "Test (2D): snapshots basic" in out.output


def test_never_elects_fails_with_the_labs_message(outcomes):
    msg = _only_failure(outcomes["never_elects"], "test_initial_election_2a")
    assert "expected one leader, got none" in msg


def test_peer_exiting_with_status_0_fails_naming_it_and_the_run_goes_on(outcomes):
    out = outcomes["exits_zero"]
    msg = _only_failure(out, "test_initial_election_2a")
    assert "server 1 (peer process" in msg and "exited with status 0" in msg, msg
    # The next test ran too, and got its own verdict.
    assert "test_re_election_2a" in out.failures or "test_re_election_2a" in out.passed
    assert out.returncode == 1


def test_peer_killed_by_a_signal_fails_naming_the_signal(outcomes):
    msg = _only_failure(outcomes["sigkills_self"], "test_initial_election_2a")
    assert "server 2 (peer process" in msg and "was killed by SIGKILL" in msg, msg


def test_non_daemon_threads_are_reported_and_never_keep_anything_alive(outcomes):
    out = outcomes["leaves_threads"]
    assert out.passed == ["test_initial_election_2a"], out.output[-4000:]
    assert "threads still running after cleanup" in out.output
    assert "toy-immortal-" in out.output
    assert out.seconds < 60


def test_kill_that_deadlocks_fails_within_the_bound_with_the_peers_stacks(outcomes):
    out = outcomes["kill_deadlocks"]
    msg = _only_failure(out, "test_initial_election_2a")
    assert "kill() did not return within 3 s" in msg, msg
    assert "toy_kill_waits_here" in msg  # the peer's own stack, from its process
    assert out.seconds < 60


def test_apply_under_lock_deadlocks_against_snapshot_and_fails_with_stacks(outcomes):
    out = outcomes["apply_under_lock"]
    msg = _only_failure(out, "test_snapshot_basic_2d")
    assert "snapshot() did not return within 5 s" in msg, msg
    assert "toy_put_under_lock" in msg
    assert out.seconds < 90


def test_cheating_at_import_cannot_touch_the_verdict(outcomes):
    out = outcomes["cheats"]
    msg = _only_failure(out, "test_initial_election_2a")
    assert "expected one leader, got none" in msg
    # The attack really ran (in the template process, where pytest is not even loaded).
    report = out.files.get("report", "")
    assert "patched labtests.config and labtests.failures" in report, report
    assert "pytest loaded: False" in report
    assert out.returncode == 1


def test_double_forked_daemon_is_gone_after_its_test(outcomes):
    out = outcomes["double_forks"]
    assert sorted(out.passed) == ["test_initial_election_2a", "test_re_election_2a"], \
        out.output[-4000:]
    pids = [int(p) for p in out.files.get("pids", "").split()]
    assert len(pids) == 2  # one per test (peer 0 of each cluster)
    for pid in pids:
        assert procs.parent_of(pid) is None, f"detached sleeper {pid} outlived its test"


def test_lock_in_rpc_args_fails_with_the_codecs_field_path(outcomes):
    msg = _only_failure(outcomes["lock_in_args"], "test_initial_election_2a")
    assert "args['mu']: threading.Lock cannot cross a network" in msg, msg


def test_unknown_method_fails_naming_it(outcomes):
    msg = _only_failure(outcomes["unknown_method"], "test_initial_election_2a")
    assert "unknown method 'RequestVote'" in msg and "request_vote" in msg, msg


def test_import_error_is_reported_by_the_template_for_every_test(outcomes):
    out = outcomes["import_error"]
    for test in ("test_initial_election_2a", "test_re_election_2a"):
        msg = _only_failure(out, test)
        assert "cannot import the Raft implementation" in msg and "toy import failure" in msg


def test_missing_api_is_reported_as_in_process(outcomes):
    # Found by the template when it loads the module (a class Raft without snapshot)...
    msg = _only_failure(outcomes["missing_api"], "test_initial_election_2a")
    assert "lacks method(s) snapshot on class Raft" in msg, msg
    # ... or by the peer when make() returns an object without it.
    msg = _only_failure(outcomes["no_snapshot"], "test_initial_election_2a")
    assert "server 0 (peer process" in msg, msg
    assert "lacks required method(s): snapshot" in msg


def test_peer_output_is_captured_with_its_test(outcomes):
    for test in ("test_initial_election_2a", "test_re_election_2a"):
        msg = _only_failure(outcomes["prints"], test)
        assert "expected one leader, got none" in msg
    out = outcomes["prints"].output
    # Each failed test's report shows its own peers' output, on stdout and stderr.
    assert out.count("toy-stdout from peer 2") == 2 and out.count("toy-stderr from peer 2") == 2
    assert out.index("Captured stdout call") < out.index("toy-stdout from peer 0")


def test_a_pid_that_is_not_the_testers_child_is_refused_not_killed(outcomes):
    msg = _only_failure(outcomes["lies_about_pid"], "test_initial_election_2a")
    assert "not a child of the tester" in msg, msg
    # (and this process, the tester's parent, is still here to check it)


def test_a_forged_pickle_from_a_peer_runs_nothing_in_the_tester(outcomes):
    out = outcomes["hostile_wire"]
    msg = _only_failure(out, "test_initial_election_2a")
    assert "server 0 (peer process" in msg and "refused to decode posix.system" in msg, msg
    assert "report.pwned" not in out.files  # the shell command never ran


def test_nothing_any_run_started_is_left_anywhere(outcomes, isolated_root):
    """No process on the machine carries the environment of one of the runs above.

    Every process a run started (pytest, template, peers, double-forked daemons)
    inherited its TOY_PIDFILE, which names the run's own directory.
    """
    survivors = _marked(f"TOY_PIDFILE={isolated_root}{os.sep}".encode())
    assert survivors == [], f"processes left by the isolated runs: {survivors}"


def test_sim_and_isolate_together_is_a_usage_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "labtests",
         "--sim", "--isolate", "-q"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "--sim" in proc.stderr and "isolate" in proc.stderr


def _marked(marker: bytes) -> list[int]:
    """Processes (other than this one) whose environment contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_killing_the_tester_takes_every_peer_with_it(tmp_path):
    """SIGKILL the tester mid-test: the template and the peers die with it (PDEATHSIG)."""
    env = _env(tmp_path)
    env["TOY_RUN_MARKER"] = str(tmp_path)
    marker = f"TOY_RUN_MARKER={tmp_path}\0".encode()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "labtests",
         "-k", "test_figure8_2c", "--isolate", "-q"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the tester, the template and 5 peers
            if len(_marked(marker)) >= 7:
                break
            time.sleep(0.1)
        assert len(_marked(marker)) >= 7, "the isolated run never started its peers"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _marked(marker) == []
