"""pytest rewrites the asserts of test files only, not of raftlab's own modules.

pytest marks for assertion rewriting every package of a distribution that has a
``pytest11`` entry point: raftlab's four.  A rewritten module is parsed, rewritten
and compiled from source unless pytest could cache its own bytecode, which it
cannot under ``PYTHONDONTWRITEBYTECODE``, in a read-only install or a fresh
container: there every pytest process paid 0.15-0.2 s of CPU for the harness's 45
modules (session 8).  ``labtests`` takes its packages off that list when pytest
imports it (``labtests._library_not_rewritten``); test files stay rewritten.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import labtests

ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent("""
    import json, sys

    def pytest_collection_finish(session):
        loaders = {name: type(getattr(mod, "__loader__", None)).__name__
                   for name, mod in list(sys.modules.items())
                   if name.split(".")[0] in ("labrpc", "labtests", "raft", "tools")}
        print("PROBE " + json.dumps(loaders))
""")


def _loaders(tmp_path: Path, *args: str) -> dict[str, str]:
    """Each raftlab module's loader class after a collection started from the checkout."""
    (tmp_path / "rewrite_probe.py").write_text(PROBE)
    env = {**__import__("os").environ, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "rewrite_probe", "--collect-only", *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("PROBE "))
    return json.loads(line[len("PROBE "):])


def test_a_graded_collection_loads_the_harness_with_the_ordinary_importer(tmp_path: Path) -> None:
    loaders = _loaders(tmp_path, "--pyargs", "labtests", "-m", "part2a")
    rewritten = sorted(n for n, kind in loaders.items() if kind == "AssertionRewritingHook")
    # Only the package's __init__ (and what it imports before taking the marks off)
    # and the test files, which pytest rewrites by their names.
    assert set(rewritten) <= {"labtests", "labtests.shadowing", "labtests.test_2a",
                              "labtests.test_2b", "labtests.test_2c", "labtests.test_2d"}, rewritten
    assert "labtests.test_2a" in rewritten
    for name in ("labtests.plugin", "labtests.config", "labrpc.network", "raft.apply_channel",
                 "labtests.sim.pytest_plugin"):
        assert loaders[name] == "SourceFileLoader", (name, loaders[name])


def test_test_files_keep_their_assertion_rewriting(tmp_path: Path) -> None:
    """A failing ``assert`` in a test file and in a conftest still explains itself."""
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef pair():\n    value = [1, 2]\n"
        "    assert value == [1, 2]\n    return value\n")
    (tmp_path / "test_explained.py").write_text(
        "def test_lists(pair):\n    assert pair == [1, 3]\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(tmp_path / "test_explained.py")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "At index 1 diff: 2 != 3" in out.stdout, out.stdout


def test_the_marks_come_off_only_where_pytest_keeps_them(monkeypatch) -> None:
    """Only the four packages leave the marks; a pytest without them is left as it is."""
    AssertionRewritingHook = type("AssertionRewritingHook", (), {})  # noqa: N806 - pytest's name
    hook = AssertionRewritingHook()
    hook._must_rewrite = {"labrpc", "labtests", "raft", "tools", "xdist", "mine"}
    hook._marked_for_rewrite_cache = {"labtests.config": True}
    bare = AssertionRewritingHook()  # another pytest: no such attributes
    monkeypatch.setattr(sys, "meta_path", [types.SimpleNamespace(), bare, hook, *sys.meta_path])
    labtests._library_not_rewritten()
    assert hook._must_rewrite == {"xdist", "mine"}
    assert hook._marked_for_rewrite_cache == {}
    assert not vars(bare)
