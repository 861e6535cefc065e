"""What the parent knows of a run from the child's events: which tests ran, how each
ended, which one was running when the child ended, which never started."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labtests.overload import inconclusive_text
from labtests.verdicts import Props, refused


@dataclass
class TestState:
    nodeid: str
    started: bool = False
    done: bool = False  # its last report arrived (teardown, or xdist's crash report)
    seed: int | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # phase -> outcome
    props: Props = field(default_factory=lambda: Props([]))

    @property
    def verdict(self) -> str:
        """passed, failed, inconclusive, refused, skipped, or "" while unknown."""
        failed = [when for when, outcome in self.outcomes.items() if outcome == "failed"]
        if failed:
            if refused(dict(self.props)):
                return "refused"  # not run as asked (labtests.verdicts.REFUSED): no verdict
            if failed == ["call"] and inconclusive_text(dict(self.props)):
                return "inconclusive"
            return "failed"
        if "skipped" in self.outcomes.values():
            return "skipped"
        if self.outcomes.get("call") == "passed":
            return "passed"
        return ""


class RunState:
    """Folds the child's events, in order."""

    def __init__(self) -> None:
        self.tests: dict[str, TestState] = {}
        self.collected: list[str] | None = None
        self.header: dict[str, Any] | None = None
        self.exitstatus: int | None = None  # from the finish event: the session ended
        self.collect_errors = 0

    def test(self, nodeid: str) -> TestState:
        if nodeid not in self.tests:
            self.tests[nodeid] = TestState(nodeid)
        return self.tests[nodeid]

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "header":
            self.header = event
        elif kind == "collected":
            self.collected = list(event["tests"])
        elif kind == "collecterror":
            self.collect_errors += 1
        elif kind == "start":
            self.test(event["nodeid"]).started = True
        elif kind == "seed":
            self.test(event["nodeid"]).seed = int(event["seed"])
        elif kind == "report":
            t = self.test(event["nodeid"])
            t.started = True
            t.outcomes[event["when"]] = event["outcome"]
            t.props = Props([*t.props.pairs, *(tuple(p) for p in event["props"])])
            if event["when"] in ("teardown", "???"):
                t.done = True
        elif kind == "finish":
            self.exitstatus = int(event["exitstatus"])

    def running(self) -> list[TestState]:
        """Tests that started and had not ended (several with xdist)."""
        return [t for t in self.tests.values() if t.started and not t.done]

    def not_run(self) -> list[str]:
        """Collected tests that never started."""
        started = {nodeid for nodeid, t in self.tests.items() if t.started}
        return [n for n in (self.collected or []) if n not in started]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tests.values():
            verdict = t.verdict
            if verdict:
                counts[verdict] = counts.get(verdict, 0) + 1
        return counts
