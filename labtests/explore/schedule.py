"""A fault schedule: a plain, printable list of timed steps, plus the seed of its run.

Why plain data: a schedule is what a failure is reported as, what the shrinker
edits and what ``raftlab explore --replay FILE`` reads back, so it must print
readably and survive a JSON round trip unchanged.  Together with its ``seed``
(which seeds the simulation's scheduler, the fake network's faults and
module-level ``random``) a schedule determines its run event for event.

Steps (``at`` is virtual seconds from the start; peers are numbered from 0):

=================  ==============================================================
``partition``      ``groups``: lists of peers; links inside a group work, links
                   across groups are cut both ways (peers not listed are alone)
``link``           ``src``, ``dst``, ``state``: ``ok``; ``cut`` (``src``'s
                   requests to ``dst`` are lost: a one-way cut); ``deaf``
                   (they are delivered and handled, but the replies are lost)
``crash``          ``peer``: kill it, keeping what it persisted
``restart``        ``peer``: start it again from what it persisted
``crash_after``    ``peer``, ``event`` (``persist``, ``vote``, ``append``,
                   ``snapshot``), ``delay``, ``down``: from ``at`` on, crash the
                   peer ``delay`` s after it next saves its state or handles that
                   RPC (``delay`` 0 freezes its persisted state and cuts it off at
                   that very moment), then restart it ``down`` s later
``mute_after``     ``peer``, ``event`` (``vote``, ``append``, ``snapshot``),
                   ``delay``, ``down``: ``delay`` s after the peer's next reply
                   to that RPC reaches its caller (0: before the caller sees
                   it), every request to the peer is lost for ``down`` s; it
                   keeps running its timers and can send
``unreliable``     ``on``: drop 10 % of requests and replies, delay requests
``reorder``        ``on``: the network's long reordering of replies
``clients``        ``count``: that many unique commands, each offered to the
                   peers in turn until one accepts (like the lab's ``one()``)
=================  ==============================================================

At ``horizon`` everything heals (all links work, every peer runs, the network is
reliable) and the liveness phase begins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FORMAT = "raftlab-explore-schedule/1"

OPS = ("partition", "link", "crash", "restart", "crash_after", "mute_after", "unreliable",
       "reorder", "clients")
TRIGGERED = ("crash_after", "mute_after")  # ops armed on a peer's next event
LINK_STATES = ("ok", "cut", "deaf")
EVENTS = ("persist", "vote", "append", "snapshot")
RPC_EVENTS = ("vote", "append", "snapshot")  # mute_after waits for a reply to one of these


@dataclass(frozen=True)
class Step:
    """One timed action of a schedule; ``args`` holds the op's plain-data arguments."""

    at: float
    op: str
    args: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "op": self.op, **self.args}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Step:
        data = dict(data)
        at = float(data.pop("at"))
        op = str(data.pop("op"))
        return Step(at, op, data)

    def peers(self) -> set[int]:
        """Every peer this step names."""
        a = self.args
        if self.op == "partition":
            return {p for g in a["groups"] for p in g}
        if self.op == "link":
            return {a["src"], a["dst"]}
        if "peer" in a:
            return {a["peer"]}
        return set()

    def describe(self) -> str:
        a = self.args
        t = f"{self.at:7.3f}s"
        if self.op == "partition":
            groups = " | ".join(",".join(f"S{p}" for p in g) for g in a["groups"])
            return f"{t}  partition {groups}"
        if self.op == "link":
            return f"{t}  link S{a['src']}->S{a['dst']} {a['state']}"
        if self.op == "crash_after":
            return (f"{t}  crash S{a['peer']} {a['delay']:.3f}s after its next {a['event']}, "
                    f"down {a['down']:.3f}s")
        if self.op == "mute_after":
            return (f"{t}  mute S{a['peer']} (requests to it lost) {a['delay']:.3f}s after "
                    f"its next {a['event']} reply arrives, for {a['down']:.3f}s")
        if self.op in ("crash", "restart"):
            return f"{t}  {self.op} S{a['peer']}"
        if self.op in ("unreliable", "reorder"):
            return f"{t}  {self.op} {'on' if a['on'] else 'off'}"
        if self.op == "clients":
            return f"{t}  clients submit {a['count']} command(s)"
        return f"{t}  {self.op} {a}"


@dataclass(frozen=True)
class Schedule:
    """``n`` peers, the run's ``seed``, steps sorted by time, the heal time ``horizon``.

    ``snapshot_every`` > 0 makes the tester call ``snapshot(i)`` after applying
    each index ``i`` with ``(i + 1) % snapshot_every == 0`` (the lab's 2D applier
    uses 10); 0 never snapshots.
    """

    n: int
    seed: int
    steps: tuple[Step, ...]
    horizon: float
    snapshot_every: int = 0

    def __post_init__(self) -> None:
        validate(self)

    def with_changes(self, **changes: Any) -> Schedule:
        data = {"n": self.n, "seed": self.seed, "steps": self.steps, "horizon": self.horizon,
                "snapshot_every": self.snapshot_every}
        data.update(changes)
        steps = tuple(sorted(data["steps"], key=lambda s: s.at))
        data["steps"] = steps
        return Schedule(**data)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "n": self.n, "seed": self.seed, "horizon": round(self.horizon, 3),
            "snapshot_every": self.snapshot_every,
            "steps": [s.to_json() for s in self.steps],
        }

    def dumps(self) -> str:
        """One JSON document, one step per line (readable and diffable)."""
        head = {k: v for k, v in self.to_json().items() if k != "steps"}
        lines = [json.dumps(s.to_json(), sort_keys=False) for s in self.steps]
        body = ",\n    ".join(lines)
        head_text = json.dumps(head)[:-1]
        return f'{head_text}, "steps": [\n    {body}\n]}}\n'

    @staticmethod
    def from_json(data: dict[str, Any]) -> Schedule:
        if not isinstance(data, dict):
            raise ValueError(f"a schedule is a JSON object, not {type(data).__name__}")
        fmt = data.get("format")
        if fmt not in (None, FORMAT):
            if isinstance(fmt, str) and fmt.startswith(FORMAT.rsplit("/", 1)[0] + "/"):
                raise ValueError(f"written in format {fmt!r}, another version of raftlab "
                                 f"explore; this one reads {FORMAT!r}")
            raise ValueError(f"not an explore schedule (format {fmt!r})")
        steps = tuple(sorted((Step.from_json(s) for s in data["steps"]), key=lambda s: s.at))
        return Schedule(int(data["n"]), int(data["seed"]), steps, float(data["horizon"]),
                        int(data.get("snapshot_every", 0)))

    @staticmethod
    def loads(text: str) -> Schedule:
        return Schedule.from_json(json.loads(text))

    def describe(self) -> str:
        head = (f"{self.n} peers, seed {self.seed}, snapshots "
                f"{'every ' + str(self.snapshot_every) if self.snapshot_every else 'off'}")
        lines = [head, *(s.describe() for s in self.steps),
                 f"{self.horizon:7.3f}s  heal everything; liveness checks begin"]
        return "\n".join(lines)


class ScheduleError(ValueError):
    """A schedule that names unknown ops, peers out of range, or bad arguments."""


def validate(s: Schedule) -> None:
    """Refuse a malformed schedule with a message naming the bad step."""
    if s.n < 1:
        raise ScheduleError(f"a schedule needs at least one peer, not {s.n}")
    if s.snapshot_every < 0:
        raise ScheduleError("snapshot_every must be >= 0")
    for k, step in enumerate(s.steps):
        where = f"step {k} ({step.op} at {step.at})"
        if step.op not in OPS:
            raise ScheduleError(f"{where}: unknown op; use one of {', '.join(OPS)}")
        if step.at < 0 or step.at > s.horizon:
            raise ScheduleError(f"{where}: time outside 0..horizon ({s.horizon})")
        for p in step.peers():
            if not isinstance(p, int) or not 0 <= p < s.n:
                raise ScheduleError(f"{where}: no peer {p!r} among {s.n}")
        a = step.args
        if step.op == "link" and a.get("state") not in LINK_STATES:
            raise ScheduleError(f"{where}: link state must be one of {', '.join(LINK_STATES)}")
        if step.op in TRIGGERED:
            events = EVENTS if step.op == "crash_after" else RPC_EVENTS
            if a.get("event") not in events:
                raise ScheduleError(f"{where}: event must be one of {', '.join(events)}")
            if a.get("delay", -1) < 0 or a.get("down", -1) < 0:
                raise ScheduleError(f"{where}: delay and down must be >= 0")
        if step.op == "clients" and int(a.get("count", 0)) < 1:
            raise ScheduleError(f"{where}: count must be >= 1")
