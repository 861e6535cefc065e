"""The lab's lines for one graded test's verdict, in one place for every printer.

The harness plugin prints them in a pytest run, ``raftlab test`` prints them
from the event stream of the pytest process it runs, and both must read the
same: the lab's two lines (``Test (2A): ... ...``, ``  ... Passed --  ...``),
and for a failure the *reason* on the failure line (the first line of the
failure message), then the seed and the one rerun command, then the details.

Also here: the reason of a failure (:func:`failure_reason`), the words for
a process that ended early (:func:`exit_description`), so a crash reads the
same whether ``raftlab test`` or pytest-xdist noticed it, and why an
inconclusive test was not judged (:func:`inconclusive_explanation`): the
harness puts it in the report's sections, so every printer of a failure's
details (pytest's INCONCLUSIVE section, ``raftlab test``, a stress run's log)
shows it beside the captured output.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from labtests.options import HarnessOptions
from labtests.overload import DETAIL_KEY, LAG_BOUND_MS, VERDICT_KEY, inconclusive_text
from labtests.rerun import rerun_hint

REASON_KEY = "reason"  # user property: the first line of a failure's message
MAX_REASON_CHARS = 300
# Report sections of an inconclusive test: why it was not judged, and how to rerun it
# (a stress log leaves the rerun section out: its header has the command, debug log on).
VERDICT_SECTION = "raftlab verdict"
RERUN_SECTION = "raftlab rerun"
# The "verdict" user property (labtests.overload.VERDICT_KEY) of a run the harness refused
# to make as asked -- the implementation's source changed on disk after the process loaded
# it (labtests.sim.ticks.StaleSource) -- an error in setup, neither a pass nor the Raft's
# failure: raftlab stress counts it apart.
REFUSED = "refused"


def refused(props: Mapping[str, Any]) -> bool:
    """Whether a report's user properties say the harness refused the run (:data:`REFUSED`)."""
    return props.get(VERDICT_KEY) == REFUSED


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, cut to :data:`MAX_REASON_CHARS`."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            if len(line) > MAX_REASON_CHARS:
                line = line[:MAX_REASON_CHARS - 3] + "..."
            return line
    return ""


def failure_reason(exc: BaseException) -> str:
    """What a failure line says: the lab's message alone for a test failure (an
    assertion, ``pytest.fail``, the watchdog, the simulation's report), the
    exception's type and message for anything else (an error in the harness or
    in the Raft)."""
    msg = getattr(exc, "msg", None)  # pytest's outcome exceptions keep their text here
    text = msg if isinstance(msg, str) else str(exc)
    if isinstance(exc, AssertionError) or msg is not None:
        return first_line(text) or type(exc).__name__
    line = first_line(text)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def exit_description(returncode: int) -> str:
    """``exit status 0`` or ``signal SIGKILL (9)``, from a ``subprocess`` return code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {name} ({-returncode})"
    return f"exit status {returncode}"


def short_name(nodeid: str) -> str:
    """``test_backup_2b`` from ``labtests/test_2b.py::test_backup_2b``."""
    return nodeid.rsplit("::", 1)[-1]


def passed_line(f: Mapping[str, Any]) -> str:
    """The lab's summary line: Go's ``"  ... Passed --"`` + ``"  %4.1f  %d %4d %7d %4d"``.

    Here, not in the harness (:mod:`labtests.config` prints it at a test's end), so
    that ``raftlab test``'s own process can print it without importing the harness."""
    return (
        f"  ... Passed --  {f['time']:4.1f}  {f['peers']:d} {f['rpcs']:4d} "
        f"{f['bytes']:7d} {f['commits']:4d}"
    )


def verdict_lines(nodeid: str, props: Mapping[str, Any], outcome: str, when: str,
                  options: HarnessOptions, reason: str | None = None) -> list[tuple[str, str]]:
    """The lab's lines for one report, each with a colour (``green``/``red``/``yellow``/"").

    ``outcome`` is pytest's (passed/failed/skipped); ``when`` its phase.  A
    passed call prints the description and the Passed line; any failed phase
    prints the description, the failure line with the reason, and the seed
    with the rerun command (when the test has a seed).  Nothing else prints.
    """
    name = short_name(nodeid)
    desc = props.get("description") or name
    if outcome == "passed" and when == "call":
        if "time" not in props:
            return []
        # Go prints the lab's warnings without a newline, so they prefix the Passed line.
        warnings = "".join(str(v) for k, v in _items(props) if k == "lab_warning")
        return [(f"{desc} ...", ""), (warnings + passed_line(dict(props)), "green")]
    if outcome != "failed":
        return []
    why = reason or props.get(REASON_KEY) or f"{when} failed"
    verdict = inconclusive_text(dict(props))
    phase = "" if when in ("call", "???") else f" (in {when})"
    if verdict:
        lines = [(f"{desc} ...", ""), (f"  ... {verdict}{phase} -- {why}", "yellow")]
    elif refused(props):  # not the Raft's failure: the run was not made
        lines = [(f"{desc} ...", ""), (f"  ... REFUSED{phase} -- {why}", "yellow")]
    else:
        lines = [(f"{desc} ...", ""), (f"  ... FAILED{phase} -- {why}", "red")]
    if "seed" in props:
        hint = rerun_hint(name, int(props["seed"]), options)
        lines += [(f"  {line.strip()}", "") for line in hint.splitlines()]
    return lines


def inconclusive_explanation(props: Mapping[str, Any]) -> str | None:
    """Why an inconclusive test was not judged and what to do, or None if it was judged.

    A student whose run reads inconclusive must see that the verdict is about the
    machine (the measured lag against the bound, or the simulation's CPU starved),
    that the failure below it is not counted, and how to get a verdict.
    """
    verdict = inconclusive_text(dict(props))
    if verdict is None:
        return None
    if props.get(DETAIL_KEY):
        why = ("The simulation's wall-clock backstop ended this run before it had used its "
               "CPU-time\nbudget: the machine gave the test process too little CPU to judge "
               "the Raft in time.")
    else:
        lag = float(props.get("timer_lag_max_ms", 0.0))
        why = (f"During this test the machine made the tester's timers late by {lag:.0f} ms, "
               f"at or over the\nbound of {LAG_BOUND_MS:.0f} ms: the lab's timing has no more "
               "slack than that (heartbeats every\n100 ms, election timeouts from about "
               "300 ms), so a correct Raft can fail like this too.")
    return (f"{verdict}: the Raft was not judged.\n{why}\n"
            "This failure counts neither as a failure nor as a pass.\n"
            "What to do: rerun it on a quieter machine: close other programs, run fewer "
            "tests at\nonce (raftlab test -n, raftlab stress -p).")


def inconclusive_sections(nodeid: str, props: Mapping[str, Any],
                          options: HarnessOptions) -> list[tuple[str, str]]:
    """The report sections of an inconclusive test (none for any other): the
    explanation, and the rerun commands when the test has a seed."""
    explanation = inconclusive_explanation(props)
    if explanation is None:
        return []
    sections = [(VERDICT_SECTION, explanation)]
    if "seed" in props:
        sections.append((RERUN_SECTION, rerun_hint(short_name(nodeid), int(props["seed"]),
                                                   options)))
    return sections


def _items(props: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Properties as pairs; a report's list keeps repeated keys (several lab warnings)."""
    raw = getattr(props, "pairs", None)
    return list(raw) if raw is not None else list(props.items())


class Props(dict):
    """A report's user properties as a dict that also remembers every pair in order."""

    def __init__(self, pairs: list[tuple[str, Any]] | list[list[Any]]) -> None:
        self.pairs = [(str(k), v) for k, v in pairs]
        super().__init__(self.pairs)
