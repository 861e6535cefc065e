"""Line preemption never loses its points in silence (labtests/sim/ticks.py, Matching).

A function whose file changed on disk after this process imported it cannot get
ticked code that is its own; left alone, it would run without preemption points
and the same seed would interleave otherwise than in a fresh process.  So
:func:`labtests.sim.ticks.match` names it (and why), a simulation with line
preemption refuses to start (:class:`~labtests.sim.ticks.StaleSource`), a graded
``--sim --race`` test errors in setup with the message (not a pass, not the
Raft's failure), and ``raftlab stress`` counts such runs apart ("refused").
What is left alone the same way in any process (two lambdas on one line, code
made by ``exec``, a decorator's wrapper from another file) is never stale.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("greenlet")

from labtests.sim import activate  # noqa: E402
from labtests.sim.ticks import (  # noqa: E402
    AMBIGUOUS,
    EDITED,
    FLAGS_SET,
    MOVED,
    UNREADABLE,
    StaleSource,
    match,
)

ROOT = Path(__file__).resolve().parent.parent

HELPER = '''\
import functools


def outside(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper
'''

WORKSPACE = '''\
"""Like a student's Raft file: every construct functions_of reaches."""
import dataclasses
import enum
import functools
import threading
import types
from collections import namedtuple

from ws_helper import outside

Pair = namedtuple("Pair", "a b")


class Role(enum.Enum):
    FOLLOWER = 1
    LEADER = 2

    def label(self):
        return self.name.lower()


@dataclasses.dataclass
class Entry:
    term: int
    command: object = None

    def key(self):
        return (self.term, self.command)


def logged(fn):
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        return fn(*args, **kwargs)
    return inner


def counter():
    n = 0

    def bump():
        nonlocal n
        n += 1
        return n
    return bump


BUMP = counter()
SQUARE = lambda x: x * x  # noqa: E731
INC, DEC = (lambda x: x + 1), (lambda x: x - 1)  # one line: ambiguous
exec(compile("def made_by_exec():\\n    return 7\\n", __file__, "exec"))
exec("def made_elsewhere():\\n    return 8\\n")


@types.coroutine  # sets CO_ITERABLE_COROUTINE on its code after compiling (asyncio does)
def pause():
    yield


class Raft:
    def __init__(self):
        self.mu = threading.Lock()
        self._term = 0

    @property
    def term(self):
        with self.mu:
            return self._term

    @term.setter
    def term(self, value):
        with self.mu:
            self._term = value

    @staticmethod
    def majority(n):
        return n // 2 + 1

    @classmethod
    def make(cls):
        return cls()

    @logged
    def start(self, command):
        return [i for i in range(command) if i % 2]

    @outside
    def kill(self):
        return "killed"
'''


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def workspace(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    (tmp_path / "ws_helper.py").write_text(HELPER)
    path = tmp_path / "ws_raft.py"
    path.write_text(WORKSPACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield path, _load(path, "ws_raft")
    finally:
        sys.modules.pop("ws_raft", None)
        sys.modules.pop("ws_helper", None)


def _rewrite(path: Path, text: str, version: int) -> None:
    """Another version of the file (the compile cache is per path, mtime and size)."""
    path.write_text(text)
    os.utime(path, ns=(version, version))


def test_an_unedited_workspace_has_nothing_stale_and_its_functions_run_ticked(workspace):
    path, mod = workspace
    matched = match([mod])
    assert matched.stale == []
    swapped = {fn.__code__.co_qualname for fn, _ in matched.swap}
    assert {"logged", "counter", "counter.<locals>.bump", "<lambda>", "Role.label",
            "Entry.key", "Raft.__init__", "Raft.term", "Raft.majority", "Raft.make",
            "Raft.start", "logged.<locals>.inner"} <= swapped
    # Left alone as in any process, and said: the two lambdas of one line, and a code
    # whose flags were set after compiling (CI met asyncio's: it read as "edited").
    assert sorted((n.qualname, n.why, n.stale) for n in matched.left) == [
        ("<lambda>", AMBIGUOUS, False), ("<lambda>", AMBIGUOUS, False),
        ("pause", FLAGS_SET, False)]
    # Not the file's text: exec'd code, the dataclass's and namedtuple's generated
    # methods, the wrapper from ws_helper.py -- not matched, not reported.
    names = swapped | {n.qualname for n in matched.left}
    assert not names & {"made_by_exec", "made_elsewhere", "__init__", "__repr__",
                        "outside.<locals>.wrapper"}
    with activate(1, preempt=1.0, preempt_scope=lambda f: f == str(path)) as sched:
        lines = sched.line_preemption
        assert lines.instrumented == len(matched.swap)
        raft = mod.Raft.make()
        raft.term = 3
        assert (raft.term, mod.Raft.majority(5), raft.start(6), raft.kill()) == (
            3, 3, [1, 3, 5], "killed")
        assert (mod.BUMP(), mod.BUMP(), mod.SQUARE(4), mod.INC(1)) == (1, 2, 16, 2)
        assert (mod.Role.LEADER.label(), mod.Entry(2, "x").key()) == ("leader", (2, "x"))
        assert lines.switches > 0
        assert [n.why for n in lines.not_swapped] == [AMBIGUOUS, AMBIGUOUS, FLAGS_SET]


def test_each_kind_of_change_on_disk_is_named_and_the_file_left_alone(workspace):
    path, mod = workspace
    own = {fn: fn.__code__ for fn, _ in match([mod]).swap}

    _rewrite(path, WORKSPACE.replace("return n // 2 + 1", "return n // 2"), 1)
    matched = match([mod])
    assert [(n.qualname, n.why) for n in matched.stale] == [("Raft.majority", EDITED)]
    assert matched.swap == []  # the other functions match, but the file is not half swapped
    line = WORKSPACE.splitlines().index("    @staticmethod") + 1  # its first decorator's
    assert f"ws_raft.py:{line} Raft.majority (edited since it was loaded)" in str(
        StaleSource(matched.stale))

    _rewrite(path, "# a line more: every function moves down\n" + WORKSPACE, 2)
    matched = match([mod])
    moved = {n.qualname for n in matched.stale if n.why == MOVED}
    assert {"Raft.start", "counter.<locals>.bump", "<lambda>"} <= moved
    # (INC and DEC now start on the line SQUARE's lambda left: "edited", stale all the same)
    assert {(n.qualname, n.why) for n in matched.stale if n.why != MOVED} == {
        ("<lambda>", EDITED)}
    assert all(n.stale for n in matched.left)
    assert not {"made_by_exec", "made_elsewhere"} & moved  # not from the file's text

    _rewrite(path, WORKSPACE + "def broken(:\n", 3)  # saved in the middle of an edit
    assert [(n.filename, n.why, n.stale) for n in match([mod]).left] == [
        (str(path), UNREADABLE, True)]
    path.unlink()
    assert [n.why for n in match([mod]).stale] == [UNREADABLE]

    _rewrite(path, WORKSPACE, 4)  # as loaded again: nothing stale, all swapped
    matched = match([mod])
    assert matched.stale == [] and {fn: fn.__code__ for fn, _ in matched.swap} == own


def test_preemption_refuses_to_start_on_a_stale_file_and_leaves_no_simulation(workspace):
    path, mod = workspace
    own = mod.Raft.start.__code__
    _rewrite(path, WORKSPACE.replace("if i % 2]", "if i % 3]"), 1)
    scope = lambda f: f == str(path)  # noqa: E731
    with pytest.raises(StaleSource, match=r"ws_raft\.py:\d+ Raft\.start \(edited"):
        with activate(1, preempt=0.5, preempt_scope=scope):
            raise AssertionError("the simulation must not start")
    assert mod.Raft.start.__code__ is own
    with activate(1, preempt=0.0, preempt_scope=scope) as sched:  # no preemption: no check
        assert sched.line_preemption.instrumented == 0
    _rewrite(path, WORKSPACE, 2)
    with activate(1, preempt=0.5, preempt_scope=scope) as sched:
        assert sched.line_preemption.instrumented > 0


def test_the_bundled_raft_has_nothing_stale() -> None:
    import raft
    from labtests.race.scope import Scope

    matched = match(Scope(raft, bundled=True).modules())
    assert matched.stale == [] and len(matched.swap) >= 30
    assert all(not n.stale for n in matched.left)


# -- end to end: a file saved while a run goes on ---------------------------------------

EDIT_PLUGIN = '''\
"""Saves the implementation's file (one line more on top) as the second test starts."""
import os
from pathlib import Path

import pytest

_seen = []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    _seen.append(item.nodeid)
    if len(_seen) == 2:
        target = Path(os.environ["RAFTLAB_TEST_EDIT"])
        target.write_text("# saved during the run\\n" + target.read_text())
    return (yield)
'''


def _raft_copy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The bundled Raft as a student package (as tests/mutants renders it, unedited), and
    the environment of a run that saves its raft.py as the second test starts."""
    sys.path.insert(0, str(ROOT / "tests" / "mutants"))
    try:
        from make_mutants import FILES, IMPORTS, REFERENCE
    finally:
        sys.path.remove(str(ROOT / "tests" / "mutants"))
    pkg = tmp_path / "myraft"
    pkg.mkdir()
    for fname in FILES:
        text = (Path(REFERENCE) / fname).read_text()
        for old, new in IMPORTS:
            text = text.replace(old, new)
        (pkg / fname).write_text(text)
    (pkg / "__init__.py").write_text("from .raft import Raft, make\n")
    (tmp_path / "edit_second.py").write_text(EDIT_PLUGIN)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, RAFTLAB_TEST_EDIT=str(pkg / "raft.py"))
    env.pop("RAFTLAB_IMPL", None)
    return pkg, env


def _raftlab(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_a_graded_sim_race_run_whose_raft_is_saved_meanwhile_errors_in_setup(tmp_path):
    pkg, env = _raft_copy(tmp_path)
    proc = _raftlab(["test", "2A", "--sim", "--race", "--impl", str(pkg), "--",
                     "-p", "edit_second"], env, tmp_path)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr  # neither a pass (0) nor inconclusive (6)
    assert "Test (2A): initial election ...\n  ... Passed" in out
    for name in ("test_re_election_2a", "test_many_elections_2a"):
        assert (f"{name} ...\n  ... REFUSED (in setup) -- the implementation's source changed "
                "on disk after this process loaded it") in out, out
        assert f"rerun with: raftlab test {name} --seed" in out
    assert "rerun once the files are final" in out
    assert "myraft/raft.py:" in out and "Raft.__init__ (no longer at this line" in out
    assert "1 passed, 0 failed, 2 refused" in out  # not run as asked: not the Raft's failure

    # pytest's own words: errors (in setup), not failures
    (pkg / "raft.py").write_text((pkg / "raft.py").read_text().split("\n", 1)[1])
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "labtests", "-q",
                           "-p", "no:cacheprovider", "-k", "2A", "--raft-impl", str(pkg),
                           "--sim", "--race", "-p", "edit_second"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "1 passed" in proc.stdout and "2 errors" in proc.stdout, (
        proc.stdout[-3000:])

    # Without line preemption there are no points to lose: the edit changes nothing.
    (pkg / "raft.py").write_text((pkg / "raft.py").read_text().split("\n", 1)[1])
    proc = _raftlab(["test", "2A", "--sim", "--impl", str(pkg), "--", "-p", "edit_second"],
                    env, tmp_path)
    assert proc.returncode == 0 and "3 passed, 0 failed" in proc.stdout, proc.stdout


def test_stress_counts_refused_runs_apart_not_as_passes_nor_failures(tmp_path):
    pkg, env = _raft_copy(tmp_path)
    out = tmp_path / "out"
    proc = _raftlab(["stress", "test_initial_election_2a", "-n", "4", "-p", "1", "--sim",
                     "--race", "--impl", str(pkg), "--no-live", "-o", str(out), "--",
                     "-p", "edit_second"], env, tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # runs not made, no failure
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in results] == ["passed", "refused", "refused", "refused"]
    refused = results[1]
    assert refused["message"].startswith("the implementation's source changed on disk")
    log = Path(refused["log"]).read_text()
    assert Path(refused["log"]).parent.name == "refused"
    assert "Raft.__init__ (no longer at this line: the file changed above it)" in log
    assert "0 of 1 failed" in proc.stdout
    assert "refused: 3 run(s) not made" in proc.stdout
    assert not list((out / "failures").glob("*.log"))
