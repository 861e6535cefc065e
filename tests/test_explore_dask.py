"""``raftlab explore --backend dask`` on a real Dask cluster (scheduler + workers, 127.0.0.1).

No mocks: the scheduler and workers are separate ``dask`` processes (the Cluster of
tests/test_stress_dask.py), killed at the end.  Runs are deterministic in simulated
time, so a cluster run must report per seed exactly what a local run reports, shrink
to the same minimal schedule and print the same replay command.  Skipped when dask
is not installed (``pip install -e '.[cluster]'``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("greenlet")
pytest.importorskip("distributed")

from tests.mutants.make_mutants import materialize  # noqa: E402
from tests.test_explore import PURE_SPIN  # noqa: E402
from tests.test_stress_dask import REPO, Cluster  # noqa: E402
from tools.explore import guard, pools  # noqa: E402
from tools.explore.command import main  # noqa: E402
from tools.explore.work import Shipped, ship  # noqa: E402


def _start(tmp: Path, workers: int) -> Cluster:
    """A cluster whose processes have a temporary directory of their own, ``tmp/tmp``
    (what they leave there is checked, not left in /tmp)."""
    (tmp / "tmp").mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), TMPDIR=str(tmp / "tmp"))
    c = Cluster(tmp, env)
    try:
        c.start(workers=workers)
    except BaseException:
        c.stop()
        raise
    return c


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = _start(tmp_path_factory.mktemp("explore-dask"), 2)
    try:
        yield c
    finally:
        c.stop()


def _records(out: Path) -> dict[int, tuple[str | None, str | None]]:
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {r["seed"]: (r["monitor"], r["message"]) for r in rows}


def _local_and_dask(cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    common: list[str], monitor: str) -> tuple[Path, Path, str]:
    """Explore with ``common`` options locally (-p 2), then on the cluster; both must find
    failures, report the same per seed and keep the same minimal ``monitor`` schedule.
    Returns the two output directories and what the Dask run printed."""
    local, remote = tmp_path / "local", tmp_path / "dask"
    assert main([*common, "-p", "2", "-o", str(local)]) == 1
    capsys.readouterr()
    assert main([*common, "--backend", "dask", "--scheduler", cluster.address,
                 "-o", str(remote)]) == 1
    printed = capsys.readouterr().out
    assert _records(remote) == _records(local)
    assert ((remote / "failures" / f"{monitor}.json").read_text()
            == (local / "failures" / f"{monitor}.json").read_text())
    return local, remote, printed


def _replay_shows_the_kept_log(out: Path, monitor: str, replay: str, tmp_path: Path) -> None:
    """The printed replay command, run locally, fails with ``monitor`` and the kept log."""
    log = tmp_path / "replay.log"
    proc = subprocess.run([sys.executable, "-m", "tools.explore", *shlex.split(replay)[2:],
                           "--log", str(log)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert f"[{monitor}]" in proc.stderr
    kept = (out / "failures" / f"{monitor}.log").read_text().splitlines()
    assert [x for x in kept if not x.startswith("# ")] == log.read_text().splitlines()


def test_dask_run_reports_what_a_local_run_does_and_shrinks_the_same(cluster, tmp_path, capsys):
    impl = materialize("vote_no_timer", str(tmp_path / "mutants"))
    common = ["--impl", impl, "-n", "24", "--shrink-runs", "25"]
    _, remote, printed = _local_and_dask(cluster, tmp_path, capsys, common, "early-election")
    assert f"dask {cluster.address}: 2 worker(s)" in printed and "shipping vote_no_timer" in printed
    assert len(_records(remote)) == 24
    assert "early-election" in {m for m, _ in _records(remote).values()}
    assert (remote / "failures" / "early-election.log").exists()
    summary = json.loads((remote / "summary.json").read_text())["minimal"]["early-election"]
    assert summary["replay_matches"]
    # The printed replay command is the local one (the client's path), and it reproduces
    # the failure with the debug log written next to the failure, line for line.
    replay = summary["replay"]
    assert replay == shlex.join(["raftlab", "explore", "--replay",
                                 str(remote / "failures" / "early-election.json"),
                                 "--impl", impl])
    _replay_shows_the_kept_log(remote, "early-election", replay, tmp_path)


def test_ship_carries_a_package_or_a_file_and_not_a_module_name(tmp_path, monkeypatch):
    pkg = materialize("stale_replies", str(tmp_path / "m"))
    shipped = ship(pkg)
    assert isinstance(shipped, Shipped) and shipped.name == "stale_replies"
    assert {rel for rel, _ in shipped.files} == {"__init__.py", "raft.py", "rules.py", "log.py"}
    monkeypatch.setattr(guard, "RUNS_DIR", str(tmp_path / "scratch"))  # as in a worker
    path = shipped.materialize()
    assert path != pkg and Path(path, "raft.py").read_bytes() == Path(pkg, "raft.py").read_bytes()
    assert shipped.materialize() == path  # once per content
    assert Path(path).is_relative_to(tmp_path / "scratch")  # it goes with the pool
    assert [p.name for p in Path(path).parent.iterdir()] == ["stale_replies"]  # no .ship-*
    one = tmp_path / "myraft.py"
    one.write_text("x = 1\n")
    single = ship(str(one))
    assert single is not None and single.files == (("", b"x = 1\n"),)
    assert Path(single.materialize()).read_text() == "x = 1\n"
    assert ship(None) is None and ship("raft") is None


def test_backend_options_are_checked_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--backend", "dask", "-n", "1", "-o", str(tmp_path / "a")])
    assert "--backend dask needs --scheduler" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--scheduler", "tcp://127.0.0.1:1", "-n", "1", "-o", str(tmp_path / "b")])
    assert "--scheduler needs --backend dask" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_a_clear_error_not_a_hang(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pools.DaskPool, "CONNECT_TIMEOUT", 2.0)
    code = main(["--backend", "dask", "--scheduler", "tcp://127.0.0.1:9", "-n", "1",
                 "-o", str(tmp_path / "o")])
    assert code == 2
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err


def test_a_run_that_never_returns_on_a_worker_is_killed_there_as_hung(cluster, tmp_path):
    """The worker kills the run's child process after --run-timeout: the run counts as
    hung, and the next schedules still run on that worker."""
    toy = tmp_path / "explore_pure_spin.py"
    toy.write_text(PURE_SPIN)
    out = tmp_path / "out"
    code = main(["--impl", str(toy), "-n", "3", "--backend", "dask", "--scheduler",
                 cluster.address, "-o", str(out), "--run-timeout", "5", "--no-shrink"])
    assert code == 1
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["seed"] for r in rows) == [0, 1, 2]
    for rec in rows:
        assert rec["monitor"] == "hang", rec
        assert "no result within 5 s of wall time" in rec["message"]
        assert "its process was killed" in rec["message"]


EXITS = '''
import os

def make(peers, me, persister, apply_ch):
    os._exit(7)
'''


def test_a_run_that_exits_its_process_on_a_worker_is_an_exit_finding(cluster, tmp_path):
    toy = tmp_path / "explore_exits.py"
    toy.write_text(EXITS)
    out = tmp_path / "out"
    code = main(["--impl", str(toy), "-n", "2", "--backend", "dask", "--scheduler",
                 cluster.address, "-o", str(out), "--no-shrink"])
    assert code == 1
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["monitor"] for r in rows] == ["exit", "exit"]
    assert rows[0]["message"] == ("the Raft ended the run's process: exit status 7 while "
                                  "the peers started, before the first step")


def test_a_raft_that_kills_its_process_on_a_worker_is_an_exit_finding_and_replaced(
        cluster, tmp_path):
    """The toy SIGKILLs its parent, the worker thread's child process: the task reports
    it, the child is replaced for the next seed, and the dead child's scratch folder is
    removed."""
    out = tmp_path / "out"
    code = main(["--impl", str(REPO / "tests" / "toys_explore" / "kill_parent.py"), "-n", "3",
                 "--backend", "dask", "--scheduler", cluster.address, "-o", str(out),
                 "--no-shrink"])
    assert code == 1
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["seed"] for r in rows) == [0, 1, 2]
    for rec in rows:
        assert rec["monitor"] == "exit", rec
        assert rec["message"].startswith("the run's process on the Dask worker died"), rec
    scratch = list((cluster.tmp / "tmp").rglob("raftlab-explore-*"))
    assert not scratch, scratch  # every child died, and each one's folder went with it


def test_a_dask_worker_leaves_nothing_of_explore_in_its_temporary_directory(tmp_path):
    """The worker threads' children (their runs' work folders, the shipped Raft) keep
    their files in the worker's own folder, which goes with the worker: before, each
    worker thread left a scratch folder and every shipped Raft a copy in /tmp."""
    toy = tmp_path / "explore_exits.py"
    toy.write_text(EXITS)
    c = _start(tmp_path, 1)
    try:
        code = main(["--impl", str(toy), "-n", "2", "--backend", "dask", "--scheduler",
                     c.address, "-o", str(tmp_path / "out"), "--no-shrink"])
    finally:
        c.stop(grace=60)  # the worker's own close removes its folder: let it end
    assert code == 1
    left = [p.relative_to(tmp_path / "tmp") for p in (tmp_path / "tmp").rglob("*")]
    assert not [p for p in left if "raftlab" in str(p)], left


def test_dask_reports_shrinks_and_replays_a_raft_that_ends_its_process_as_locally(
        cluster, tmp_path, capsys):
    """tests/toys_explore/sigkill.py on Dask: per seed the findings a local run gives,
    the same minimal schedule, and a replay (local) that shows the same finding."""
    toy = str(REPO / "tests" / "toys_explore" / "sigkill.py")
    common = ["--impl", toy, "-n", "3", "--shrink-runs", "30"]
    _, remote, _ = _local_and_dask(cluster, tmp_path, capsys, common, "exit")
    assert {m for m, _ in _records(remote).values()} == {"exit"}
    summary = json.loads((remote / "summary.json").read_text())["minimal"]["exit"]
    assert summary["replay_matches"] and "signal 9 (SIGKILL)" in summary["violation"]
    _replay_shows_the_kept_log(remote, "exit", summary["replay"], tmp_path)


def test_dask_race_reports_and_shrinks_a_race_as_locally(cluster, tmp_path, capsys):
    """``--backend dask --race``: each run under the race detector in the worker's child,
    the same verdicts as locally, and a replay command that carries --race."""
    toy = str(REPO / "tests" / "toys_race" / "unlocked_get_state.py")
    common = ["--impl", toy, "-n", "2", "--race", "--shrink-runs", "4"]
    _, remote, _ = _local_and_dask(cluster, tmp_path, capsys, common, "data-race")
    assert {m for m, _ in _records(remote).values()} == {"data-race"}
    summary = json.loads((remote / "summary.json").read_text())["minimal"]["data-race"]
    assert summary["replay_matches"]
    assert summary["replay"].endswith(" --race")
