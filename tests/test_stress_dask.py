"""``raftlab stress --backend dask`` on a real Dask cluster (scheduler + 2 workers, 127.0.0.1).

No mocks: the scheduler and the workers are separate ``dask`` processes started here
and killed at the end.  The fake suite of tests/test_stress.py is used, whose outcomes
depend only on the seed, so a cluster run must report exactly what a local run does.
Skipped when dask is not installed (``pip install -e '.[cluster]'``).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from labtests.options import HarnessOptions
from tests.test_stress import CONFTEST, NO_HARNESS, SUITE, run_stress
from tools.stress import command as stress
from tools.stress.backends.base import WORKER_PYTHON, BackendUnavailable, RunOptions
from tools.stress.backends.dask_worker import run_one, split_slots, worker_rootdir
from tools.stress.backends.factory import make_backend
from tools.stress.backends.xdist import XdistBackend
from tools.stress.results import results_of

try:
    import distributed  # noqa: F401
    HAVE_DASK = True
except ImportError:
    HAVE_DASK = False
needs_dask = pytest.mark.skipif(not HAVE_DASK,
                                reason="dask is not installed: pip install -e '.[cluster]'")

REPO = Path(__file__).resolve().parents[1]
MARKERS_ENV = "RAFTLAB_TEST_MARKERS"

SLOW_SUITE = '''
import os, time
from pathlib import Path

def test_marked(seed):
    # One marker file per start of a run (a run retried after its worker died starts
    # twice), naming the dask worker process that started this pytest (its parent).
    Path(os.environ["RAFTLAB_TEST_MARKERS"], f"{seed}-{os.getppid()}-{os.getpid()}").touch()
    time.sleep(1.0)
'''

SHIP_TOY = '''
class _Raft:
    def get_state(self):
        return (1, False)

def make():
    raise RuntimeError("impl loaded from " + __file__)
'''


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return make_suite(tmp_path)


def make_suite(tmp_path: Path) -> Path:
    root = tmp_path / "suite"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_fake.py").write_text(SUITE)
    (root / "test_slow_fake.py").write_text(SLOW_SUITE)
    (root / "test_crash_fake.py").write_text(
        "import os\n\ndef test_crash(seed):\n    os._exit(3)\n")
    return root


class Cluster:
    """A scheduler and workers as separate processes, each in its own process group."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed by the child's exit
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def start(self, workers: int) -> None:
        sched_file = self.tmp / "scheduler.json"
        self._spawn("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(sched_file)])
        deadline = time.monotonic() + 30
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert time.monotonic() < deadline, (self.tmp / "scheduler.log").read_text()
            time.sleep(0.1)
        self.address = json.loads(sched_file.read_text())["address"]
        for i in range(workers):
            name = f"w{i}"
            self.workers[name] = self._spawn(name, [
                "distributed.cli.dask_worker", self.address, "--host", "127.0.0.1",
                "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name,
                "--death-timeout", "20"])
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=30)

    def kill_worker(self, name: str) -> None:
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait(timeout=10)

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM the workers, then the scheduler once they have ended; SIGKILL what has
        not ended ``grace`` s after the first signal.

        Workers first, as a cluster is shut down: a worker whose scheduler closes during
        its own close can hang in Dask (CancelledError in ``Worker.close``, then no exit
        until killed -- seen 2 times in 5 on a loaded machine with no raftlab task run),
        and a killed worker keeps its folder."""
        deadline = time.monotonic() + grace
        workers = list(self.workers.values())
        for group in (workers, [p for p in self.procs if p not in workers]):
            for proc in group:
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            for proc in group:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)


def _cluster(tmp_path: Path) -> Iterator[Cluster]:
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "tmp").mkdir()  # the cluster's temporary directory: what it leaves is checked
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), TMPDIR=str(tmp_path / "tmp"))
    env[MARKERS_ENV] = str(markers)
    c = Cluster(tmp_path, env)
    try:
        c.start(workers=2)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Shared by the tests that leave the workers alive."""
    yield from _cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """For a test that kills a worker."""
    yield from _cluster(tmp_path)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def outcomes(rows: list[dict]) -> list[tuple[str, int, str]]:
    return sorted((r["test"], r["seed"], r["outcome"]) for r in rows)


def test_split_slots_shares_a_hosts_runs_among_its_workers():
    assert split_slots(3, ["b", "a"]) == {"a": 2, "b": 1}
    assert split_slots(1, ["a", "b"]) == {"a": 1, "b": 0}


def test_without_dask_the_backend_explains_how_to_install_it(suite, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    err = io.StringIO()
    monkeypatch.setattr(stress, "make_console", lambda **kw: Console(file=err, width=200))
    rc, _ = run_stress(["test_fake.py", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1",
                        "-o", str(tmp_path / "o"), "--no-live", *NO_HARNESS], cwd=suite)
    assert rc == 2
    assert "pip install '.[cluster]' in a raftlab checkout" in err.getvalue()
    with pytest.raises(BackendUnavailable, match=r"pip install '\.\[cluster\]'"):
        make_backend("dask", RunOptions(), scheduler="tcp://127.0.0.1:1")
    # The local backend does not need dask.
    assert isinstance(make_backend("local", RunOptions(), workers=2),
                      XdistBackend)


def test_dask_needs_a_scheduler(suite, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run_stress(["test_fake.py", "--backend", "dask", "--no-live", *NO_HARNESS], cwd=suite)
    assert exc.value.code == 2 and "--scheduler" in capsys.readouterr().err


def spec(test: str, rootdir: Path, impl: str | None = None) -> dict:
    options = RunOptions(harness=HarnessOptions(impl=impl), rootdir=rootdir, timeout=60,
                         pytest_args=("-p", "no:raftlab"))
    return {"batch": "b1", "job": {"index": 7, "test": test, "seed": 12},
            "options": options.to_json(), "impl_name": None, "prefix": []}


def test_worker_task_with_command_prefix_and_shipped_file(suite):
    """The task body alone (as a worker runs it): a grade-style exec prefix, a shipped file."""
    task = spec("test_fake.py::test_leader", suite, impl="/client/only/raft.py")
    task["prefix"] = [WORKER_PYTHON, "-c", "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"]
    task["impl_name"] = "raft.py"
    toy = (b"class R:\n    def get_state(self):\n        return (1, True)\n\n"
           b"def make():\n    return R()\n")
    event = run_one(task, toy)
    assert event is not None
    assert (event["job"], event["test"], event["seed"], event["outcome"]) == (
        7, "test_fake.py::test_leader", 12, "passed")
    assert event["properties"]["seed"] == 12


def test_worker_task_reports_a_crashed_run_as_failed(suite):
    event = run_one(spec("test_crash_fake.py::test_crash", suite))
    assert event is not None and event["outcome"] == "failed"
    assert "without reporting the run" in event["message"] and event["job"] == 7


def test_worker_finds_the_graded_suites_in_its_installed_raftlab():
    # The client's rootdir is not on this worker: the installed labtests are used.
    root = worker_rootdir("/no/such/client/checkout", "labtests/test_2a.py")
    assert (root / "labtests" / "test_2a.py").is_file()


def test_worker_task_raises_when_the_test_cannot_run_there(suite):
    with pytest.raises(RuntimeError, match="could not run test_fake.py::test_nope"):
        run_one(spec("test_fake.py::test_nope", suite))
    with pytest.raises(FileNotFoundError, match="install raftlab on every worker"):
        run_one(spec("no_such_file.py::test_x", suite))


@needs_dask
def test_unreachable_scheduler_is_a_backend_error(suite, tmp_path, monkeypatch):
    monkeypatch.setattr("tools.stress.backends.dask_client.DaskBackend.CONNECT_TIMEOUT", 2.0)
    rc, _ = run_stress(["test_fake.py", "-k", "passes", "--backend", "dask", "--scheduler",
                        "tcp://127.0.0.1:9", "-o", str(tmp_path / "o"), "--no-live",
                        *NO_HARNESS], cwd=suite)
    assert rc == 3


@needs_dask
def test_dask_results_equal_local_results(cluster, suite, tmp_path):
    common = ["test_fake.py", "-k", "passes or flaky", "-n", "4", "--seed", "4", "--no-live"]
    rc_local, text_local = run_stress(
        common + ["-p", "2", "-o", str(tmp_path / "local"), *NO_HARNESS], cwd=suite)
    rc_dask, text_dask = run_stress(
        common + ["--backend", "dask", "--scheduler", cluster.address, "--workers-per-host", "2",
                  "-o", str(tmp_path / "dask"), *NO_HARNESS], cwd=suite)
    local = results_of(tmp_path / "local" / "results.jsonl")
    dask = results_of(tmp_path / "dask" / "results.jsonl")
    assert len(dask) == 8 and sorted(r["job"] for r in dask) == list(range(8))
    assert outcomes(dask) == outcomes(local)
    failures = sum(r["outcome"] == "failed" for r in local)
    assert failures > 0, "pick a base seed that yields a failure"
    assert rc_dask == rc_local == 1
    assert f"{failures} of 8 failed" in text_dask and f"{failures} of 8 failed" in text_local
    assert "2 worker(s) on 1 host(s), 2 concurrent runs" in text_dask
    assert {r["worker"].rsplit("/", 1)[-1] for r in dask} <= {"w0", "w1"}
    # Failures land in the same kept-failure directory, with the message and the log.
    failed = next(r for r in dask if r["outcome"] == "failed")
    log = Path(failed["log"]).read_text()
    assert log.startswith(f"test:     {failed['test']}") and f"unlucky seed {failed['seed']}" in log
    assert (tmp_path / "dask" / "rerun.sh").read_text().count("\n") == 2 * failures


@needs_dask
def test_single_file_implementation_is_shipped(cluster, suite, tmp_path):
    impl = tmp_path / "student" / "my_raft.py"
    impl.parent.mkdir()
    impl.write_text(SHIP_TOY)
    rc, text = run_stress(["test_fake.py", "test_leader", "-n", "2", "--impl", str(impl),
                           "--backend", "dask", "--scheduler", cluster.address,
                           "-o", str(tmp_path / "out"), "--no-live", *NO_HARNESS], cwd=suite)
    rows = results_of(tmp_path / "out" / "results.jsonl")
    assert rc == 1 and [r["outcome"] for r in rows] == ["failed", "failed"], text
    for r in rows:  # the worker loaded its own copy, from the run's scratch directory
        assert "impl loaded from" in r["message"] and str(impl) not in r["message"]
        assert "raftlab-run-" in r["message"] and r["message"].endswith("/impl/my_raft.py")
    assert str(impl) in (tmp_path / "out" / "rerun.sh").read_text()  # reruns are local


@needs_dask
def test_killed_worker_runs_are_retried_and_counted_once(own_cluster, suite, tmp_path):
    cluster = own_cluster
    out = tmp_path / "out"
    results = out / "results.jsonl"
    runs = 4
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.stress", "test_slow_fake.py", "-n", str(runs),
         "--backend", "dask", "--scheduler", cluster.address, "--workers-per-host", "2",
         "-o", str(out), "--no-live", *NO_HARNESS],
        cwd=suite, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    markers = Path(cluster.env[MARKERS_ENV])
    try:
        deadline = time.monotonic() + 60
        while not any(markers.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.02)
        # A run's test body has started and sleeps 1 s: kill the worker running it.
        seed, worker_pid, run_pid = next(markers.iterdir()).name.split("-")
        victim = next(n for n, p in cluster.workers.items() if p.pid == int(worker_pid))
        cluster.kill_worker(victim)
        if sys.platform.startswith("linux"):  # the run died with its worker (no orphan)
            deadline = time.monotonic() + 0.5
            while alive(int(run_pid)) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not alive(int(run_pid)), "the killed worker's run kept running"
        text, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, text
    rows = results_of(results)
    assert sorted(r["job"] for r in rows) == list(range(runs))  # every run exactly once
    assert all(r["outcome"] == "passed" for r in rows)
    assert f"0 of {runs} failed" in text and f"{runs}/{runs}" in text
    starts = Counter(p.name.split("-")[0] for p in markers.iterdir())
    assert set(starts) == {str(r["seed"]) for r in rows}
    assert starts[seed] == 2, f"the killed run was not retried: {starts}"
    (retried,) = [r for r in rows if r["seed"] == int(seed)]
    assert not retried["worker"].endswith(f"/{victim}")
    # The killed run's folder is in its worker's Dask folder, which Dask reclaims when a
    # worker next starts there; none is left loose in the temporary directory.
    loose = [p.name for p in Path(cluster.env["TMPDIR"]).iterdir() if "raftlab" in p.name]
    assert not loose, loose


@needs_dask
def test_ctrl_c_cancels_the_cluster_runs_and_prints_the_partial_table(cluster, tmp_path):
    """The interrupt goes out as soon as the first result is on disk; 40 runs of 1 s on two
    one-thread workers leave at least 19 s of work after it, so it lands while runs remain
    however loaded the machine (no fixed wait to race against)."""
    suite = make_suite(tmp_path)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    markers = Path(cluster.env[MARKERS_ENV])
    before = set(markers.iterdir())
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.stress", "test_slow_fake.py", "-n", "40",
         "--backend", "dask", "--scheduler", cluster.address, "-o", str(out), "--no-live",
         *NO_HARNESS],
        cwd=suite, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        deadline = time.monotonic() + 300  # start-up only: generous for a loaded machine
        while not (results.exists() and results.read_text().count("\n") >= 1):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, text
    assert "INTERRUPTED after" in text and "raftlab stress results" in text
    rows = results_of(results)
    assert 1 <= len(rows) < 40 and f"{len(rows)}/40" in text
    # Nothing of the batch is left on the cluster, and no run starts after the stop.
    from distributed import Client

    with Client(cluster.address, timeout=30, set_as_default=False) as client:
        deadline = time.monotonic() + 10
        while client.run_on_scheduler(_task_count) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.run_on_scheduler(_task_count) == 0
    started = set(markers.iterdir()) - before
    time.sleep(2.0)
    assert set(markers.iterdir()) - before == started
    assert len(started) < 40


def _task_count(dask_scheduler) -> int:
    return len(dask_scheduler.tasks)


@needs_dask
def test_grade_runs_through_the_dask_backend(cluster, tmp_path):
    """``raftlab grade --backend dask`` scores from the cluster's runs (bundled Raft, sim)."""
    from tools.grade import command as grade

    out = io.StringIO()
    rc = grade.main(["raft", "--only", "test_initial_election_2a", "--runs", "2", "--sim",
                     "--backend", "dask", "--scheduler", cluster.address,
                     "-o", str(tmp_path / "grade")],
                    console=Console(file=out, width=200, no_color=True))
    report = json.loads((tmp_path / "grade" / "report.json").read_text())
    assert rc == 0, out.getvalue()
    assert report["score"] == report["max_score"] > 0
    runs = [run for part in report["parts"] for test in part["tests_detail"]
            for run in test["run_results"]]
    assert [run["outcome"] for run in runs] == ["passed", "passed"]


@needs_dask
def test_failure_bundles_come_back_from_the_cluster(cluster, tmp_path):
    """The graded harness on the workers writes a bundle per failing run in the run's
    scratch folder (gone after the task); the client keeps the copies that came back."""
    toy = REPO / "tests" / "toys_stress" / "two_bugs.py"
    rc, text = run_stress(["test_basic_agree_2b", "-n", "4", "--sim", "--seed", "3",
                           "--impl", str(toy), "--backend", "dask", "--scheduler",
                           cluster.address, "-o", str(tmp_path / "out"), "--no-live"],
                          cwd=REPO)
    rows = results_of(tmp_path / "out" / "results.jsonl")
    assert rc == 1 and [r["outcome"] for r in rows] == ["failed"] * 4, text
    kept = [Path(r["bundle"]) for r in rows if r["bundle"]]
    assert kept, text
    for folder in kept:
        assert folder.parent == tmp_path / "out" / "bundles"
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["seed"] in {r["seed"] for r in rows} and (folder / "timeline.html").exists()
    groups = json.loads((tmp_path / "out" / "groups.json").read_text())
    assert sum(g["count"] for g in groups) == 4 and "failure groups" in text
