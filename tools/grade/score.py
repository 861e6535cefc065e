"""Turn per-run results into points: pure functions, run in the grader's own process.

A test earns its rubric points only if every one of its planned runs passed (a run
that was not done -- budget exhausted, process killed -- counts as failed).  Each
failed run keeps a one-line *reason* written for a student ("hung: ...",
"crashed: ...", "memory limit exhausted: ...") next to the test's own message.

Two kinds of run are named apart, never folded silently into a pass or a fail:
an *inconclusive* run (the machine was overloaded in every attempt,
:mod:`labtests.overload`) does not pass -- its test earns no points -- and its
reason says it is the machine's fault and to regrade; a failure that matches a
*known artifact* of the lab's tests (:mod:`labtests.artifacts`) stays a failure
and its reason names the artifact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labtests.artifacts import ARTIFACT_KEY
from tools.grade.isolation import BUDGET_REASON
from tools.grade.rubric import Rubric
from tools.stress.backends.base import RunResult
from tools.stress.groups import FailureGroups

_LAB_FAILURE = "labtests.failures.RaftTestFailure: "


@dataclass
class RunGrade:
    run: int
    seed: int
    outcome: str
    duration: float
    reason: str | None = None
    message: str | None = None
    log: str | None = None       # path of the kept log, relative to the report folder
    rerun: str | None = None     # the command that reruns this run (labtests.rerun)
    bundle: str | None = None    # the kept failure bundle, relative to the report folder
    artifact: str | None = None  # the known artifact the failure matched (still a failure)
    attempts: int = 1            # > 1: rerun after inconclusive attempts

    @property
    def inconclusive(self) -> bool:
        return self.outcome == "inconclusive"

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass
class TestGrade:
    name: str
    part: str
    max_points: float
    runs: list[RunGrade] = field(default_factory=list)
    description: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.runs) and all(r.passed for r in self.runs)

    @property
    def points(self) -> float:
        return self.max_points if self.passed else 0.0

    @property
    def runs_passed(self) -> int:
        return sum(r.passed for r in self.runs)

    @property
    def duration(self) -> float:
        return sum(r.duration for r in self.runs)

    def failures(self) -> list[RunGrade]:
        return [r for r in self.runs if not r.passed]

    @property
    def inconclusive(self) -> int:
        """Runs still inconclusive after the reruns (the test earns no points)."""
        return sum(r.inconclusive for r in self.runs)

    @property
    def artifacts(self) -> int:
        return sum(r.artifact is not None and not r.passed for r in self.runs)


@dataclass
class PartGrade:
    name: str
    budget_s: float
    tests: list[TestGrade] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def points(self) -> float:
        return round(sum(t.points for t in self.tests), 4)

    @property
    def max_points(self) -> float:
        return round(sum(t.max_points for t in self.tests), 4)

    @property
    def tests_passed(self) -> int:
        return sum(t.passed for t in self.tests)


@dataclass
class SubmissionGrade:
    name: str
    source: str
    impl: str
    runs: int
    parts: list[PartGrade] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None      # set when the submission could not be graded at all
    elapsed_s: float = 0.0
    base_seed: int | None = None
    timing: str = "real"          # real | simulated: the clock the grade was measured on
    isolated: bool = False        # each Raft peer in its own process
    hardening: str = ""           # which fences the runs had (tools.grade.sandbox)
    run_user: int | None = None   # the dedicated uid the peers ran as, if any
    inconclusive_attempts: int = 0  # attempts that came out inconclusive (reruns included)
    rerun_notes: list[str] = field(default_factory=list)  # what the reruns did
    groups: FailureGroups = field(default_factory=FailureGroups)  # failures by signature

    @property
    def inconclusive_runs(self) -> int:
        """Runs still inconclusive after every rerun."""
        return sum(t.inconclusive for t in self.tests())

    @property
    def artifacts(self) -> int:
        return sum(t.artifacts for t in self.tests())

    def verdict_notes(self) -> list[str]:
        """What every report says about inconclusive runs and known artifacts."""
        notes = list(self.rerun_notes)
        if self.inconclusive_attempts:
            still = self.inconclusive_runs
            notes.append(
                f"inconclusive: {self.inconclusive_attempts} attempt(s) failed while the "
                "machine made timers late beyond the lab's tolerance (not the submission's "
                "fault) and were rerun with the same seed; "
                + (f"{still} run(s) stayed inconclusive: their tests earn no points in this "
                   "grade -- regrade on a quieter machine" if still
                   else "every rerun was conclusive"))
        if self.artifacts:
            notes.append(f"known artifacts: {self.artifacts} failed run(s) match a known "
                         "artifact of the lab's tests (a correct Raft can fail so; they stay "
                         "failures: docs/harness.md, Known artifacts)")
        return notes

    @property
    def mode(self) -> str:
        """``real time, isolated`` / ``simulated time, in-process``: said in every report."""
        return (f"{self.timing} time, "
                + ("isolated (each peer in its own process)" if self.isolated
                   else "in-process"))

    @property
    def score(self) -> float:
        return round(sum(p.points for p in self.parts), 4)

    @property
    def max_score(self) -> float:
        return round(sum(p.max_points for p in self.parts), 4)

    def tests(self) -> Iterable[TestGrade]:
        for part in self.parts:
            yield from part.tests


def reason_for(result: RunResult, per_run_timeout_s: float, memory_mb: int) -> str | None:
    """A short, student-readable reason for a failed run (None when it passed)."""
    if result.outcome == "passed":
        return None
    msg = (result.message or "").strip().removeprefix(_LAB_FAILURE)
    low = msg.lower()
    if result.outcome == "skipped":
        return "skipped (a graded test must run and pass)"
    if result.outcome == "inconclusive":
        return (f"{msg or 'inconclusive (machine overloaded)'} -- in every attempt: the "
                "machine's fault, not the submission's; this run does not pass: regrade on a "
                "quieter machine")
    artifact = (result.properties or {}).get(ARTIFACT_KEY)
    if artifact:
        return (f"known artifact of the lab's tests ({artifact}): {msg} (a correct Raft can "
                "fail so; the failure stands)")
    if msg.startswith(BUDGET_REASON) or "the grader killed" in low:
        return msg
    if "timeout" in low and "pytest-timeout" in low or low.startswith("failed: timeout"):
        return (f"hung: the run did not finish within the per-run limit of "
                f"{per_run_timeout_s:g} s (stopped by the watchdog; see the stack dump)")
    if "raftlab's memory bound ended" in low:  # resident memory (labtests.memory_bound)
        return "memory limit exhausted: " + msg.split("\n", 1)[0]
    if "memoryerror" in low or "cannot allocate memory" in low:
        return f"memory limit exhausted ({memory_mb} MiB of address space per process)"
    if "can't start new thread" in low:
        return (f"could not start a thread: too many threads or memory limit exhausted "
                f"({memory_mb} MiB of address space per process)")
    if "peer process" in low and ("exited with status" in low or "was killed by" in low):
        return "crashed: a peer process ended during the test: " + msg
    if "peer process" in low and "did not return within" in low:
        return "hung: " + msg  # a request to an isolated peer missed its deadline
    if "crashed" in low and "worker" in low:
        return "crashed: the test process died (e.g. a segfault, os._exit or the kernel's " \
               "OOM killer); " + msg
    if not msg:
        return f"{result.outcome} (no message)"
    return msg


def grade_part(rubric: Rubric, part: str, results: Mapping[str, Sequence[RunResult]],
               elapsed_s: float, logs: Mapping[tuple[str, int], str] | None = None,
               reruns: Mapping[tuple[str, int], str] | None = None,
               bundles: Mapping[tuple[str, int], str] | None = None,
               attempts: Mapping[int, int] | None = None) -> PartGrade:
    """Grade one part from each test's results (in run order).

    ``logs``, ``reruns`` and ``bundles`` map (test, job index) to a failed run's
    kept log, rerun command and kept bundle; ``attempts`` maps a job index to its
    number of attempts when it was rerun after inconclusive ones.
    """
    spec = next(p for p in rubric.parts if p.name == part)
    grade = PartGrade(part, spec.budget_s * rubric.runs, elapsed_s=elapsed_s)
    for test, max_points in spec.tests.items():
        tg = TestGrade(test, part, max_points)
        for run, res in enumerate(results.get(test, ())):
            tg.runs.append(RunGrade(
                run=run + 1, seed=res.seed, outcome=res.outcome,
                duration=round(res.duration, 3),
                reason=reason_for(res, rubric.per_run_timeout_s, rubric.memory_mb),
                message=res.message, log=(logs or {}).get((test, res.job)),
                rerun=(reruns or {}).get((test, res.job)),
                bundle=(bundles or {}).get((test, res.job)),
                artifact=(res.properties or {}).get(ARTIFACT_KEY) if res.failed else None,
                attempts=(attempts or {}).get(res.job, 1)))
            desc = res.properties.get("description") if res.properties else None
            tg.description = tg.description or desc
        grade.tests.append(tg)
    return grade


def summary_row(grade: SubmissionGrade, part_names: Sequence[str]) -> dict[str, Any]:
    """One CSV row (batch mode)."""
    row: dict[str, Any] = {
        "submission": grade.name,
        "status": "error" if grade.error else "graded",
        "score": _fmt(grade.score), "max_score": _fmt(grade.max_score),
        "timing": grade.timing, "isolated": "yes" if grade.isolated else "no",
    }
    by_name = {p.name: p for p in grade.parts}
    for name in part_names:
        part = by_name.get(name)
        row[name] = _fmt(part.points) if part else ""
        row[f"{name}_tests_passed"] = (f"{part.tests_passed}/{len(part.tests)}" if part
                                       else "")
    row["failed_tests"] = " ".join(t.name for t in grade.tests() if not t.passed)
    row["notes"] = " | ".join(([grade.error] if grade.error else []) + grade.notes
                              + grade.verdict_notes())
    return row


def _fmt(value: float) -> str:
    return f"{value:g}"
