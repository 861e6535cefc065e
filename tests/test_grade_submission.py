"""What counts as a submission, and the staged copy that cannot shadow the framework."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.grade.submission import SubmissionError, discover_batch, resolve, stage


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_folder_with_raft_py_is_a_module_with_its_helpers(tmp_path):
    src = tmp_path / "alice"
    _write(src / "raft.py", "import helper\n")
    _write(src / "helper.py")
    _write(src / "utils" / "__init__.py")
    _write(src / "conftest.py", "raise RuntimeError\n")
    _write(src / "labrpc" / "__init__.py")
    _write(src / "labtests" / "__init__.py")
    sub = stage(resolve(str(src), "alice"), tmp_path / "staged")
    assert sub.kind == "module" and sub.name == "alice"
    assert sub.impl == str(tmp_path / "staged" / "raft.py")
    staged = sorted(p.name for p in (tmp_path / "staged").iterdir())
    assert staged == ["helper.py", "raft.py", "utils"]
    assert any("labrpc/" in n and "labtests/" in n and "conftest.py" in n for n in sub.notes)


def test_folder_with_one_package(tmp_path):
    src = tmp_path / "bob"
    _write(src / "myraft" / "__init__.py", "def make(*a): pass\n")
    _write(src / "myraft" / "conftest.py")
    _write(src / "labrpc" / "__init__.py")
    sub = stage(resolve(str(src)), tmp_path / "staged")
    assert sub.kind == "package" and sub.impl == str(tmp_path / "staged" / "myraft")
    assert not (tmp_path / "staged" / "myraft" / "conftest.py").exists()
    assert any("labrpc" in n for n in sub.notes)


def test_package_folder_and_py_file_and_module_name(tmp_path):
    _write(tmp_path / "pkg" / "__init__.py")
    assert resolve(str(tmp_path / "pkg")).kind == "package"
    _write(tmp_path / "x" / "mine.py")
    assert resolve(str(tmp_path / "x" / "mine.py")).kind == "module"
    installed = resolve("raft")
    assert installed.kind == "installed" and installed.impl == "raft"


def test_neither_rule_gives_a_clear_error(tmp_path):
    _write(tmp_path / "carol" / "notes.txt")
    with pytest.raises(SubmissionError, match="holds raft.py .* Found: notes.txt"):
        resolve(str(tmp_path / "carol"))
    _write(tmp_path / "dan" / "a" / "__init__.py")
    _write(tmp_path / "dan" / "b" / "__init__.py")
    with pytest.raises(SubmissionError, match="holds 2 packages"):
        resolve(str(tmp_path / "dan"))
    with pytest.raises(SubmissionError, match="no such file"):
        resolve(str(tmp_path / "missing"))


def test_a_framework_package_cannot_be_a_submission(tmp_path):
    _write(tmp_path / "labtests" / "__init__.py")
    with pytest.raises(SubmissionError, match="part of the raftlab framework"):
        resolve(str(tmp_path / "labtests"))


def test_batch_discovery(tmp_path):
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
    _write(tmp_path / "stray.py")
    subs, notes = discover_batch(tmp_path)
    assert [n for n, _ in subs] == ["a", "b"]
    assert notes and "stray.py" in notes[0]
    with pytest.raises(SubmissionError, match="no submission subfolders"):
        discover_batch(tmp_path / "a")
