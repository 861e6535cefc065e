"""``raftlab test`` from a regular (not editable) install: the lab's lines, no spurious warning.

The command imports ``labtests.options`` before it starts pytest, which makes pytest
warn that ``labtests`` "cannot be rewritten" when raftlab is installed from a wheel
(an editable install never shows it, so only a real install can catch it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("setup.cfg", "pyproject.toml", "README.md")
PACKAGES = ("labrpc", "raft", "labtests", "tools")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: building in the checkout would leave build/ in the shared tree.
    source = tmp_path_factory.mktemp("source")
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, source / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(target), str(source)],
        cwd=source, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PIP_NO_INPUT="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def test_installed_raftlab_test_runs_without_warnings(installed, tmp_path):
    code = "import sys; from tools.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        # --pytest-output: pytest's own lines name the file that ran and show any warning.
        [sys.executable, "-c", code, "test", "test_initial_election_2a", "--seed", "5",
         "--pytest-output"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(installed)))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"{installed.name}/labtests/test_2a.py" in out  # the installed copy ran
    assert "Test (2A): initial election ..." in out and "1 passed" in out
    assert "warning" not in out.lower(), out
