"""The one option reader and the one rerun builder, and what hostile input does to them.

Bad environment values must stop the run with a message naming the variable
(never a traceback deep in a test), a rerun command must survive paths with
spaces and being pasted in another directory, and one failure -- simulated or
not -- prints one rerun hint that reproduces it.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from labtests.options import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    HarnessOptions,
    OptionError,
    from_env,
    from_pytest_config,
)
from labtests.rerun import rerun_command, rerun_hint

TESTS = Path(__file__).parent
TOYS = TESTS / "toys"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    # Printed commands start with the ``pytest`` script: this venv's, whatever PATH says.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def _pytest(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True, text=True, timeout=timeout, env=env or _clean_env(), cwd=cwd,
    )


# --- reading ------------------------------------------------------------------

def test_defaults_when_nothing_is_set():
    assert from_env({}) == HarnessOptions()
    assert HarnessOptions().timeout_s == DEFAULT_TIMEOUT_S == 180.0
    assert HarnessOptions().pytest_args() == []


def test_env_values_are_parsed():
    opts = from_env({
        "RAFTLAB_IMPL": "my.py", "RAFTLAB_SEED": "42", "RAFTLAB_TIMEOUT": "7.5",
        "RAFTLAB_SIM": "1", "RAFTLAB_DEBUG": "yes", "RAFTLAB_ISOLATE": "0",
    })
    assert opts == HarnessOptions(impl="my.py", seed=42, timeout_s=7.5, sim=True, debug=True)


@pytest.mark.parametrize("value", ["", "0", " 0 "])
def test_env_flags_off(value):
    assert not from_env({"RAFTLAB_SIM": value, "RAFTLAB_DEBUG": value}).sim


@pytest.mark.parametrize("name,value", [("RAFTLAB_SEED", "abc"), ("RAFTLAB_SEED", "1.5"),
                                        ("RAFTLAB_TIMEOUT", "soon"), ("RAFTLAB_MEMORY_MB", "2G"),
                                        ("RAFTLAB_MEMORY_MB", "-1")])
def test_bad_env_value_names_the_variable(name, value):
    with pytest.raises(OptionError, match=name):
        from_env({name: value})


class _FakeConfig:
    """Just ``getoption`` (what pytest's config offers), with some options unregistered."""

    def __init__(self, **values: object) -> None:
        self.values = values

    def getoption(self, name: str, default: object = None) -> object:
        return self.values.get(name, default)


def test_command_line_beats_env_and_missing_options_fall_back_to_env():
    env = {"RAFTLAB_IMPL": "env.py", "RAFTLAB_SEED": "1", "RAFTLAB_TIMEOUT": "9"}
    cfg = _FakeConfig(raft_impl="cli.py", raft_seed=0, raft_debug=False)
    opts = from_pytest_config(cfg, env)
    assert (opts.impl, opts.seed, opts.timeout_s) == ("cli.py", 0, 9.0)  # seed 0 is a seed
    assert from_pytest_config(_FakeConfig(), env).impl == "env.py"


def test_the_memory_bound_defaults_and_may_be_switched_off():
    assert from_env({}).memory_mb == DEFAULT_MEMORY_MB == 2048
    assert from_env({"RAFTLAB_MEMORY_MB": "0"}).memory_mb == 0
    assert from_pytest_config(_FakeConfig(raft_memory_mb=300),
                              {"RAFTLAB_MEMORY_MB": "0"}).memory_mb == 300
    with pytest.raises(OptionError, match="--raft-memory-mb=-5"):
        from_pytest_config(_FakeConfig(raft_memory_mb=-5), {})


def test_pytest_args_reproduce_the_options():
    opts = HarnessOptions(impl="a b.py", seed=3, timeout_s=20, sim=True, debug=True,
                          isolate=True, memory_mb=0)
    args = opts.pytest_args()
    assert args == ["--raft-impl", "a b.py", "--seed", "3", "--sim", "--raft-debug",
                    "--raft-timeout", "20", "--isolate", "--raft-memory-mb", "0"]
    # Parsed back by pytest's own parser, the options come out identical.
    from _pytest.config.argparsing import Parser

    from labtests.options import add_pytest_options

    parser = Parser(_ispytest=True)
    add_pytest_options(parser)
    ns = parser.parse_known_args(args)

    class _Cfg:
        def getoption(self, name, default=None):
            return getattr(ns, name, default)

    assert from_pytest_config(_Cfg(), {}) == opts


# --- rerun commands -----------------------------------------------------------

def test_rerun_command_styles_and_flags(tmp_path, monkeypatch):
    impl = tmp_path / "my raft.py"
    impl.write_text("")
    monkeypatch.chdir(tmp_path)
    opts = HarnessOptions(impl="my raft.py", sim=True, isolate=True, debug=True)
    cmd = rerun_command("test_backup_2b", 5, opts)
    assert shlex.split(cmd) == ["raftlab", "test", "test_backup_2b", "--seed", "5",
                                "--impl", str(impl), "--sim", "--isolate"]
    cmd = rerun_command("test_backup_2b", 5, opts, debug=True, style="pytest")
    assert shlex.split(cmd) == ["pytest", "--pyargs", "labtests", "-k",
                                "test_backup_2b", "--seed", "5", "--raft-impl", str(impl),
                                "--sim", "--isolate", "--raft-debug"]


def test_rerun_keeps_module_names_and_omits_the_bundled_raft():
    assert rerun_command("t", 1, HarnessOptions(impl="no_such_module_xyz")).endswith(
        "--impl no_such_module_xyz")
    assert rerun_command("t", 1, HarnessOptions()) == "raftlab test t --seed 1"


def test_rerun_rejects_an_unknown_style():
    with pytest.raises(ValueError, match="style"):
        rerun_command("t", 1, HarnessOptions(), style="make")  # type: ignore[arg-type]


def test_rerun_hint_is_two_lines():
    hint = rerun_hint("test_x_2a", 9, HarnessOptions())
    first, second = hint.splitlines()
    assert first == "seed 9; rerun with: raftlab test test_x_2a --seed 9"
    assert second.startswith("  or: pytest --pyargs labtests -k test_x_2a --seed 9")


# --- end to end ---------------------------------------------------------------

def test_bad_env_stops_the_run_with_a_usage_error():
    res = _pytest("--pyargs", "labtests", "-k", "initial_election",
                  env=_clean_env(RAFTLAB_SEED="twelve"))
    assert res.returncode == 4, res.stdout + res.stderr  # pytest's usage error
    assert "RAFTLAB_SEED='twelve' is not a valid int" in res.stderr


def test_isolate_is_refused_while_unavailable_never_silently_ignored():
    res = _pytest("--pyargs", "labtests", "-k", "initial_election", "--isolate", "--sim")
    assert res.returncode == 4, res.stdout + res.stderr
    if importlib.util.find_spec("labtests.isolation") is None:
        assert "not available yet" in res.stderr
    else:
        assert "cannot be used with --sim" in res.stderr


def test_a_simulated_deadlock_prints_one_rerun_hint_that_replays_it(tmp_path):
    toy = TESTS / "toys_sim" / "deadlock_raft.py"
    args = ("--pyargs", "labtests", "-k", "test_initial_election_2a", "--sim",
            "--raft-impl", str(toy), "--seed", "11", "-p", "no:randomly")
    res = _pytest(*args, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "deadlock" in out.lower()
    hint = (f"raftlab test test_initial_election_2a --seed 11 --impl {toy} --sim")
    # One rerun hint per failure, under its FAILED line; nothing else repeats it.
    assert out.count(hint) == 1, out
    assert out.count("rerun with:") == 1 and "replay exactly" not in out
    pytest_cmd = next(line for line in out.splitlines() if line.startswith("  or: "))[6:]
    again = subprocess.run(pytest_cmd, shell=True, capture_output=True, text=True,
                           timeout=120, env=_clean_env(), cwd=tmp_path)
    assert again.returncode == 1 and "deadlock" in again.stdout.lower(), again.stdout


def test_a_plugin_chooses_the_seed_through_the_hook(tmp_path):
    plugin = tmp_path / "seedplugin.py"
    plugin.write_text("def pytest_raftlab_test_seed(item):\n    return 31337\n")
    res = _pytest("--pyargs", "labtests", "-k", "test_initial_election_2a", "--sim",
                  "--raft-impl", str(TOYS / "two_leaders.py"), "-p", "seedplugin",
                  env=_clean_env(PYTHONPATH=str(tmp_path)), cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "seed 31337; rerun with:" in out
