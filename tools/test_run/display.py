"""What ``raftlab test`` prints: the lab's lines, each failure's reason, seed, rerun
command and details, a crash's verdict, and a one-line summary.

By default pytest's own output (progress dots, per-file lines, its summary)
is kept out of sight: the lines come from the child's events.  With ``-v``,
``-s`` (or any verbosity or capture option after ``--``) the child's own
output is shown instead, and this module only adds what pytest cannot say:
the verdict of a test the process died in, and the final summary.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from labtests.last_bound import describe as describe_last_bound
from labtests.options import HarnessOptions
from labtests.output import bound_text
from labtests.overload import DETAIL_KEY, LAG_BOUND_MS
from labtests.verdicts import (
    RERUN_SECTION,
    Props,
    exit_description,
    short_name,
    verdict_lines,
)
from tools.test_run.state import RunState, TestState

_COLOURS = {"red": "\033[31m", "green": "\033[32m", "yellow": "\033[33m"}
_RESET = "\033[0m"


class Display:
    """Prints a run's lines as its events arrive (see the module docstring)."""

    def __init__(self, options: HarnessOptions, passthrough: bool,
                 out: IO[str] | None = None, colour: bool | None = None) -> None:
        self.options = options
        self.passthrough = passthrough
        self.out = out if out is not None else sys.stdout
        self.colour = colour if colour is not None else self.out.isatty()

    def line(self, text: str = "", colour: str = "") -> None:
        if colour and self.colour:
            text = f"{_COLOURS[colour]}{text}{_RESET}"
        print(text, file=self.out, flush=True)

    def _opts(self, state: RunState) -> HarnessOptions:
        """The child's own options (they say how to rerun), else the command's."""
        header = state.header or {}
        fields = header.get("options")
        if isinstance(fields, dict):
            try:
                return HarnessOptions(**fields)
            except TypeError:
                pass
        return self.options

    # -- as events arrive --------------------------------------------------------------

    def event(self, event: dict[str, Any], state: RunState) -> None:
        if self.passthrough:
            return
        kind = event.get("event")
        if kind == "header":
            for text in event.get("lines", []):
                self.line(text)
        elif kind == "collecterror":
            self.line(f"ERROR collecting {event['nodeid']}", "red")
            self.line(event["longrepr"].rstrip())
        elif kind == "report":
            self._report(event, state)

    def _report(self, event: dict[str, Any], state: RunState) -> None:
        props = state.test(event["nodeid"]).props
        when, outcome = event["when"], event["outcome"]
        if outcome == "passed" and when != "call":
            return
        if outcome == "skipped":
            return
        if outcome == "failed" and "seed" not in props and when != "???":
            # Not a graded test (or its fixture never ran): pytest's words.
            self.line(f"{short_name(event['nodeid'])} ...")
            self.line(f"  ... FAILED (in {when}) -- {_first_line(event['longrepr'])}", "red")
        else:
            this = Props([(k, v) for k, v in event["props"]])
            for text, colour in verdict_lines(event["nodeid"], this, outcome, when,
                                              self._opts(state)):
                self.line(text, colour)
        if outcome == "failed":
            self._details(event)
        for title, content in event.get("sections", []):
            if outcome == "passed" and title == "raftlab warning":
                self.line(f"  warning: {content.strip()}", "yellow")

    def _details(self, event: dict[str, Any]) -> None:
        name = short_name(event["nodeid"])
        self.line(f"---- details of {name} ----")
        if event["longrepr"].strip():
            self.line(event["longrepr"].rstrip())
        for title, content in event.get("sections", []):
            if title == RERUN_SECTION:
                continue  # the lab's lines just above have the rerun commands
            self.line(f"---- {title} ----")
            self.line(content.rstrip())
        self.line(f"---- end of {name} ----")

    # -- when the child has ended ------------------------------------------------------

    def ended_early(self, state: RunState, returncode: int, channel_closed: bool = False,
                    last_bound_dump: str | None = None) -> None:
        """The child ended without finishing its session: the running tests failed.

        ``channel_closed``: it had closed raftlab's channel first (its output gone too).
        ``last_bound_dump``: the stacks labtests.last_bound wrote as it ended the child
        (no Python could run in it any more, or it passed the memory bound); the reason
        says which and they are shown."""
        how = exit_description(returncode)
        if channel_closed:
            how += (" (after closing raftlab's channel to it: code under test closed file "
                    "descriptors it had not opened, and the process's output with them?)")
        options = self._opts(state)
        if self.passthrough:
            self.line()  # pytest's output may have been cut in the middle of a line
        if last_bound_dump is not None:
            self.child_output("every thread's stack when raftlab ended the test process "
                              "(its last bound or its memory bound)", last_bound_dump)
        for t in state.running():
            reason = (describe_last_bound(last_bound_dump) if last_bound_dump is not None
                      else _crash_reason(t, how))
            pairs: list[tuple[str, Any]] = list(t.props.pairs)
            if t.seed is not None and "seed" not in t.props:
                pairs.insert(0, ("seed", t.seed))
            pairs.append(("reason", reason))
            for text, colour in verdict_lines(t.nodeid, Props(pairs), "failed", "call",
                                              options, reason=reason):
                self.line(text, colour)
        if not state.running():
            self.line(f"raftlab: the test process ended with {how} before its run "
                      "finished (between tests)", "red")
        missing = state.not_run()
        if missing:
            self.line(f"not run (the test process had ended): {_names(missing)}", "yellow")

    def stopped(self, state: RunState, how: str) -> None:
        """The command was stopped (Ctrl-C, SIGTERM, SIGHUP): say so, during which test, and
        which tests did not run.  No test is failed for it: the Raft did nothing."""
        running = ", ".join(short_name(t.nodeid) for t in state.running())
        missing = state.not_run()
        during = f" during {running}" if running else ""
        rest = f"; not run: {_names(missing)}" if missing else ""
        self.line(f"raftlab: {how}: the test process was stopped{during}{rest}", "yellow")

    def child_output(self, title: str, text: str) -> None:
        if text.strip():
            self.line(f"---- {title} ----")
            self.line(bound_text(text).rstrip())

    def summary(self, state: RunState, crashed: bool, elapsed_s: float) -> None:
        counts = state.counts()
        failed = counts.get("failed", 0) + len(state.running() if crashed else [])
        parts = [f"{counts.get('passed', 0)} passed", f"{failed} failed"]
        for key in ("inconclusive", "refused", "skipped"):
            if counts.get(key):
                parts.append(f"{counts[key]} {key}")
        not_run = len(state.not_run()) if crashed else 0
        if not_run:
            parts.append(f"{not_run} not run")
        if state.collect_errors:
            parts.append(f"{state.collect_errors} collection errors")
        colour = ("red" if failed or not_run or crashed
                  else "yellow" if counts.get("refused") else "green")
        self.line(f"{', '.join(parts)} in {elapsed_s:.1f}s", colour)
        inconclusive = [t for t in state.tests.values() if t.verdict == "inconclusive"]
        if inconclusive:
            self.line(inconclusive_summary(inconclusive), "yellow")


def inconclusive_summary(tests: list[TestState]) -> str:
    """One line under the summary: what an inconclusive count means and what to do."""
    lags = [float(t.props["timer_lag_max_ms"]) for t in tests
            if isinstance(t.props.get("timer_lag_max_ms"), (int, float))
            and not t.props.get(DETAIL_KEY)]
    how = (f"timers late by up to {max(lags):.0f} ms, bound {LAG_BOUND_MS:.0f} ms" if lags
           else "the simulation got too little CPU")
    return (f"inconclusive: {_names([t.nodeid for t in tests])} failed while the machine "
            f"was overloaded ({how}): the Raft was not judged on them (see each one's "
            "'raftlab verdict' above); rerun them on a quieter machine, with the commands "
            "above")


def _names(nodeids: list[str], shown: int = 10) -> str:
    """The first ``shown`` tests by short name, and how many more there are."""
    more = f" and {len(nodeids) - shown} more" if len(nodeids) > shown else ""
    return ", ".join(short_name(n) for n in nodeids[:shown]) + more


def _crash_reason(t: TestState, how: str) -> str:
    if t.outcomes.get("call") is not None:
        return f"the test process ended with {how} after this test's body, during its cleanup"
    return f"the test process ended with {how} while this test was running"


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "failed"
