"""The docs say what the code does: stress's help and README text, the README's module map.

Written after the local stress backend became forked warm workers while ``--help``
and the README still said pytest-xdist, and the README's Architecture block had
fallen behind the packages (signatures, groups, bundles, timeline/, ...): every
module and subpackage of labrpc, raft, labtests and tools must now be named there,
so a new module without a line fails here.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from labtests.overload import EXIT_INCONCLUSIVE
from tools.stress import command as stress
from tools.termination import Terminated, exit_status

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PACKAGES = ("labrpc", "raft", "labtests", "tools")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def _architecture_block() -> str:
    text = _section("Architecture")
    return text[text.index("```text"):text.index("```\n", text.index("```text") + 7)]


def _modules() -> list[Path]:
    """Every module and subpackage below the four packages (folders with __init__.py)."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            if "__pycache__" in path.parts or not (path.parent / "__init__.py").exists():
                continue
            if path.is_dir() and (path / "__init__.py").exists():
                found.append(path)
            elif path.suffix == ".py" and path.stem not in ("__init__", "__main__"):
                found.append(path)
    return found


def test_the_architecture_block_names_every_module_and_subpackage():
    block = _architecture_block()
    missing = []
    for path in _modules():
        name = path.stem
        if re.fullmatch(r"test_2[a-d]", name):
            name = "test_2a..2d"
        if not re.search(rf"(?<![\w.]){re.escape(name)}", block):
            missing.append(str(path.relative_to(REPO)))
    assert not missing, f"not in README.md's Architecture block: {missing}"


def test_the_architecture_block_names_what_the_benchmarks_share():
    assert "benchcommon.py" in _architecture_block()
    assert (REPO / "benchmarks" / "benchcommon.py").exists()


def test_stress_help_says_forked_workers_and_the_real_exit_statuses():
    text = stress.build_parser().format_help()
    flat = " ".join(text.split())
    assert "(pytest-xdist)" not in flat and "local (pytest-xdist" not in flat
    assert "forked" in flat and "RAFTLAB_STRESS_XDIST=1" in flat
    assert f"{stress.EXIT_INCONCLUSIVE} no failure but runs still inconclusive" in flat
    assert f"{stress.EXIT_FAILED} a run failed" in flat and f"{stress.EXIT_BACKEND} backend" in flat
    for number, words in ((exit_status(KeyboardInterrupt()), "Ctrl-C"),
                          (exit_status(Terminated(signal.SIGTERM)), "SIGTERM"),
                          (exit_status(Terminated(signal.SIGHUP)), "SIGHUP")):
        assert f"{number} {words}" in flat


@pytest.mark.parametrize("section", ["Stress runs", "Dependencies, and why"])
def test_the_readme_does_not_call_xdist_the_stress_backend(section):
    text = " ".join(_section(section).split())
    assert "Runs go through pytest-xdist" not in text
    assert "`raftlab test -n`, `raftlab stress`" not in text
    assert "RAFTLAB_STRESS_XDIST=1" in text


def test_the_stress_section_states_the_exit_statuses_the_code_returns():
    text = " ".join(_section("Stress runs").split())
    assert EXIT_INCONCLUSIVE == stress.EXIT_INCONCLUSIVE == 6
    assert (f"exit status {EXIT_INCONCLUSIVE} when no run failed but some are still "
            "inconclusive after the reruns") in text
    sigs = (exit_status(KeyboardInterrupt()), exit_status(Terminated(signal.SIGTERM)),
            exit_status(Terminated(signal.SIGHUP)))
    assert "Ctrl-C, SIGTERM and SIGHUP stop the runs" in text
    assert "(exit status {}, {}, {})".format(*sigs) in text
    assert f"The exit status is {stress.EXIT_FAILED} if any run failed" in text
