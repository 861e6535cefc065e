"""``--race`` beyond one test: ``raftlab stress --race`` (local and Dask: the option reaches
every run; a race fails that run, or passes it with --race-warn), and ``--race --isolate``
is a usage error that says why, in pytest, ``raftlab test`` and ``raftlab stress``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from labtests.options import RACE_SIM_COST, RACE_WITH_ISOLATE, HarnessOptions
from tools.stress import command as stress
from tools.stress.backends.base import RunOptions
from tools.stress.results import rerun_for, results_of

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "toys_race" / "unlocked_get_state.py"
TEST = "labtests/test_2a.py::test_initial_election_2a"


def run_stress(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(REPO)
    try:
        rc = stress.main(argv, console=Console(file=out, width=200, no_color=True))
    finally:
        os.chdir(old)
    return rc, out.getvalue()


def test_race_options_reach_every_run_and_survive_the_dask_hop() -> None:
    opts = RunOptions(harness=HarnessOptions(sim=True, race=True, race_warn=True))
    assert {"--race", "--race-warn"} <= set(opts.harness_args())
    again = RunOptions.from_json(opts.to_json())  # what a Dask task receives
    assert again.harness.race and again.harness.race_warn
    assert "--race" in rerun_for(TEST, 3, opts)  # the rerun shows the race again


def test_race_multiplies_the_simulations_limits() -> None:
    assert HarnessOptions(race=True).sim_limit_factor == RACE_SIM_COST > 1
    assert HarnessOptions().sim_limit_factor == 1.0


@pytest.mark.parametrize("flag", ["--race", "--race-warn"])
def test_stress_race_with_isolate_is_a_usage_error(flag: str, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        run_stress([TEST, "-n", "1", "--isolate", flag])
    assert exc.value.code == stress.EXIT_USAGE
    assert "--race cannot be used with --isolate" in capsys.readouterr().err


def test_pytest_and_raftlab_test_refuse_race_with_isolate() -> None:
    for cmd in ([sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k",
                 "initial_election", "--race", "--isolate", "-p", "no:cacheprovider"],
                [sys.executable, "-m", "tools.cli", "test", "test_initial_election_2a",
                 "--race", "--isolate"]):
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode not in (0, 1), (cmd, proc.stdout[-2000:], proc.stderr[-2000:])
        assert RACE_WITH_ISOLATE[:60] in proc.stdout + proc.stderr, proc.stderr[-2000:]
        assert "passed" not in proc.stdout


def test_stress_race_fails_the_runs_of_a_racy_raft(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, text = run_stress([TEST, "-n", "2", "-p", "1", "--sim", "--race", "--seed", "3",
                           "--impl", str(TOY), "-o", str(out), "--no-live"])
    assert rc == stress.EXIT_FAILED, text
    rows = results_of(out / "results.jsonl")
    assert len(rows) == 2 and all(r["outcome"] == "failed" for r in rows), rows
    assert all("DATA RACE" in Path(r["log"]).read_text() for r in rows)
    assert all("--race" in r.get("rerun", "--race") for r in rows)


def test_stress_race_warn_passes_the_runs_and_the_bundled_raft_passes(tmp_path: Path) -> None:
    rc, text = run_stress([TEST, "-n", "2", "-p", "1", "--sim", "--race-warn", "--seed", "3",
                           "--impl", str(TOY), "-o", str(tmp_path / "warn"), "--no-live"])
    assert rc == stress.EXIT_OK, text
    rc, text = run_stress([TEST, "-n", "2", "-p", "1", "--sim", "--race", "--seed", "3",
                           "-o", str(tmp_path / "bundled"), "--no-live"])
    assert rc == stress.EXIT_OK, text


def test_sim_limits_scale_under_race_unless_given() -> None:
    from labtests.plugin import _OPTIONS
    from labtests.sim import pytest_plugin as sim_plugin

    class Config:
        def __init__(self, race: bool, given: float | None = None) -> None:
            self.stash = pytest.Stash()
            self.stash[_OPTIONS] = HarnessOptions(sim=True, race=race, timeout_s=100.0)
            self.given = given

        def getoption(self, name: str, default: object = None) -> object:
            return self.given if name in ("raft_sim_cpu_limit", "raft_sim_wall_limit") else default

    plain, racing = Config(False), Config(True)
    assert sim_plugin.cpu_limit(racing) == pytest.approx(
        sim_plugin.cpu_limit(plain) * RACE_SIM_COST)
    assert sim_plugin.wall_limit(racing) == pytest.approx(
        sim_plugin.wall_limit(plain) * RACE_SIM_COST)
    assert sim_plugin.cpu_limit(Config(True, given=5.0)) == 5.0  # an explicit limit is kept
