"""No run ends without a result: each hostile toy gets a precise verdict, never a hang.

Each case runs ``raftlab test`` (or plain pytest) on a toy in a subprocess in
its own session, under a hard timeout after which the whole process group is
killed, so a regression fails here instead of hanging CI.  The toys (in
``tests/toys/``) change one thing about the bundled Raft:

* ``apply_under_lock``: the 2D deadlock against the tester's ``snapshot()``;
  then ``kill()`` blocks on the same lock, so the cleanup never ends;
* ``kill_blocks``: ``kill()`` waits forever for a lock;
* ``exits_zero`` / ``sigkills_self``: the test process ends mid-test;
* ``leaves_threads``: non-daemon threads that ignore ``kill()``;
* ``forks_a_copy`` / ``forked_copy_passes``: ``make()`` forks the test process;
* ``forks_at_import``: importing the Raft's module forks the process;
* ``holds_the_gil``: a Raft thread never lets go of Python's interpreter lock;
* ``closes_descriptors``: the Raft closes every descriptor above 2, raftlab's too.

Every case checks the verdict's words, that the test after the culprit still
ran and has a result (or is reported as not run, when the process died), and
the exit status; in real time and in simulated time where it applies.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.session_procs import stat

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
TOYS = ROOT / "tests" / "toys"
HARD_TIMEOUT_S = 240.0  # a run that takes longer is a hang: fail, and kill its process group
SUMMARY_RE = re.compile(r"^(\d+ passed, \d+ failed.*) in [\d.]+s$", re.M)
# In real time a timing failure on an overloaded machine reads "inconclusive" (labtests.overload);
# the reason after it is the same.
FAILED = r"  \.\.\. (?:FAILED|inconclusive \(machine overloaded: timers late by \d+ ms\)) -- "


def _clean_env() -> dict[str, str]:
    """The environment without settings that would change the child's run."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def out(self) -> str:
        return self.stdout + self.stderr

    def summary(self) -> dict[str, int]:
        """The counts of the last line: ``{"passed": 1, "failed": 0, "not run": 2, ...}``."""
        match = SUMMARY_RE.search(self.stdout)
        assert match, self.stdout[-3000:]
        counts = {}
        for part in match.group(1).split(", "):
            number, what = part.split(" ", 1)
            counts[what] = int(number)
        return counts

    def failures(self) -> int:
        """Failed tests, inconclusive ones included (a timing failure under load)."""
        counts = self.summary()
        return counts["failed"] + counts.get("inconclusive", 0)

    def failure_line(self, test: str) -> str:
        """The line after ``test``'s description: its Passed or FAILED line."""
        lines = self.stdout.splitlines()
        for i, line in enumerate(lines[:-1]):
            if line.endswith(" ...") and not line.startswith(" ") and (
                    test in line or _DESCRIPTIONS.get(test, "\0") in line):
                return lines[i + 1]
        raise AssertionError(f"no result line for {test}:\n{self.stdout[-3000:]}")


_DESCRIPTIONS = {
    "test_initial_election_2a": "Test (2A): initial election",
    "test_re_election_2a": "Test (2A): election after network failure",
    "test_many_elections_2a": "Test (2A): multiple elections",
    "test_snapshot_basic_2d": "Test (2D): snapshots basic",
    "test_snapshot_init_2d": "Test (2D): snapshot initialization after crash",
}


def _run(args: list[str], timeout: float = HARD_TIMEOUT_S, cwd: Path = ROOT,
         env: dict[str, str] | None = None) -> Result:
    """Run a command in its own session; on the hard timeout kill the whole group and fail.
    ``env``: settings added to the clean environment."""
    proc = subprocess.Popen(args, cwd=cwd, env={**_clean_env(), **(env or {})},
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"hang: {' '.join(args)} did not end within {timeout:g} s\n"
                    f"{stdout[-3000:]}\n{stderr[-3000:]}")
    return Result(proc.returncode, stdout, stderr)


def raftlab_test(*args: str, timeout: float = HARD_TIMEOUT_S, cwd: Path = ROOT,
                 env: dict[str, str] | None = None) -> Result:
    code = "import sys; from tools.cli import main; sys.exit(main(sys.argv[1:]))"
    return _run([sys.executable, "-c", code, "test", *args], timeout, cwd, env)


def toy(name: str) -> str:
    return str(TOYS / f"{name}.py")


MODES = [pytest.param((), id="real"), pytest.param(("--sim",), id="sim")]


# -- the cleanup is bounded ------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_apply_under_lock_deadlock_fails_with_stacks_and_the_next_test_runs(mode):
    res = raftlab_test("test_snapshot_basic_2d", "test_snapshot_init_2d",
                       "--impl", toy("apply_under_lock"), "--seed", "3", *mode)
    assert res.returncode == 1, res.out[-3000:]
    # The body's own failure is the reason ...
    line = res.failure_line("test_snapshot_basic_2d")
    assert re.fullmatch(FAILED + r"one\(\d+\) failed to reach agreement", line), line
    # ... and the cleanup that never ended comes with every thread's stack.
    assert "---- raftlab cleanup ----" in res.stdout
    assert "cleanup did not end within 10 s" in res.stdout
    assert "in toy_put_under_lock" in res.stdout  # the applier holding the lock
    assert "in kill" in res.stdout and "apply_under_lock.py" in res.stdout
    if mode:
        # The simulation's report says who holds the lock the tester waits for.
        assert "held by 'raft-S" in res.stdout
    # The next test ran and has a result line of its own.
    nxt = res.failure_line("test_snapshot_init_2d")
    assert nxt.startswith("  ... Passed --") or re.match(FAILED, nxt), nxt
    assert res.summary()["passed"] + res.failures() == 2 and res.failures() >= 1
    assert "not run" not in res.summary()


@pytest.mark.parametrize("mode", MODES)
def test_blocking_kill_fails_the_test_with_its_stack_and_the_run_goes_on(mode):
    res = raftlab_test("test_initial_election_2a", "test_re_election_2a",
                       "--impl", toy("kill_blocks"), "--seed", "5", *mode)
    assert res.returncode == 1, res.out[-3000:]
    first = res.failure_line("test_initial_election_2a")
    assert re.match(FAILED + r"cleanup did not end within 10 s: a kill\(\) that does not "
                    "return", first), first
    assert "in toy_kill_waits_here" in res.stdout
    # The next test ran too (and its kill() blocks as well: same verdict, not a hang).
    second = res.failure_line("test_re_election_2a")
    assert re.match(FAILED + "cleanup did not end", second), second
    assert res.summary()["passed"] == 0 and res.failures() == 2
    assert res.stdout.count("rerun with:") == 2  # one rerun hint per failure
    if not mode:
        # Real time: the threads left blocked are named, not blamed on the next test.
        assert "left blocked after the cleanup did not end" in res.stdout


def test_short_watchdog_interrupting_the_cleanup_still_gives_a_verdict():
    """The watchdog covers the cleanup too: it fires while the harness waits for kill()."""
    res = raftlab_test("test_initial_election_2a", "--impl", toy("kill_blocks"),
                       "--seed", "5", "--timeout", "7")
    assert res.returncode == 1, res.out[-3000:]
    line = res.failure_line("test_initial_election_2a")
    # Either the body outlived the watchdog (a loaded machine) and the stuck cleanup comes
    # with the failure, or the watchdog interrupted the wait for the cleanup.
    assert re.match(FAILED + r"(cleanup |Timeout \(>7\.0s\))", line), line
    assert "in toy_kill_waits_here" in res.stdout
    assert res.summary()["passed"] == 0 and res.failures() == 1


# -- a test process that ends early ------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("which, how", [
    ("exits_zero", "exit status 0"),
    ("sigkills_self", "signal SIGKILL (9)"),
])
def test_a_process_that_ends_mid_test_fails_that_test_and_lists_the_rest(which, how, mode):
    res = raftlab_test("2A", "--impl", toy(which), "--seed", "7", *mode, timeout=120)
    assert res.returncode == 1, res.out[-3000:]
    line = res.failure_line("test_initial_election_2a")
    assert line == f"  ... FAILED -- the test process ended with {how} while this test was " \
                   "running", line
    assert re.search(r"^  seed 7; rerun with: raftlab test test_initial_election_2a --seed 7 "
                     rf"--impl \S+{which}\.py", res.stdout, re.M), res.stdout
    assert ("not run (the test process had ended): test_re_election_2a, "
            "test_many_elections_2a") in res.stdout
    assert res.summary() == {"passed": 0, "failed": 1, "not run": 2}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc: Linux")
def test_a_process_that_closed_raftlabs_channel_first_is_told_apart():
    """Its own output went with its descriptors, so the one clue is that it closed the
    command's channel while it lived (the old verdict said only 'exit status 1')."""
    res = raftlab_test("2A", "--impl", toy("closes_descriptors"), "--seed", "7", timeout=120)
    assert res.returncode == 1, res.out[-3000:]
    line = res.failure_line("test_initial_election_2a")
    assert re.fullmatch(
        FAILED + r"the test process ended with (exit status \d+|signal \w+ \(\d+\)) \(after "
        r"closing raftlab's channel to it: code under test closed file descriptors it had "
        r"not opened, and the process's output with them\?\) while this test was running",
        line), line
    assert res.summary() == {"passed": 0, "failed": 1, "not run": 2}


def test_a_crashed_xdist_worker_names_the_test_and_its_exit_status():
    res = raftlab_test("test_initial_election_2a", "--impl", toy("exits_zero"), "--seed", "7",
                       "-n", "2", timeout=120)
    assert res.returncode == 1, res.out[-3000:]
    line = res.failure_line("test_initial_election_2a")
    assert re.fullmatch(r"  \.\.\. FAILED -- the test process \(xdist worker gw\d+\) ended "
                        r"with exit status 0 while this test was running", line), line
    assert "seed 7; rerun with: raftlab test test_initial_election_2a --seed 7" in res.stdout
    assert res.summary() == {"passed": 0, "failed": 1}


# -- threads that would keep the process alive -----------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_non_daemon_threads_are_reported_and_never_keep_the_process_alive(mode):
    res = raftlab_test("test_initial_election_2a", "--impl", toy("leaves_threads"), *mode,
                       timeout=120)
    assert res.returncode == 0, res.out[-3000:]
    assert res.summary() == {"passed": 1, "failed": 0}
    if not mode:  # in simulated time every simulated thread ends with the test
        assert "thread(s) that are not daemons still run after the last test: " \
               "toy-immortal-0, toy-immortal-1, toy-immortal-2" in res.stdout


# -- processes ---------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    st = stat(pid)
    return st is not None and st[0] != "Z"


# Real time only: simulated time refuses os.fork (SimUnsupported fails the test).

def _forks(res: Result) -> list[int]:
    return [int(n) for n in re.findall(
        r"warning: the Raft forked the test process (\d+) time\(s\) \(os\.fork, or "
        r"multiprocessing's fork\); each copy was ended at once, before it ran anything",
        res.stdout)]


def test_a_fork_of_the_test_process_is_ended_at_once_and_named():
    """The copy asleep in make() was alive an hour after ``1 passed``: now it ends before
    it returns from the fork, the test says so, and the next test runs as usual."""
    res = raftlab_test("test_initial_election_2a", "test_re_election_2a",
                       "--impl", toy("forks_a_copy"), "--seed", "3", timeout=120)
    assert res.returncode == 0, res.out[-3000:]
    assert res.summary() == {"passed": 2, "failed": 0}
    assert _forks(res) == [1], res.stdout  # the first test's; the second forks nothing
    assert "processes still running after cleanup" not in res.stdout  # nothing was left


LAST_BOUND = ("raftlab's last bound ended the test process{worker} after 65 s: not even its "
              "watchdog could end the test (most likely a thread kept Python's interpreter "
              "lock: a long call into C code, or sys.setswitchinterval)")


GIL_MODES = {
    "real": (),
    "sim": ("--sim", "--", "--sim-wall-limit", "5"),
    "xdist": ("--", "-n", "2"),
}


def _gil_tests(mode: tuple[str, ...]) -> tuple[str, ...]:
    return ("test_initial_election_2a",) if "-n" in mode else (
        "test_initial_election_2a", "test_re_election_2a")


@pytest.fixture(scope="module")
def gil_runs() -> dict[str, Result]:
    """tests/toys/holds_the_gil.py under ``raftlab test`` in each mode, the three at once:
    each waits the bound's 65 s (the 5 s watchdog + 60 s), mostly asleep."""
    with ThreadPoolExecutor(len(GIL_MODES)) as pool:
        runs = {name: pool.submit(raftlab_test, *_gil_tests(mode), "--impl",
                                  toy("holds_the_gil"), "--seed", "3", "--timeout", "5",
                                  *mode, timeout=200)
                for name, mode in GIL_MODES.items()}
        return {name: run.result() for name, run in runs.items()}


@pytest.mark.parametrize("name", list(GIL_MODES))
def test_a_thread_that_keeps_the_interpreter_lock_ends_the_test_with_a_verdict(
        name, gil_runs):
    """``sum(range(10**15))`` in a Raft's thread: no Python ran again in the process, not
    the watchdog, not the cleanup, and the run waited with no result until it was
    killed from outside.  Now the last bound (the 5 s watchdog + 60 s) ends the process,
    the test fails saying why, with every thread's stack, and the next test is not run
    (one-process) or runs in a new worker (xdist)."""
    mode, res = GIL_MODES[name], gil_runs[name]
    assert res.returncode == 1, res.out[-3000:]
    line = res.failure_line("test_initial_election_2a")
    if "-n" in mode:
        expected = re.escape("  ... FAILED -- " + LAST_BOUND.format(worker=" (xdist worker GW)"))
        assert re.fullmatch(expected.replace("GW", r"gw\d+"), line), line
    else:
        assert line == "  ... FAILED -- " + LAST_BOUND.format(worker=""), line
    assert "Timeout (0:01:05)!" in res.stdout
    if "--sim" not in mode:  # real threads: the one that holds the lock is named
        assert "in _sum_forever" in res.stdout, res.stdout[-3000:]
    if len(_gil_tests(mode)) > 1:
        assert "not run (the test process had ended): test_re_election_2a" in res.stdout


MEMORY = (r"raftlab's memory bound ended {process}: it held (\d+) MiB of memory, over its "
          r"bound of 200 MiB \(--raft-memory-mb, RAFTLAB_MEMORY_MB\); most likely the Raft "
          r"allocates without end \(a log never trimmed, entries appended in a loop\): see the "
          r"stacks")
MEMORY_MODES = {  # mode's arguments, how the verdict names the process that was ended
    "real": ((), "the test process"),
    "sim": (("--sim",), "the test process"),
    "xdist": (("-n", "2"), r"the test process \(xdist worker gw\d+\)"),
    "isolated": (("--isolate",), r"server 0 \(peer process \d+\)"),
}


@pytest.fixture(scope="module")
def memory_runs() -> dict[str, Result]:
    """tests/toys/eats_memory.py under ``raftlab test --memory-mb 200`` in each mode, and
    the bundled Raft under the same bound, all at once (each takes a few seconds)."""
    def tests(mode: tuple[str, ...]) -> tuple[str, ...]:
        return ("test_initial_election_2a",) if "-n" in mode else (
            "test_initial_election_2a", "test_re_election_2a")

    with ThreadPoolExecutor(len(MEMORY_MODES) + 1) as pool:
        runs = {name: pool.submit(raftlab_test, *tests(mode), "--impl", toy("eats_memory"),
                                  "--seed", "3", "--memory-mb", "200", *mode, timeout=120,
                                  env={"RAFTLAB_TOY_EAT_MAX_MB": "1024"})
                for name, (mode, _) in MEMORY_MODES.items()}
        runs["bundled"] = pool.submit(raftlab_test, "test_initial_election_2a", "--seed", "3",
                                      "--memory-mb", "200", timeout=120)
        return {name: run.result() for name, run in runs.items()}


@pytest.mark.parametrize("name", list(MEMORY_MODES))
def test_a_raft_that_allocates_without_end_is_stopped_at_the_memory_bound(name, memory_runs):
    """A thread of server 0 fills a list, 4 MiB at a time: the process grew until the
    machine swapped and the kernel's out-of-memory killer ended something, with no
    verdict.  Now the memory bound ends the process the Raft runs in (the test process,
    or the peer's in isolated mode), the test fails saying so with every thread's stack,
    and the eater's own frame is among them."""
    process, res = MEMORY_MODES[name][1], memory_runs[name]
    assert res.returncode == 1, res.out[-3000:]
    line = res.failure_line("test_initial_election_2a")
    match = re.fullmatch(re.escape("  ... FAILED -- ") + MEMORY.format(process=process), line)
    assert match, line
    assert 200 < int(match.group(1)) < 1024, line  # ended on the way, not when the eater stopped
    assert "Memory bound (" in res.stdout
    if name != "sim":  # real threads: the eater's stack is among them
        assert "in _eat_forever" in res.stdout, res.stdout[-3000:]
    if name in ("real", "sim"):  # the process ended: the next test could not run
        assert "not run (the test process had ended): test_re_election_2a" in res.stdout
    if name == "isolated":  # only the peer ended: the next test ran (and its server 0 ate)
        assert res.summary() == {"passed": 0, "failed": 2}, res.stdout[-3000:]


def test_a_correct_raft_stays_well_under_the_memory_bound(memory_runs):
    res = memory_runs["bundled"]
    assert res.returncode == 0, res.out[-3000:]
    assert res.summary() == {"passed": 1, "failed": 0}


@pytest.mark.parametrize("mode", [(), ("-n", "2"), ("--isolate",)],
                         ids=["one-process", "xdist", "isolated"])
def test_a_fork_as_the_raft_is_imported_is_ended_at_once_and_every_test_says_so(
        mode, tmp_path):
    """A module that forks when imported: the copy ran the whole session beside the real
    one (in isolated mode, a second template on the tester's control socket); under
    xdist the copies reported the same tests and the run ended in INTERNALERROR, exit
    status 3, with one test of three reported.  Now the copy ends before it runs one
    line (it leaves no marker) and each test's verdict says so."""
    markers = tmp_path / "markers"
    markers.mkdir()
    res = raftlab_test("2A", "--impl", toy("forks_at_import"), "--seed", "3", *mode,
                       timeout=180, env={"RAFTLAB_TOY_MARKERS": str(markers)})
    assert res.returncode == 0, res.out[-3000:]
    assert res.summary() == {"passed": 3, "failed": 0}
    assert res.stdout.count(
        "warning: the Raft's module forked its process 1 time(s) while it was imported "
        "(os.fork, or multiprocessing's fork); each copy was ended at once, before it ran "
        "anything") == 3, res.stdout
    assert not list(markers.iterdir())  # no copy ran on


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc: Linux")
def test_a_program_the_raft_started_is_killed_after_the_test_and_named():
    """``sleep 3600`` from make() outlived the run: now it is killed once the cleanup is
    over and named (a warning), and it is gone afterwards."""
    res = raftlab_test("test_initial_election_2a", "test_re_election_2a",
                       "--impl", toy("starts_a_program"), "--seed", "3", timeout=120)
    assert res.returncode == 0, res.out[-3000:]
    assert res.summary() == {"passed": 2, "failed": 0}
    found = re.findall(r"warning: processes still running after cleanup, now killed: pid "
                       r"(\d+) \(sleep 3600\) \(a Raft runs in threads only", res.stdout)
    assert len(found) == 1, res.stdout  # the first test's; the second starts nothing
    assert not _alive(int(found[0]))


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_forked_copy_of_the_test_process_reports_nothing(xdist):
    """The copy would pass its test after the real one failed: only the real verdicts
    are reported.  The old output had a Passed line under the FAILED one, and under
    xdist the copies reported over their worker's channel: two tests had no result."""
    res = raftlab_test("2A", "--impl", toy("forked_copy_passes"), "--seed", "3", *xdist,
                       timeout=180)
    assert res.returncode == 1, res.out[-3000:]
    assert res.summary() == {"passed": 0, "failed": 3}
    for name in ("test_initial_election_2a", "test_re_election_2a", "test_many_elections_2a"):
        assert res.failure_line(name) == "  ... FAILED -- expected one leader, got none"
    assert "Passed" not in res.stdout


def test_plain_pytest_also_ends_despite_non_daemon_threads():
    res = _run([sys.executable, "-m", "pytest", "--pyargs", "labtests", "-q", "-p",
                "no:cacheprovider", "-k", "test_initial_election_2a",
                "--raft-impl", toy("leaves_threads")], timeout=120)
    assert res.returncode == 0, res.out[-3000:]
    assert "1 passed" in res.stdout
    assert "ends now with pytest's exit status 0" in res.stderr


# -- the lab's output ---------------------------------------------------------------------

def test_output_is_the_labs_lines_then_a_summary_without_pytest_progress():
    res = raftlab_test("test_initial_election_2a", "--sim", "--seed", "1", timeout=120)
    assert res.returncode == 0, res.out[-3000:]
    lines = res.stdout.splitlines()
    assert lines[0].startswith("raftlab: Raft implementation 'raft'; seed 1 (fixed)")
    assert "Test (2A): initial election ..." in lines
    assert re.fullmatch(r"  \.\.\. Passed -- .*", res.failure_line("test_initial_election_2a"))
    assert re.fullmatch(r"1 passed, 0 failed in [\d.]+s", lines[-1]), lines[-1]
    for noise in ("test session starts", "[100%]", "labtests/test_2a.py", "collected"):
        assert noise not in res.stdout


def test_pytest_output_only_when_asked():
    res = raftlab_test("test_initial_election_2a", "--sim", "--seed", "1", "--", "-v",
                       timeout=120)
    assert res.returncode == 0, res.out[-3000:]
    assert "test session starts" in res.stdout and "PASSED" in res.stdout
    assert "Test (2A): initial election ..." in res.stdout


def test_a_failure_line_gives_the_reason_then_one_rerun_hint_then_details():
    res = raftlab_test("test_initial_election_2a", "--impl", str(TOYS / "two_leaders.py"),
                       "--sim", "--seed", "777", timeout=120)
    assert res.returncode == 1, res.out[-3000:]
    lines = res.stdout.splitlines()
    i = lines.index("Test (2A): initial election ...")
    assert re.fullmatch(r"  \.\.\. FAILED -- term \d+ has \d \(>1\) leaders", lines[i + 1])
    assert lines[i + 2].startswith("  seed 777; rerun with: raftlab test "
                                   "test_initial_election_2a --seed 777 --impl ")
    assert lines[i + 2].endswith(" --sim")
    assert lines[i + 3].startswith("  or: ")
    assert lines[i + 4] == "---- details of test_initial_election_2a ----"
    assert res.stdout.count("rerun with:") == 1
    assert res.summary() == {"passed": 0, "failed": 1}


def test_pytest_refusing_to_start_shows_its_own_words_and_status():
    res = raftlab_test("2A", "--", "--no-such-option", timeout=120)
    assert res.returncode == 4, res.out[-3000:]
    assert "unrecognized arguments: --no-such-option" in res.stdout
    assert "not run" not in res.stdout and "ended with" not in res.stdout


def test_a_students_tools_package_does_not_replace_raftlabs(tmp_path):
    """The child runs in the student's folder; its own ``tools`` package stays theirs."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("raise SystemExit('student tools')\n")
    script = Path(sys.executable).with_name("raftlab")  # as a user runs it (its dir first)
    assert script.exists(), f"no raftlab script beside {sys.executable} (pip install -e .)"
    res = _run([str(script), "test", "test_initial_election_2a", "--sim", "--seed", "1"],
               timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.out[-3000:]
    assert res.summary() == {"passed": 1, "failed": 0}
