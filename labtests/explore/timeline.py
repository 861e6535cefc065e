"""The timeline page of one explore run (the graded tests' view, labtests.timeline).

Built after the run from what the run kept anyway -- its debug log (the
schedule's steps, crashes, restarts and mutes are the tester's ``TEST`` lines;
the Raft's own lines go on its peer's lane) and the cluster's ``get_state``
samples and applies, recorded with the times it read for the monitors -- so
asking for a timeline reads no clock and changes nothing in the run: the
replay of a schedule is the same with or without it.
"""

from __future__ import annotations

import re
from typing import Any

from labtests.explore.monitors import Violation
from labtests.explore.schedule import Schedule
from labtests.timeline.debuglines import parse
from labtests.timeline.html import render
from labtests.timeline.recorder import dump_jsonl, header, short

_STEP = re.compile(r"^explore: +([0-9.]+)s +(.*)$")
_PEER = re.compile(r"^explore: (crash|mute|unmute) S(\d+)$")
_START = re.compile(r"^explore: start S(\d+) \(run (\d+)\)$")
_MUTED_NOW = re.compile(r"^explore: S(\d+) answered an? \w+: muted now ")


def _tester_line(t: float, msg: str, n: int) -> list[dict[str, Any]]:
    m = _PEER.match(msg)
    if m:
        kind = {"crash": "crash", "mute": "disconnect", "unmute": "connect"}[m.group(1)]
        return [{"t": t, "k": kind, "p": int(m.group(2))}]
    m = _MUTED_NOW.match(msg)
    if m:
        return [{"t": t, "k": "disconnect", "p": int(m.group(1))}]
    m = _START.match(msg)
    if m:
        return [{"t": t, "k": "start", "p": int(m.group(1)), "gen": int(m.group(2))}]
    if msg == "explore: heal everything":
        return [{"t": t, "k": "net", "reliable": True, "long_reordering": False},
                *({"t": t, "k": "connect", "p": p} for p in range(n)),
                {"t": t, "k": "begin", "name": "heal: liveness checks"}]
    m = _STEP.match(msg)
    if not m:
        return []
    step = m.group(2)
    if step.startswith(("unreliable ", "reorder ")):
        what, on = step.split()[:2]
        key = "reliable" if what == "unreliable" else "long_reordering"
        value = (on != "on") if what == "unreliable" else (on == "on")
        return [{"t": t, "k": "net", key: value}]
    return [{"t": t, "k": "check", "name": step, "id": f"{t}:{step}", "phase": "begin"},
            {"t": t, "k": "check", "name": step, "id": f"{t}:{step}", "phase": "end",
             "ok": True}]


def build(schedule: Schedule, log: list[str],
          observed: list[tuple[float, str, int, dict[str, Any]]],
          violation: Violation | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(events.jsonl header, events) of one run, in time order."""
    events: list[dict[str, Any]] = []
    for line in log:
        got = parse(line)
        if got is None:
            continue
        topic, peer, msg = got
        t = int(line.split(" ", 1)[0]) / 1000.0
        if topic == "TEST":
            events.extend(_tester_line(t, msg, schedule.n))
        elif peer is not None:
            events.append({"t": t, "k": "dbg", "p": peer, "topic": topic, "msg": msg[:300]})
    last: dict[int, tuple[int, str]] = {}
    for t, kind, peer, fields in observed:
        if kind == "state":
            role = "leader" if fields["leader"] else "follower"
            if last.get(peer) == (fields["term"], role):
                continue
            last[peer] = (fields["term"], role)
            events.append({"t": t, "k": "state", "p": peer, "term": fields["term"],
                           "role": role, "src": "sample"})
        elif kind == "apply":
            events.append({"t": t, "k": "apply", "p": peer, "i": fields["i"],
                           "c": short(fields["c"])})
        elif kind == "snapshot":
            events.append({"t": t, "k": "snapshot", "p": peer, **fields})
    if violation is not None:
        text = violation.headline()
        events.append({"t": violation.at, "k": "fail", "msg": text[:4000],
                       "first": text.splitlines()[0], "check": violation.monitor})
    events.sort(key=lambda e: e["t"])  # stable: the order of recording within one instant
    head = header(schedule.n, test=f"explore {violation.monitor if violation else 'run'}",
                  seed=schedule.seed, mode="explore (simulated time)")
    return head, events


def page(head: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """The self-contained HTML page."""
    return render(head, events)


def jsonl(head: dict[str, Any], events: list[dict[str, Any]]) -> str:
    return dump_jsonl(head, events)
