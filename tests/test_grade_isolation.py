"""The per-part watchdog of ``raftlab grade`` with a fake backend (no processes), and the
run supervisor (limits, output cap, the sweep, the run user's private view) in real
subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests.grade_support import why_no_run_user
from tools.grade import sandbox
from tools.grade.isolation import BUDGET_REASON, SUPERVISOR_NOTE, run_part
from tools.grade.sandbox import choose_run_user, kill_uid, lease_after_runs
from tools.stress.backends.base import BackendError, Job, RunResult

NO_RUN_USER = why_no_run_user()


def _result(job: Job, outcome: str = "passed") -> RunResult:
    return RunResult(job=job.index, test=job.test, seed=job.seed, outcome=outcome,
                     duration=0.1, worker="gw0", loadavg=())


class FakeBackend:
    """Reports the first ``finish`` jobs (plus noise), then hangs until cancelled."""

    GRACE = 0.1

    def __init__(self, finish: int, error: Exception | None = None) -> None:
        self.finish = finish
        self.error = error
        self.cancelled = threading.Event()
        self.cancels = 0

    def run(self, jobs, on_result):
        for job in jobs[: self.finish]:
            on_result(_result(job))
            on_result(_result(job, "failed"))  # a repeated report of a job is ignored
        on_result(RunResult(job=999, test="x", seed=1, outcome="failed", duration=0,
                            worker="gw0", loadavg=()))  # so is an unknown job
        if self.error is not None:
            raise self.error
        self.cancelled.wait(10)
        on_result(_result(jobs[-1]))  # finished after the stop: keeps the stop's reason

    def cancel(self):
        self.cancels += 1
        self.cancelled.set()


JOBS = [Job(i, f"labtests/test_2a.py::t{i % 2}", 100 + i) for i in range(4)]


def test_budget_exhausted_fails_the_remaining_runs():
    backend = FakeBackend(finish=2)
    results, elapsed = run_part(JOBS, backend, budget_s=0.5, stall_s=30)
    assert [r.outcome for r in results] == ["passed", "passed", "failed", "failed"]
    assert all(r.message.startswith(BUDGET_REASON) for r in results[2:])
    assert backend.cancels >= 1 and 0.5 <= elapsed < 5


def test_a_stalled_run_is_killed_with_a_reason():
    results, _ = run_part(JOBS, FakeBackend(finish=1), budget_s=60, stall_s=0.5)
    assert results[0].outcome == "passed"
    assert all("the grader killed the tests" in r.message for r in results[1:])


def test_backend_error_becomes_the_reason_of_missing_runs():
    backend = FakeBackend(finish=3, error=BackendError("pytest exited with status 4\nusage"))
    seen: list[RunResult] = []
    results, _ = run_part(JOBS, backend, budget_s=60, stall_s=30, on_result=seen.append)
    assert len(seen) == 3
    assert results[3].message == "the test process failed: pytest exited with status 4 (usage)"


@pytest.mark.parametrize("module", ["tools.grade.isolation",
                                    "tools.grade_isolation"])  # the old name still works
def test_limits_wrapper_sets_rlimits_and_execs(module):
    code = ("import resource as r, os; print(r.getrlimit(r.RLIMIT_AS)[0] >> 20, "
            "r.getrlimit(r.RLIMIT_CORE)[0], os.environ['MALLOC_ARENA_MAX'], "
            "r.getrlimit(r.RLIMIT_CPU)[0], r.getrlimit(r.RLIMIT_NOFILE)[0], "
            "r.getrlimit(r.RLIMIT_FSIZE)[0] >> 20, r.getrlimit(r.RLIMIT_NPROC)[0])")
    out = subprocess.run([sys.executable, "-m", module, "--memory-mb", "700", "--cpu-s", "77",
                          "--nofile", "300", "--fsize-mb", "5", "--nproc", "999",
                          "--", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["700", "0", "2", "77", "300", "5", "999"]


def _supervise(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.grade.isolation", "--memory-mb", "2048",
                           *args], capture_output=True, text=True, timeout=timeout)


DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    os._exit(0)
os.wait()
while not os.path.getsize(sys.argv[1]):
    time.sleep(0.01)
print("parent done")
"""


def test_supervisor_kills_a_double_forked_daemon_before_it_exits(tmp_path):
    pidfile = tmp_path / "pid"
    pidfile.write_text("")
    out = _supervise("--", sys.executable, "-c", DAEMON, str(pidfile))
    assert out.returncode == 0, out.stderr
    daemon = int(pidfile.read_text())
    assert not Path(f"/proc/{daemon}").exists()  # killed and reaped by the supervisor
    assert "parent done" in out.stdout
    assert f"{SUPERVISOR_NOTE} killed 1 process(es)" in out.stdout


def test_supervisor_caps_output_and_passes_the_exit_status():
    code = "import sys; sys.stdout.write('x' * (3 << 20)); sys.stdout.flush(); sys.exit(7)"
    out = _supervise("--output-mb", "1", "--", sys.executable, "-c", code)
    assert out.returncode == 7
    assert out.stdout.count("x") == 1 << 20
    assert f"{SUPERVISOR_NOTE} output capped at 1 MiB" in out.stdout


def test_supervisor_sigterm_kills_the_run_and_returns():
    proc = subprocess.Popen([sys.executable, "-m", "tools.grade.isolation", "--memory-mb",
                             "2048", "--", sys.executable, "-c",
                             "import time; print('up', flush=True); time.sleep(600)"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(NO_RUN_USER is not None, reason=f"needs root: {NO_RUN_USER}")
def test_every_folder_the_run_user_cannot_enter_on_the_way_is_covered(tmp_path):
    """A TMPDIR two private folders deep (pytest's own tmp_path is one): both must be
    covered, each keeping the one entry on the way; covering the first alone left the
    second shut to the run user, and every run failed to import the submission."""
    a = tmp_path / "a"
    work = a / "b" / "c" / "run" / "work"
    work.mkdir(parents=True)
    a.chmod(0o700)
    (a / "b").chmod(0o700)
    (a / "b" / "c").chmod(0o755)
    other = sandbox.RunUser(uid=os.getuid() + 12345, gid=os.getgid() + 12345)
    blocked = sandbox.blocking_dirs([work], other)
    assert blocked[a] == {"b"} and blocked[a / "b"] == {"c"}, blocked
    assert a / "b" / "c" not in blocked and a / "b" / "c" / "run" not in blocked


def test_run_user_and_private_view():
    # World-readable on purpose: only the private view keeps the run user out.
    secret = Path(tempfile.mkdtemp(prefix="raftlab-test-secret-"))
    os.chmod(secret, 0o755)
    (secret / "raft.py").write_text("secret")
    user, _why = choose_run_user()
    assert user is not None
    code = ("import os, sys\ntry:\n    seen = os.listdir(sys.argv[1])\n"
            "except PermissionError:\n    seen = 'denied'\n"
            "print(os.getuid(), os.getgid(), os.getgroups(), seen)")
    try:
        run = ["--run-user", str(user), "--as-run-user", "--", sys.executable, "-c", code,
               str(secret)]
        control = _supervise(*run)
        assert control.returncode == 0, control.stdout + control.stderr
        assert control.stdout.split() == [str(user.uid), str(user.gid), "[]", "['raft.py']"]
        out = _supervise(f"--hide={secret}", *run)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.split() == [str(user.uid), str(user.gid), "[]", "denied"]
        assert (secret / "raft.py").read_text() == "secret"  # the machine's view is intact
        # A run user's process that outlives the run is killed by uid.
        sleeper = subprocess.Popen(["sleep", "600"], user=user.uid, group=user.gid,
                                   extra_groups=[])
        assert kill_uid(user.uid) == [sleeper.pid]
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
    finally:
        user.release()
        shutil.rmtree(secret)


@pytest.mark.skipif(NO_RUN_USER is not None, reason=f"needs root: {NO_RUN_USER}")
def test_run_users_are_leased_never_shared(monkeypatch, tmp_path):
    # A lease folder of this test's own: graders on other xdist workers lease uids too,
    # and one of them could take the uid given back below before this test does.
    folder = tmp_path / "uids"
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(sandbox, "_lease_dir", lambda: folder)
    first, _ = choose_run_user()
    second, _ = choose_run_user()
    assert first is not None and second is not None and first.uid != second.uid
    assert lease_after_runs(first.uid, 0) is None  # held: nobody else gets it
    first.release()
    again = lease_after_runs(first.uid, 0)
    assert again is not None  # given back
    again.release()
    second.release()
    with pytest.raises(ValueError):
        kill_uid(0)


@pytest.mark.skipif(NO_RUN_USER is not None, reason=f"needs root: {NO_RUN_USER}")
def test_a_run_that_outlives_its_graders_lease_keeps_its_uid_until_swept():
    """A grader killed mid-run gives its lease back at once, while the run's supervisor
    goes on and kills every process of the uid at its end: handed to another run in
    between, that sweep would kill the other run's peers (a wrong verdict)."""
    user, _why = choose_run_user()
    assert user is not None
    proc = subprocess.Popen([sys.executable, "-m", "tools.grade.isolation", "--memory-mb",
                             "2048", "--run-user", str(user), "--", sys.executable, "-c",
                             "import time; print('up', flush=True); time.sleep(600)"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        user.release()  # the grader is gone; its run is not
        assert lease_after_runs(user.uid, 0) is None
        other, _why = choose_run_user(user.uid - 1)  # starts the scan at user.uid
        assert other is not None and other.uid != user.uid
        other.release()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGKILL
        # Swept and gone: the uid is free again (after any run another grader gave it).
        again = lease_after_runs(user.uid, 900)
        assert again is not None
        again.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
