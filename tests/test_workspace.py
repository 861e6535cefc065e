"""A student's workspace: ``raftlab init``, the project config, and a package called ``raft``.

What a hostile or careless workspace does: a folder named ``raft`` (or ``labrpc``)
first on ``sys.path`` whose import explodes, a ``pyproject.toml`` with a typo or a
missing folder, an ``init`` over existing files, a student package importing its own
modules as ``raft.x``.  Each gets a precise verdict (the framework still runs, or an
error naming the file and the key), never a silent test of the wrong code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labtests.impl_loader import load
from labtests.options import (
    HarnessOptions,
    OptionError,
    find_project_config,
    from_env,
    from_pytest_config,
    looks_like_path,
)
from labtests.rerun import rerun_command
from tools.init.command import InitError, create, main, plan

BIN = os.path.dirname(sys.executable)
LAB_MESSAGES = ("expected one leader, got none", "failed to reach agreement")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a student's shell: no harness variables, this venv first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, timeout: float = 300,
        **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=clean_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def hostile_package(folder: Path, name: str) -> Path:
    """A package ``name`` that fails loudly if anything imports it."""
    pkg = folder / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"raise RuntimeError('the shadowing {name} was imported')\n")
    return pkg


# --- raftlab init --------------------------------------------------------------------

def test_init_writes_a_workspace_whose_config_names_the_package(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert main([str(ws)]) == 0
    names = sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_file())
    assert names == [".gitignore", "README.md", "pyproject.toml", "raft/__init__.py",
                     "raft/raft.py"]
    project = find_project_config(ws / "raft")  # found from a subfolder too
    assert project is not None and project.path == ws / "pyproject.toml"
    assert project.impl == str(ws / "raft")
    skeleton = (ws / "raft" / "raft.py").read_text()
    for part in ("2A", "2B", "2C", "2D"):
        assert f"Your code here ({part}" in skeleton
    assert "Figure 2" in skeleton


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    ws = tmp_path / "ws"
    (ws / "raft").mkdir(parents=True)
    (ws / "raft" / "raft.py").write_text("my work\n")
    (ws / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert main([str(ws)]) == 1
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "raft.py" in err and "pyproject.toml" in err
    assert "[tool.raftlab]" in err  # says how to use the existing project instead
    assert (ws / "raft" / "raft.py").read_text() == "my work\n"
    assert sorted(p.name for p in ws.rglob("*")) == ["pyproject.toml", "raft", "raft.py"]


def test_init_in_an_unrelated_existing_folder_and_another_package_name(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me\n")
    written = create(tmp_path, package="myraft")
    assert tmp_path / "myraft" / "raft.py" in written
    assert 'impl = "myraft"' in (tmp_path / "pyproject.toml").read_text()
    assert (tmp_path / "notes.txt").read_text() == "keep me\n"
    impl = load(find_project_config(tmp_path).impl)  # type: ignore[union-attr]
    assert impl.error is None and not impl.is_bundled


@pytest.mark.parametrize("name", ["labtests", "my-raft", "class", ""])
def test_init_refuses_unusable_package_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InitError, match="--package"):
        plan(tmp_path, name)


def test_the_skeleton_fails_every_graded_test_with_the_labs_messages(tmp_path: Path) -> None:
    """Not with an import error, a missing method or a handler error: the API is whole."""
    main([str(tmp_path / "ws")])
    junit = tmp_path / "junit.xml"
    res = run(["raftlab", "test", "--sim", "--", f"--junitxml={junit}"], tmp_path / "ws")
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    cases = ET.parse(junit).getroot().iter("testcase")
    verdicts = {}
    for case in cases:
        failure = case.find("failure")
        assert failure is not None, f"{case.get('name')} did not fail"
        verdicts[case.get("name")] = failure.get("message", "")
    assert len(verdicts) == 28
    for name, message in verdicts.items():
        assert message.startswith("labtests.failures.RaftTestFailure: "), (name, message)
        assert any(m in message for m in LAB_MESSAGES), (name, message)
    assert "Raft implementation '" + str(tmp_path / "ws" / "raft") + "'" in res.stdout


# --- the project config ------------------------------------------------------------------

def write_project(folder: Path, table: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyproject.toml"
    path.write_text(table)
    return path


def test_project_config_precedence_command_line_env_project_default(tmp_path: Path) -> None:
    main([str(tmp_path)])
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    ws_impl = str(tmp_path / "raft")
    assert from_env({}, cwd=sub).impl == ws_impl
    assert "pyproject.toml [tool.raftlab] impl" in (from_env({}, cwd=sub).impl_origin or "")
    assert from_env({"RAFTLAB_IMPL": "env.py"}, cwd=sub).impl == "env.py"

    class Cfg:
        def __init__(self, **values: object) -> None:
            self.values = values

        def getoption(self, name: str, default: object = None) -> object:
            return self.values.get(name, default)

    assert from_pytest_config(Cfg(raft_impl="cli.py"), {"RAFTLAB_IMPL": "e.py"},
                              cwd=sub).impl == "cli.py"
    assert from_pytest_config(Cfg(), {}, cwd=sub).impl == ws_impl
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    assert from_env({}, cwd=outside) == HarnessOptions()  # the bundled Raft


def test_a_pyproject_without_the_table_is_passed_over(tmp_path: Path) -> None:
    main([str(tmp_path)])
    inner = write_project(tmp_path / "inner", "[project]\nname = 'x'\n").parent
    assert from_env({}, cwd=inner).impl == str(tmp_path / "raft")
    # Somebody else's broken pyproject.toml must not stop a run either.
    write_project(inner, "[project\nname = \n")
    assert from_env({}, cwd=inner).impl == str(tmp_path / "raft")


@pytest.mark.parametrize("table,words", [
    ('[tool.raftlab]\nimp = "raft"\n', ["unknown key(s) imp", "known: impl"]),
    ('[tool.raftlab]\nimpl = "nowhere"\n', ["impl = 'nowhere'", "no such file or folder"]),
    ('[tool.raftlab]\nimpl = 3\n', ["impl must be a path"]),
    ('[tool.raftlab]\nimpl = "notpkg"\n', ["not a package", "__init__.py"]),
    ('[tool]\nraftlab = 1\n', ["tool.raftlab must be a table"]),
    ('[tool.raftlab]\nimpl = "raft\n', ["not valid TOML"]),
])
def test_a_mistake_in_the_project_config_names_the_file_and_the_key(
        tmp_path: Path, table: str, words: list[str]) -> None:
    (tmp_path / "notpkg").mkdir()
    path = write_project(tmp_path, table)
    with pytest.raises(OptionError) as err:
        from_env({}, cwd=tmp_path)
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)
    # ...and stops a pytest run with a usage error, before any test runs.
    res = run([sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k",
               "initial_election", "-p", "no:cacheprovider"], tmp_path, timeout=120)
    assert res.returncode == 4, res.stdout + res.stderr
    assert str(path) in res.stderr


# --- a bare name is a module, a path is a path -----------------------------------------------

@pytest.mark.parametrize("spec,is_path", [
    ("raft", False), ("mypkg.myraft", False), ("./raft", True), ("raft/", True),
    ("myraft.py", True), ("work/raft", True), (".", True),
])
def test_how_an_implementation_spec_is_read(spec: str, is_path: bool) -> None:
    assert looks_like_path(spec) is is_path


def test_raft_next_to_a_students_raft_folder_is_still_the_bundled_raft(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    main([str(tmp_path)])
    monkeypatch.chdir(tmp_path)
    assert load("raft").is_bundled
    student = load("./raft")
    assert student.error is None and not student.is_bundled
    assert student.module.__name__.startswith("raftlab_impl_raft")  # type: ignore[union-attr]
    # Another student's package called raft, in the same process, is not mistaken for it.
    other = tmp_path / "other"
    create(other)
    second = load(str(other / "raft"))
    assert second.error is None and second.module is not student.module
    assert second.module.__file__ == str(other / "raft" / "__init__.py")  # type: ignore
    # The rerun of the bundled Raft keeps naming the module, not the folder here.
    assert rerun_command("t", 1, HarnessOptions(impl="raft")).endswith("--impl raft")
    assert rerun_command("t", 1, HarnessOptions(impl="./raft")).endswith(
        f"--impl {tmp_path / 'raft'}")


def test_a_module_name_that_is_a_folder_here_says_to_write_it_as_a_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    create(tmp_path, package="studentraft")
    monkeypatch.chdir(tmp_path)
    impl = load("studentraft")
    assert impl.error is not None
    assert "give it as a path: ./studentraft" in impl.error


def test_a_package_called_raft_importing_its_own_modules_absolutely_gets_a_hint(
        tmp_path: Path) -> None:
    main([str(tmp_path)])
    (tmp_path / "raft" / "log.py").write_text("class Log:\n    pass\n")
    init = tmp_path / "raft" / "__init__.py"
    init.write_text("from raft.log import Log\n" + init.read_text())
    impl = load(str(tmp_path / "raft"))
    assert impl.error is not None
    assert "import your own modules relatively" in impl.error
    # A failed load leaves nothing of it behind in sys.modules.
    assert not [m for m in list(sys.modules.values())
                if str(tmp_path) in (getattr(m, "__file__", None) or "")]


# --- nothing on sys.path shadows the framework ----------------------------------------------

def test_python_m_pytest_from_a_folder_with_hostile_raft_and_labrpc(tmp_path: Path) -> None:
    """``python -m pytest`` puts the current folder first on sys.path."""
    hostile_package(tmp_path, "raft")
    hostile_package(tmp_path, "labrpc")
    res = run([sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k",
               "test_initial_election_2a", "--sim", "-p", "no:cacheprovider"], tmp_path,
              timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Raft implementation 'raft'" in res.stdout  # the bundled one, which passes


def test_a_shadowing_raft_on_pythonpath_does_not_reach_the_harness(tmp_path: Path) -> None:
    hostile_package(tmp_path / "elsewhere", "raft")
    res = run(["raftlab", "test", "test_initial_election_2a", "--sim"], tmp_path,
              PYTHONPATH=str(tmp_path / "elsewhere"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_a_raft_imported_from_elsewhere_before_the_harness_is_refused_by_name(
        tmp_path: Path) -> None:
    (tmp_path / "raft").mkdir()
    (tmp_path / "raft" / "__init__.py").write_text("")
    code = "import raft, labtests"
    res = run([sys.executable, "-c", code], tmp_path, timeout=60)
    assert res.returncode == 1
    assert f"was imported from {tmp_path / 'raft'} before raftlab's harness" in res.stderr
    assert "shadowed it" in res.stderr


def test_raftlab_explore_in_a_workspace_explores_the_students_code(tmp_path: Path) -> None:
    main([str(tmp_path / "ws")])
    res = run(["raftlab", "explore", "-n", "1", "-p", "1", "--no-shrink", "-o", "ex"],
              tmp_path / "ws", timeout=300)
    flat = " ".join(res.stdout.split())  # the console wraps long lines
    assert f"against {tmp_path / 'ws' / 'raft'}" in flat, res.stdout + res.stderr
    assert res.returncode == 1  # the skeleton elects nobody: some monitor must object


@pytest.mark.parametrize("pytest_cmd", [["pytest"], [sys.executable, "-m", "pytest"]])
def test_plain_pytest_in_a_subfolder_of_the_workspace_tests_the_students_code(
        tmp_path: Path, pytest_cmd: list[str]) -> None:
    """Even from inside ``ws/raft``, where ``python -m pytest`` puts ``raft.py`` on sys.path."""
    main([str(tmp_path / "ws")])
    res = run([*pytest_cmd, "--pyargs", "labtests", "-k", "test_initial_election_2a", "--sim",
               "-p", "no:cacheprovider"], tmp_path / "ws" / "raft", timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert f"Raft implementation '{tmp_path / 'ws' / 'raft'}'" in out
    assert "RaftTestFailure: expected one leader, got none" in out
