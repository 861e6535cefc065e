"""The grading rubric: parsing, validation against the graded tests, selection."""

from __future__ import annotations

import pytest

from tools.grade import rubric as gr
from tools.selection import catalog as suite_catalog


@pytest.fixture(scope="module")
def catalog() -> dict[str, list[str]]:
    """The graded tests per part, read from the installed suites (no pytest run)."""
    return {part.upper(): names for part, names in suite_catalog().items()}


def test_default_rubric_covers_all_28_tests_for_100_points(catalog):
    rubric = gr.resolve(gr.load(), catalog)
    assert [p.name for p in rubric.parts] == ["2A", "2B", "2C", "2D"]
    assert [len(p.tests) for p in rubric.parts] == [3, 10, 8, 7]
    assert rubric.max_points == 100
    assert rubric.runs >= 1 and rubric.per_run_timeout_s > 120
    # The part budgets add up to the lab's 600 s for a whole run of the suite.
    assert sum(p.budget_s for p in rubric.parts) == 600


def test_points_split_equally_when_no_tests_table(catalog):
    rubric = gr.resolve(gr.parse({"parts": {"2a": {"points": 9, "budget_s": 30}}}), catalog)
    assert rubric.parts[0].tests == {t: 3.0 for t in catalog["2A"]}


def test_unknown_test_fails_with_known_names(catalog):
    data = {"parts": {"2A": {"budget_s": 30, "tests": {"test_initial_elecion_2a": 5}}}}
    with pytest.raises(gr.RubricError) as info:
        gr.resolve(gr.parse(data), catalog)
    assert "unknown test 'test_initial_elecion_2a' in part 2A" in str(info.value)
    assert "test_initial_election_2a" in str(info.value)  # the known names are listed


def test_test_under_the_wrong_part_is_refused(catalog):
    data = {"parts": {"2A": {"budget_s": 30, "tests": {"test_backup_2b": 5}}}}
    with pytest.raises(gr.RubricError, match="belongs to part 2B"):
        gr.resolve(gr.parse(data), catalog)


@pytest.mark.parametrize("data, message", [
    ({"parts": {"2A": {"points": 5}}}, "budget_s"),
    ({"parts": {"2E": {"points": 5, "budget_s": 1}}}, "unknown part"),
    ({"parts": {"2A": {"budget_s": 1}}}, "give points"),
    ({"parts": {"2A": {"budget_s": 1, "points": 5, "tests": {"t": 4}}}}, "add up to 4"),
    ({"runs": 0, "parts": {"2A": {"budget_s": 1, "points": 1}}}, "runs"),
    ({"run": 3, "parts": {"2A": {"budget_s": 1, "points": 1}}}, "unknown key"),
    ({}, "at least one"),
])
def test_malformed_rubrics_are_refused(data, message):
    with pytest.raises(gr.RubricError, match=message):
        gr.parse(data)


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text("runs = [", encoding="utf-8")
    with pytest.raises(gr.RubricError, match="not valid TOML"):
        gr.load(bad)
    with pytest.raises(gr.RubricError, match="not found"):
        gr.load(tmp_path / "missing.toml")


def test_restrict_to_parts_and_tests(catalog):
    rubric = gr.restrict(gr.resolve(gr.load(), catalog), ["2A", "backup_2b"])
    assert [p.name for p in rubric.parts] == ["2A", "2B"]
    assert list(rubric.parts[1].tests) == ["test_backup_2b"]
    with pytest.raises(gr.RubricError, match="nope"):
        gr.restrict(gr.resolve(gr.load(), catalog), ["nope"])
