"""One self-contained HTML file showing a test's events: a lane per peer, zoom, pan, hover.

The page is :file:`template.html` (inline CSS and JavaScript, no network
access: it opens from disk, from a bundle copied elsewhere, in a CI artifact)
with the events embedded as JSON; the script draws an SVG from them and
redraws it on zoom and pan.  The drawn DOM has stable hooks for tests and
tools: ``data-lane="0"`` (a peer), ``data-lane="tester"``/``"network"``,
classes ``seg-leader``/``seg-candidate``/``seg-follower``/``seg-unresponsive``,
``iv-crash``, ``iv-disconnected``, ``band-unreliable``/``band-reorder``,
``check-ok``/``check-fail``, ``apply``, ``snap``, ``rpc-bar``, and when zoomed in
far enough (at most 1,500 in view) one ``<line class="rpc-msg rpc-o-<outcome>">``
per individual RPC event in ``data-lane="rpcs"`` (``rpc-vote`` for vote-ish
methods), ``id="failure-marker"``, and on ``<body>`` ``data-rendered="1"`` and
``data-render-ms`` once drawn.  ``timeline.html#t=2.5,4`` opens on that interval.

Bounded: the embedded events stay under :data:`MAX_DATA` characters; beyond
that the earliest bulky events (debug lines first, then individual RPCs, RPC
counts, applies, snapshots, state samples) are dropped and a note says how many.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

MAX_DATA = 1_800_000  # characters of embedded JSON (the page stays under 2 MB)
DROP_ORDER = ("dbg", "msg", "rpc", "apply", "snapshot", "state")


def _template() -> str:
    return resources.files("labtests.timeline").joinpath("template.html").read_text("utf-8")


def _dumps(obj: Any) -> str:
    # "</" would end the <script> element early; JSON allows the escaped form.
    return json.dumps(obj, separators=(",", ":"), default=str).replace("</", "<\\/")


def fit(events: list[dict[str, Any]], budget: int = MAX_DATA) -> list[dict[str, Any]]:
    """``events`` without their earliest bulky ones if they would exceed ``budget``."""
    sizes = [len(_dumps(ev)) + 1 for ev in events]
    total = sum(sizes)
    if total <= budget:
        return events
    drop: set[int] = set()
    for kind in DROP_ORDER:
        for idx, ev in enumerate(events):
            if total <= budget:
                break
            if ev.get("k") == kind:
                drop.add(idx)
                total -= sizes[idx]
        if total <= budget:
            break
    kept = [ev for idx, ev in enumerate(events) if idx not in drop]
    kept.append({"t": kept[-1]["t"] if kept else 0.0, "k": "note",
                 "msg": f"the page leaves out the {len(drop)} earliest debug lines, RPCs, "
                        f"applies or samples to stay small; events.jsonl has them all"})
    return kept


def render(head: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """The HTML page for ``head`` (the events.jsonl header) and ``events``."""
    title = f"{head.get('test', 'test')} seed {head.get('seed', '?')}"
    data = _dumps({"head": head, "events": fit(events)})
    page = _template()
    return page.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)
