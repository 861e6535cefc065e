"""Write a grade where people and tools read it: terminal table, JSON, JUnit, Gradescope, CSV.

Per submission (its report folder)::

    report.json     everything: rubric, per-test runs with seeds, reasons, messages
    results.json    Gradescope autograder format (tests: name, score, max_score, output)
    junit.xml       one testcase per graded test (failed if any run failed)
    summary.txt     the terminal table, without colour
    logs/           the full log of every failed or inconclusive run (captured output +
                    traceback)
    bundles/        failure bundles (timeline, events, debug log...) of failed runs, a
                    few per failure signature (tools.stress.groups); report.json links
                    each run to its bundle and lists the groups

In batch mode the batch folder also gets ``grades.csv`` (one row per submission).

Each file is written whole or not at all (a temporary file renamed over it), and
report.json last: a reader that finds report.json finds the rest beside it, and a
grader stopped or killed while writing never leaves a truncated file (grades.csv,
rewritten after every submission of a batch, was emptied first).
"""

from __future__ import annotations

import csv
import io
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tools.grade.rubric import Rubric
from tools.grade.score import SubmissionGrade, TestGrade, summary_row

SCHEMA = "raftlab-grade/1"


def test_output(test: TestGrade, runs: int) -> str:
    """What a student reads about one test: pass count, then each failed run's reason."""
    head = f"{test.runs_passed}/{runs} runs passed"
    if test.passed:
        return head + f"; all runs passed ({test.duration:.1f} s in total)."
    lines = [head + "; a test earns its points only if every run passes."]
    for run in test.failures():
        lines.append(f"run {run.run} (seed {run.seed}): {run.reason or run.outcome}")
        if run.message and run.message not in (run.reason or ""):
            lines.append(f"    {run.message}")
        if run.attempts > 1:
            lines.append(f"    (attempt {run.attempts}: the earlier ones were inconclusive)")
        if run.bundle:
            lines.append(f"    failure bundle (timeline, events, logs): {run.bundle}")
    return "\n".join(lines)


def to_json(grade: SubmissionGrade, rubric: Rubric) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "submission": grade.name, "source": grade.source, "implementation": grade.impl,
        "status": "error" if grade.error else "graded", "error": grade.error,
        "timing": grade.timing, "isolated": grade.isolated, "mode": grade.mode,
        "hardening": grade.hardening, "run_user": grade.run_user,
        "score": grade.score, "max_score": grade.max_score,
        "runs_per_test": grade.runs, "base_seed": grade.base_seed,
        "elapsed_s": round(grade.elapsed_s, 1),
        "notes": grade.notes + grade.verdict_notes(),
        "inconclusive": {"attempts": grade.inconclusive_attempts,
                         "still_inconclusive_runs": grade.inconclusive_runs,
                         "reruns": grade.rerun_notes},
        "known_artifacts": grade.artifacts,
        "failure_groups": [g.to_json() for g in grade.groups.ordered()],
        "rubric": rubric.to_json(),
        "parts": [{
            "name": part.name, "points": part.points, "max_points": part.max_points,
            "tests_passed": part.tests_passed, "tests": len(part.tests),
            "budget_s": part.budget_s, "elapsed_s": round(part.elapsed_s, 1),
            "tests_detail": [{
                "name": t.name, "description": t.description, "passed": t.passed,
                "points": t.points, "max_points": t.max_points,
                "runs_passed": t.runs_passed, "runs": len(t.runs),
                "runs_inconclusive": t.inconclusive, "runs_known_artifact": t.artifacts,
                "run_results": [{
                    "run": r.run, "seed": r.seed, "outcome": r.outcome,
                    "duration_s": r.duration, "reason": r.reason, "message": r.message,
                    "log": r.log, "rerun": r.rerun, "bundle": r.bundle,
                    "artifact": r.artifact, "attempts": r.attempts} for r in t.runs],
            } for t in part.tests],
        } for part in grade.parts],
    }


def gradescope(grade: SubmissionGrade) -> dict[str, Any]:
    """Gradescope's autograder ``results.json``."""
    tests = []
    for t in grade.tests():
        tests.append({
            "name": f"{t.part} {t.name}" + (f": {t.description}" if t.description else ""),
            "number": t.part, "score": t.points, "max_score": t.max_points,
            "output": test_output(t, grade.runs), "tags": [t.part],
            "visibility": "visible",
        })
    output = [f"raftlab grade: every graded test ran {grade.runs} time(s); a test earns its "
              f"points only if all runs pass.", f"Measured in {grade.mode}."]
    if grade.error:
        output.append(f"Could not grade this submission: {grade.error}")
    output += grade.notes + grade.verdict_notes()
    return {
        "score": grade.score,
        "execution_time": round(grade.elapsed_s),
        "output": "\n".join(output),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def junit(grade: SubmissionGrade) -> ET.ElementTree:
    tests = list(grade.tests())
    failures = sum(not t.passed for t in tests)
    suites = ET.Element("testsuites", name=f"raftlab grade {grade.name}")
    suite = ET.SubElement(suites, "testsuite", name=grade.name, tests=str(len(tests)),
                          failures=str(failures), errors="1" if grade.error else "0",
                          time=f"{grade.elapsed_s:.1f}")
    props = ET.SubElement(suite, "properties")
    for key, value in (("score", grade.score), ("max_score", grade.max_score),
                       ("runs_per_test", grade.runs), ("implementation", grade.impl),
                       ("timing", grade.timing), ("isolated", grade.isolated),
                       ("hardening", grade.hardening)):
        ET.SubElement(props, "property", name=key, value=str(value))
    if grade.error:
        case = ET.SubElement(suite, "testcase", classname="raftlab.grade", name="submission")
        ET.SubElement(case, "error", message=grade.error[:500]).text = grade.error
    for t in tests:
        case = ET.SubElement(suite, "testcase", classname=f"labtests.part{t.part.lower()}",
                             name=t.name, time=f"{t.duration:.3f}")
        cprops = ET.SubElement(case, "properties")
        for key, value in (("points", t.points), ("max_points", t.max_points),
                           ("runs_passed", f"{t.runs_passed}/{grade.runs}")):
            ET.SubElement(cprops, "property", name=key, value=str(value))
        if not t.passed:
            first = t.failures()[0] if t.failures() else None
            message = (first.reason or first.outcome) if first else "not run"
            ET.SubElement(case, "failure", message=message[:500]).text = \
                test_output(t, grade.runs)
    ET.indent(suites)
    return ET.ElementTree(suites)


def table(grade: SubmissionGrade) -> Table:
    where = "isolated" if grade.isolated else "in-process"
    title = (f"raftlab grade: {grade.name} ({grade.runs} run(s) per test, {grade.timing} time, "
             f"{where})")
    tbl = Table(title=title, title_justify="left")
    tbl.add_column("Part", no_wrap=True)
    tbl.add_column("Tests passed", justify="right", no_wrap=True)
    tbl.add_column("Points", justify="right", no_wrap=True)
    tbl.add_column("Time s", justify="right", no_wrap=True)
    tbl.add_column("Failed tests (first reason)")
    for part in grade.parts:
        failed = [t for t in part.tests if not t.passed]
        detail = "; ".join(
            f"{t.name}: {(t.failures()[0].reason or '') if t.failures() else 'not run'}"[:160]
            for t in failed)
        style = "green" if not failed else "red"
        tbl.add_row(part.name, f"[{style}]{part.tests_passed}/{len(part.tests)}[/{style}]",
                    f"{part.points:g}/{part.max_points:g}", f"{part.elapsed_s:.0f}", detail)
    tbl.add_row("[bold]total", "", f"[bold]{grade.score:g}/{grade.max_score:g}",
                f"{grade.elapsed_s:.0f}", grade.error or "")
    return tbl


REPORT_FILES = ("results.json", "junit.xml", "summary.txt", "report.json")  # written in order


def write_reports(grade: SubmissionGrade, rubric: Rubric, folder: Path) -> None:
    """Write results.json, junit.xml, summary.txt and (last) report.json into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    junit_xml = io.BytesIO()
    junit(grade).write(junit_xml, encoding="utf-8", xml_declaration=True)
    contents = {
        "results.json": json.dumps(gradescope(grade), indent=2) + "\n",
        "junit.xml": junit_xml.getvalue(),
        "summary.txt": summary_text(grade),
        "report.json": json.dumps(to_json(grade, rubric), indent=2) + "\n",
    }
    for name in REPORT_FILES:
        write_whole(folder / name, contents[name])


def remove_reports(folder: Path) -> None:
    """Remove the report files of an earlier grading from ``folder``.

    Why: a grading stopped before its reports are written must not leave an earlier
    one's report.json / results.json claiming a grade that this run did not give.
    """
    for name in REPORT_FILES:
        (folder / name).unlink(missing_ok=True)


def summary_text(grade: SubmissionGrade) -> str:
    """summary.txt: the terminal table without colour, the mode, fences and notes."""
    out = io.StringIO()
    console = Console(file=out, width=140, no_color=True, color_system=None)
    console.print(table(grade))
    console.print(f"measured in {grade.mode}", markup=False, highlight=False)
    if grade.hardening:
        console.print(f"fences: {grade.hardening}", markup=False, highlight=False)
    for note in grade.notes + grade.verdict_notes():
        console.print(f"note: {note}", markup=False, highlight=False)
    for line in grade.groups.summary_lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return out.getvalue()


def write_csv(grades: Sequence[SubmissionGrade], part_names: Sequence[str], path: Path) -> None:
    rows = [summary_row(g, part_names) for g in grades]
    fields = ["submission", "status", "score", "max_score", "timing", "isolated"]
    for name in part_names:
        fields += [name, f"{name}_tests_passed"]
    fields += ["failed_tests", "notes"]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_whole(path, out.getvalue())


def write_whole(path: Path, data: str | bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, renamed over it.

    Interrupted or failed midway, the previous file (if any) is left as it was and the
    temporary file removed.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(data, str):
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(data)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def batch_table(grades: Sequence[SubmissionGrade], part_names: Sequence[str]) -> Table:
    tbl = Table(title="raftlab grade: batch", title_justify="left")
    tbl.add_column("Submission", no_wrap=True)
    for name in part_names:
        tbl.add_column(name, justify="right", no_wrap=True)
    tbl.add_column("Score", justify="right", no_wrap=True)
    tbl.add_column("Notes")
    for g in grades:
        by_name = {p.name: p for p in g.parts}
        cells = [f"{by_name[n].points:g}" if n in by_name else "-" for n in part_names]
        tbl.add_row(g.name, *cells, f"{g.score:g}/{g.max_score:g}",
                    (g.error or "")[:120])
    return tbl
