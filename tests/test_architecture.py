"""The import contracts in ``.importlinter`` hold, and they would catch a violation.

``lint-imports`` runs in ``.ci/run`` too; this test adds the proof that the contracts
are not vacuous: on a copy of the packages with one upward import added, and with one
import cycle added, ``lint-imports`` fails and names the broken contract.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("labrpc", "raft", "labtests", "tools")
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run(
        [LINT_IMPORTS, str(tree / ".importlinter"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120,
    )


def _copy_tree(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", dest / ".importlinter")
    return dest


@pytest.fixture(scope="module")
def lint_available() -> None:
    if not os.path.exists(LINT_IMPORTS):
        pytest.fail("lint-imports is not installed: pip install -e '.[test]' brings import-linter")


def test_contracts_hold_on_the_repository(lint_available: None, tmp_path: Path) -> None:
    result = _lint(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", result.stdout), result.stdout


def test_an_upward_import_breaks_the_layers_contract(lint_available: None, tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    with open(tree / "labrpc" / "codec.py", "a", encoding="utf-8") as f:
        f.write("\nimport tools.cli  # noqa: E402,F401 - deliberate upward import\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "Layers" in result.stdout and "BROKEN" in result.stdout
    assert "labrpc.codec -> tools.cli" in result.stdout


def test_an_import_cycle_breaks_the_acyclic_contract(lint_available: None, tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "labrpc" / "cycle_a.py").write_text("import labrpc.cycle_b  # noqa: F401\n")
    (tree / "labrpc" / "cycle_b.py").write_text("import labrpc.cycle_a  # noqa: F401\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "No import cycles" in result.stdout and "BROKEN" in result.stdout
