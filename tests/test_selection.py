"""The one selector rule: ``test``, ``stress`` and ``grade`` mean the same tests by the same words.

Adversarial cases: odd spellings, duplicates, reversed order, empty and near-miss
selectors (``2E``, ``test_``, ``part``), and selectors that are substrings of test
names (which the old stress rule accepted as ``-k`` terms and now are refused with
the valid choices, instead of silently running other tests).
"""

from __future__ import annotations

import subprocess
import sys
from argparse import Namespace

import pytest

from tools import selection
from tools.grade import rubric as gr
from tools.test_command import build_parser, command_args

EXPECTED_COUNTS = {"2A": 3, "2B": 10, "2C": 8, "2D": 7}


def names(tests: list[selection.GradedTest]) -> list[str]:
    return [t.name for t in tests]


def test_catalog_lists_the_28_graded_tests_per_part_in_file_order():
    cat = selection.catalog()
    assert list(cat) == list(selection.PARTS)
    assert {p: len(ts) for p, ts in cat.items()} == EXPECTED_COUNTS
    assert cat["2A"][0] == "test_initial_election_2a"  # file order, not alphabetical
    assert all(t.endswith(f"_{p.lower()}") for p, ts in cat.items() for t in ts)


@pytest.mark.parametrize("spelling", ["2A", "2a", "part2a", "PART2A", "Part2A", " 2a "])
def test_every_spelling_of_a_part_means_the_same_tests(spelling):
    assert names(selection.resolve([spelling])) == selection.catalog()["2A"]


def test_names_with_or_without_prefix_any_order_and_duplicates():
    chosen = selection.resolve(["test_backup_2b", "2A", "BACKUP_2B", "initial_election_2a"])
    # Lab order whatever order they were named in, and each test once.
    assert names(chosen) == selection.catalog()["2A"] + ["test_backup_2b"]
    assert len(selection.resolve(["all", "2A", "ALL"])) == 28
    assert len(selection.resolve([])) == 28
    assert selection.resolve([], default_all=False) == []


@pytest.mark.parametrize("bad", ["2E", "", "test_", "part", "backup", "election", "2A2B",
                                 "test_backup_2b::x"])
def test_unknown_selectors_get_one_error_naming_them_and_what_is_valid(bad):
    with pytest.raises(selection.SelectionError) as info:
        selection.resolve(["2A", bad])
    text = str(info.value)
    assert repr(bad) in text
    assert "valid: a part (2A, 2B, 2C, 2D" in text and "all" in text
    assert "raftlab test --list" in text


def test_several_unknown_selectors_are_all_named():
    with pytest.raises(selection.SelectionError) as info:
        selection.resolve(["nope", "2A", "2Z"])
    assert "'nope', '2Z'" in str(info.value)


def test_node_ids_point_at_the_installed_suite_files():
    (test,) = selection.resolve(["backup_2b"])
    path, _, name = test.node_id().partition("::")
    assert name == "test_backup_2b"
    assert path == str(selection.suite_dir() / "test_2b.py")
    assert selection.part_of_file(path) == "2B"
    assert selection.part_of_file("tests/test_stress.py") is None


def test_test_stress_and_grade_select_the_same_tests():
    words = ["2A", "backup_2b", "part2c"]
    expected = [t.node_id() for t in selection.resolve(words)]
    # raftlab test
    opts = build_parser().parse_args(words)
    test_args = command_args(opts, [])
    assert [a for a in test_args if "::" in a] == expected
    # raftlab stress
    assert [a for a in selection.pytest_selection(words) if "::" in a] == expected
    # raftlab grade --only
    rubric = gr.restrict(gr.resolve(gr.load(), selection.catalog()), list(words))
    graded = [t for part in rubric.parts for t in part.tests]
    assert graded == [e.rsplit("::", 1)[1] for e in expected]


def test_the_commands_refuse_the_same_unknown_selector():
    with pytest.raises(selection.SelectionError):
        command_args(Namespace(selectors=["backup"], keyword=None, marker=None, impl=None,
                               seed=None, sim=False, debug=False, timeout=None, workers=None,
                               isolate=False),
                     [])
    with pytest.raises(selection.SelectionError):
        selection.pytest_selection(["backup"])
    with pytest.raises(gr.RubricError, match="'backup'"):
        gr.restrict(gr.resolve(gr.load(), selection.catalog()), ["backup"])


def test_k_and_m_narrow_the_chosen_tests():
    args = selection.pytest_selection(["2A"], "not re_election", "part2a")
    assert args[:4] == ["-k", "not re_election", "-m", "part2a"]
    assert len(args) == 4 + 3


def test_finding_the_suites_imports_neither_labtests_nor_pytest():
    code = ("import sys, tools.selection as s; s.catalog(); s.resolve(['2A']); "
            "print(sorted(m for m in ('labtests', 'pytest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_raftlab_logs_does_not_import_pytest(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("000001 TEST -- hello\n", encoding="utf-8")
    code = ("import sys; from tools.cli import main; rc = main(['logs', '--no-color', "
            f"{str(log)!r}]); print('pytest' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False 0"
