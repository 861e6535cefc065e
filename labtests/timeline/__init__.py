"""The timeline of a graded test: recorded events, a state sampler, an HTML view, a bundle.

* :mod:`labtests.timeline.recorder`: the events the tester records itself
  (faults, checks, applies, the failure), bounded, on the clock in use;
* :mod:`labtests.timeline.sampler`: each peer's role and term and RPC count,
  sampled from a harness thread that never blocks the harness;
* :mod:`labtests.timeline.traffic`: individual RPCs, from the network's
  ``on_rpc`` observer (and from them the candidate role);
* :mod:`labtests.timeline.html`: one self-contained HTML file (lanes per peer,
  zoom and pan, hover details);
* :mod:`labtests.timeline.bundle`: the failure bundle a failing test writes
  (``.raftlab/failures/<test>-seed<S>/``, docs/harness.md, Failure bundle).
"""

from __future__ import annotations

from typing import Any

from labtests.timeline.debuglines import DebugCapture
from labtests.timeline.recorder import Recorder
from labtests.timeline.sampler import StateSampler
from labtests.timeline.traffic import Traffic

__all__ = ["Recorder", "StateSampler", "Watch", "start_watch"]


class Watch:
    """What watches one Config beyond the tester's own calls: the state sampler, the
    network observer and the debug-line capture.  :meth:`stop` ends them (the config's
    cleanup calls it first)."""

    def __init__(self, sampler: StateSampler | None, capture: DebugCapture | None,
                 traffic: Traffic | None = None) -> None:
        self.sampler = sampler
        self.capture = capture
        self.traffic = traffic

    def stop(self) -> list[str]:
        """Stop watching; the names of sampler threads left stuck in a Raft (abandoned)."""
        if self.traffic is not None:
            self.traffic.remove()
        if self.capture is not None:
            self.capture.remove()
        return self.sampler.stop() if self.sampler is not None else []

    def release(self) -> None:
        """Drop the captured debug lines (the bundle, if any, has been written)."""
        if self.capture is not None:
            self.capture.lines.clear()


def start_watch(cfg: Any, *, test: str, isolated: bool, sample: bool = True,
                traffic: bool = True) -> Watch:
    """Start watching ``cfg``'s peers.  ``sample=False`` (under --race, whose reports must
    name only the test's own threads) starts no sampler thread; ``traffic=False`` leaves
    the network unobserved (no individual RPCs, no candidate role)."""
    sampler = StateSampler(cfg, cfg.timeline, isolated=isolated, test=test).start() \
        if sample else None
    observer = Traffic(cfg.timeline, cfg._end_routes, cfg._generation).install(cfg.net) \
        if traffic else None
    return Watch(sampler, DebugCapture(cfg.timeline).install(), observer)
