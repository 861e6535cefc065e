"""The harness proves it can fail: graded tests run against broken toy Rafts.

Each toy in ``tests/toys/`` is broken in one way (never elects, two leaders in
a term, wrong index from start, applies out of order, commits without a
majority, floods RPCs, crashes a thread, a raising RPC handler, a missing API,
a deadlock).  Each case runs the quickest graded test that catches it, in a
subprocess of pytest with ``--raft-impl`` pointing at the toy, and checks that
it fails with the lab's own message.  All subprocesses start at once, so the
whole file takes about as long as its slowest case (~6 s).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from labtests.config import decode_snapshot, encode_snapshot, fmt_v, randstring
from labtests.context import TestContext
from labtests.failures import RaftTestFailure
from labtests.impl_loader import Implementation, load
from labtests.verdicts import passed_line

pytestmark = pytest.mark.selftest

TOYS = Path(__file__).parent / "toys"
# "  ... Passed --" then Go's "  %4.1f  %d %4d %7d %4d" (wider numbers overflow)
PASSED_RE = re.compile(
    r"^  \.\.\. Passed --  [ \d]{2,}\.\d  \d+ [ \d]{3,}\d [ \d]{6,}\d [ \d]{3,}\d$"
)


def _clean_env() -> dict[str, str]:
    """The environment without settings that would change the child pytest's run."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}


@dataclass(frozen=True)
class Case:
    toy: str
    select: str  # -k expression
    extra: tuple[str, ...] = ()


CASES = {
    "never_elects": Case("never_elects", "test_initial_election_2a"),
    "two_leaders": Case("two_leaders", "test_initial_election_2a"),
    "wrong_index": Case("wrong_index", "test_basic_agree_2b"),
    "out_of_order": Case("out_of_order", "test_basic_agree_2b"),
    "no_majority": Case("no_majority", "test_fail_no_agree_2b"),
    "floods_rpcs": Case("floods_rpcs", "test_count_2b"),
    "crashes_thread": Case("crashes_thread", "test_initial_election_2a"),
    "handler_raises": Case("handler_raises", "test_initial_election_2a"),
    "missing_api": Case("missing_api", "2a"),
    "hangs": Case("hangs", "test_initial_election_2a", ("--raft-timeout", "2")),
    "passes": Case("no_majority", "test_basic_agree_2b", ("--seed", "4242")),
    "seeded_failure": Case("two_leaders", "test_initial_election_2a", ("--seed", "777")),
    "leaks_thread": Case("leaks_thread", "test_basic_agree_2b"),
}


@dataclass
class Outcome:
    returncode: int
    output: str
    failures: dict[str, str]  # test name -> failure message + text
    properties: dict[str, dict[str, str]]  # test name -> junit properties
    passed: list[str]
    times: dict[str, float]  # test name -> duration in seconds


class Run:
    """One pytest subprocess running graded tests against a toy."""

    def __init__(self, case: Case, workdir: Path, name: str) -> None:
        self.xml = workdir / f"{name}.xml"
        env = _clean_env()
        cmd = [
            sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k", case.select,
            "--raft-impl", str(TOYS / f"{case.toy}.py"), "-p", "no:cacheprovider",
            "-p", "no:xdist", "--junitxml", str(self.xml), *case.extra,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        self._outcome: Outcome | None = None

    def outcome(self) -> Outcome:
        if self._outcome is None:
            out, _ = self.proc.communicate(timeout=120)
            failures: dict[str, str] = {}
            properties: dict[str, dict[str, str]] = {}
            passed: list[str] = []
            times: dict[str, float] = {}
            for case in ET.parse(self.xml).getroot().iter("testcase"):
                name = case.get("name", "")
                times[name] = float(case.get("time", "0"))
                properties[name] = {
                    p.get("name", ""): p.get("value", "") for p in case.iter("property")
                }
                failure = case.find("failure")
                if failure is None:
                    failure = case.find("error")
                if failure is None:
                    passed.append(name)
                else:
                    failures[name] = (failure.get("message") or "") + "\n" + (failure.text or "")
            self._outcome = Outcome(self.proc.returncode, out, failures, properties, passed, times)
        return self._outcome


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    workdir = tmp_path_factory.mktemp("toys")
    started = {name: Run(case, workdir, name) for name, case in CASES.items()}
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def _single_failure(run: Run, test: str) -> str:
    out = run.outcome()
    assert out.returncode == 1, out.output
    assert list(out.failures) == [test], out.output
    return out.failures[test]


@pytest.mark.parametrize(
    ("case", "test", "message"),
    [
        ("never_elects", "test_initial_election_2a", r"expected one leader, got none"),
        ("two_leaders", "test_initial_election_2a", r"term 1 has 3 \(>1\) leaders"),
        ("wrong_index", "test_basic_agree_2b", r"got index 2 but expected 1"),
        ("out_of_order", "test_basic_agree_2b", r"apply error: server \d apply out of order 2"),
        ("no_majority", "test_fail_no_agree_2b", r"5 committed but no majority"),
        ("floods_rpcs", "test_count_2b",
         r"too many or few RPCs \(\d+\) to elect initial leader"),
    ],
)
def test_broken_toy_fails_with_lab_message(runs, case, test, message):
    failure = _single_failure(runs[case], test)
    assert re.search(r"RaftTestFailure: " + message, failure), failure


def test_uncaught_exception_in_raft_thread_fails_the_test(runs):
    failure = _single_failure(runs["crashes_thread"], "test_initial_election_2a")
    assert "uncaught exception in thread 'toy-ticker-" in failure
    assert "ValueError" in failure and "Traceback" in failure


def test_raising_rpc_handler_fails_the_test(runs):
    failure = _single_failure(runs["handler_raises"], "test_initial_election_2a")
    assert "RPC handler Raft.append_entries raised KeyError('prev_log_index')" in failure


def test_missing_api_fails_every_test_fast_naming_it(runs):
    out = runs["missing_api"].outcome()
    assert sorted(out.failures) == sorted(
        ["test_initial_election_2a", "test_re_election_2a", "test_many_elections_2a"]
    ), out.output
    for failure in out.failures.values():
        assert "lacks method(s) snapshot on class Raft" in failure
        assert "Traceback" not in failure  # a plain message, not a crash deep in the harness
    assert all(t < 2.0 for t in out.times.values()), out.times  # fast: no cluster was built


def test_hang_is_caught_by_the_watchdog_with_a_stack_dump(runs):
    out = runs["hangs"].outcome()
    failure = _single_failure(runs["hangs"], "test_initial_election_2a")
    assert "Timeout (>2.0s)" in failure
    assert "Stack of" in out.output or "Stack of" in failure  # pytest-timeout's dump
    assert "get_state" in out.output + failure


def test_passing_test_prints_the_lab_lines_and_records_figures(runs):
    out = runs["passes"].outcome()
    assert out.returncode == 0, out.output
    assert out.passed == ["test_basic_agree_2b"]
    lines = out.output.splitlines()
    i = lines.index("Test (2B): basic agreement ...")
    assert PASSED_RE.match(lines[i + 1]), lines[i + 1]
    props = out.properties["test_basic_agree_2b"]
    assert props["seed"] == "4242"
    assert props["peers"] == "3" and props["commits"] == "3"
    for key in ("time", "rpcs", "bytes", "description"):
        assert key in props


def test_failure_prints_seed_and_rerun_command(runs):
    out = runs["seeded_failure"].outcome()
    toy = TOYS / "two_leaders.py"
    assert f"raftlab test test_initial_election_2a --seed 777 --impl {toy}" in out.output
    assert f"--pyargs labtests -k test_initial_election_2a --seed 777 --raft-impl {toy}" in (
        out.output
    )
    assert "raftlab: Raft implementation" in out.output and "seed 777 (fixed)" in out.output


def test_leftover_threads_of_other_impls_are_a_warning(runs):
    out = runs["leaks_thread"].outcome()
    assert out.returncode == 0, out.output
    assert "threads still running after cleanup: toy-leak-0, toy-leak-1, toy-leak-2" in out.output


def test_leftover_threads_of_the_bundled_raft_fail_the_test():
    ctx = TestContext("selftest", 1, load("raft"))
    assert ctx.impl.is_bundled
    stop = threading.Event()
    leaky = threading.Thread(target=stop.wait, args=(10,), name="leaky-ticker", daemon=True)
    leaky.start()
    try:
        with pytest.raises(RaftTestFailure, match="threads still running after cleanup: "
                                                  "leaky-ticker"):
            ctx.finish(body_failed=False)
    finally:
        stop.set()


def test_make_failing_half_way_still_cleans_up_the_peers_it_started(tmp_path):
    """make() raising for the third peer: the two started peers are killed and their
    threads end; the test fails with the implementation's error, not a leak."""
    (tmp_path / "halfway_raft.py").write_text(textwrap.dedent("""
        import threading

        KILLED = []

        class Raft:
            def __init__(self, me):
                self.me, self.dead = me, threading.Event()
                self.thread = threading.Thread(target=self.dead.wait, name=f"half-{me}")
                self.thread.start()
            def start(self, command): return -1, -1, False
            def get_state(self): return 0, False
            def snapshot(self, index, data): pass
            def kill(self):
                KILLED.append(self.me)
                self.dead.set()

        def make(peers, me, persister, apply_ch):
            if me == 2:
                raise RuntimeError("peer 2 cannot start")
            return Raft(me)
        """))
    impl = load(str(tmp_path / "halfway_raft.py"))
    assert impl.error is None, impl.error
    ctx = TestContext("selftest-halfway", 3, impl)
    with pytest.raises(RuntimeError, match="peer 2 cannot start"):
        ctx.make_config(3, False, False)
    assert len(ctx.configs) == 1
    ctx.finish(body_failed=True)
    assert sorted(impl.module.KILLED) == [0, 1]
    assert not [t.name for t in threading.enumerate() if t.name.startswith("half-")]
    assert ctx.warnings == []  # nothing left running


def test_helper_thread_failure_fails_the_test_early(tmp_path):
    """A cfg.fail() in a helper thread fails the test with its message, and the
    main thread's next harness call (here a long sleep) raises it at once."""
    (tmp_path / "test_helper.py").write_text(textwrap.dedent("""
        from labtests.failures import start_helper

        def test_helper_fails(make_config):
            cfg = make_config(3, False, False)
            cfg.begin("Test (X): helper failure")
            start_helper(cfg.failures, "tester-client-0", cfg.fail, "client says no")
            cfg.sleep(30)
            cfg.end()
        """))
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "test_helper.py", "--raft-impl",
         str(TOYS / "no_majority.py"), "-p", "no:cacheprovider", "-p", "no:xdist", "-q"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
        env=_clean_env(),
    )
    assert time.monotonic() - t0 < 20
    assert result.returncode == 1, result.stdout
    assert "RaftTestFailure: client says no" in result.stdout
    assert "reported by thread 'tester-client-0'" in result.stdout


def test_collects_exactly_the_28_graded_tests_in_file_order():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "--pyargs", "labtests",
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout
    names = [line.rsplit("::", 1)[-1] for line in out.splitlines() if "::" in line]
    assert names == [
        "test_initial_election_2a", "test_re_election_2a", "test_many_elections_2a",
        "test_basic_agree_2b", "test_rpc_bytes_2b", "test_follower_failure_2b",
        "test_leader_failure_2b", "test_fail_agree_2b", "test_fail_no_agree_2b",
        "test_concurrent_starts_2b", "test_rejoin_2b", "test_backup_2b", "test_count_2b",
        "test_persist1_2c", "test_persist2_2c", "test_persist3_2c", "test_figure8_2c",
        "test_unreliable_agree_2c", "test_figure8_unreliable_2c", "test_reliable_churn_2c",
        "test_unreliable_churn_2c", "test_snapshot_basic_2d", "test_snapshot_install_2d",
        "test_snapshot_install_unreliable_2d", "test_snapshot_install_crash_2d",
        "test_snapshot_install_uncrash_2d", "test_snapshot_all_crash_2d",
        "test_snapshot_init_2d",
    ]


# -- small pure pieces --------------------------------------------------------------------


def test_passed_line_matches_the_lab_format():
    figures = {"time": 3.5, "peers": 3, "rpcs": 58, "bytes": 16840, "commits": 0}
    assert passed_line(figures) == "  ... Passed --   3.5  3   58   16840    0"
    assert PASSED_RE.match(passed_line(figures))


def test_go_style_formatting_and_helpers():
    assert fmt_v([100, 101]) == "[100 101]"
    assert fmt_v(None) == "<nil>"
    import random

    s = randstring(random.Random(1), 5000)
    assert len(s) == 5000 and re.fullmatch(r"[A-Za-z0-9_-]+", s)
    assert decode_snapshot(encode_snapshot(9, [None, 1, 2])) == (9, [None, 1, 2])


def test_loader_reports_import_errors_and_accepts_module_names(tmp_path):
    assert load(str(tmp_path / "nope.py")).error.startswith("cannot import")
    bad = tmp_path / "nomake.py"
    bad.write_text("x = 1\n")
    assert "lacks module function(s) make" in load(str(bad)).error
    impl = load("raft")
    assert impl.error is None and impl.is_bundled
    assert load("raft.reference").is_bundled


def test_a_students_folder_named_raft_is_not_the_bundled_raft(tmp_path):
    """Bundled means the very module shipped with raftlab, not anything called raft."""
    body = "def make(peers, me, persister, apply_ch):\n    raise RuntimeError('mine')\n"
    student = tmp_path / "raft"
    student.mkdir()
    (student / "__init__.py").write_text(body)
    single = tmp_path / "single" / "raft.py"
    single.parent.mkdir()
    single.write_text(body)
    for impl in (load(str(student)), load(str(single))):
        assert impl.module is not None and not impl.is_bundled, impl.error
    assert not Implementation(spec="raft").is_bundled  # a name alone proves nothing


@pytest.fixture
def oracle_config():
    """An in-process Config over the oracle toy, cleaned up afterwards."""
    ctx = TestContext("selftest-inprocess", 7, load(str(TOYS / "no_majority.py")))
    try:
        yield ctx.make_config(3, False, True)
    finally:
        ctx.finish(body_failed=True)


def test_end_enforces_the_120_second_limit(oracle_config):
    cfg = oracle_config
    cfg.begin("Test (X): slow")
    cfg.start -= 121  # as if make_config had been called 121 s ago
    with pytest.raises(RaftTestFailure, match="^test took longer than 120 seconds$"):
        cfg.end()


def test_snapshot_ingestion_errors_have_the_lab_messages(oracle_config):
    cfg = oracle_config
    with cfg.mu:
        assert cfg.ingest_snap(1, None, -1) == "nil snapshot"
        assert cfg.ingest_snap(1, b"junk", -1) == "snapshot decode error"
        good = encode_snapshot(9, [None, *range(1, 10)])
        assert cfg.ingest_snap(1, good, 19) == "server 1 snapshot doesn't match m.snapshot_index"
        assert cfg.ingest_snap(1, good, 9) == ""
        assert cfg.last_applied[1] == 9 and cfg.logs[1][0] is None and cfg.logs[1][9] == 9


def test_one_and_checks_work_in_process(oracle_config):
    cfg = oracle_config
    cfg.begin("Test (X): oracle")
    assert cfg.one(101, 3, False) == 1
    assert cfg.n_committed(1) == (3, 101)
    assert cfg.check_terms() == 1
    cfg.end()
    assert cfg.figures["commits"] == 1 and cfg.figures["peers"] == 3
