"""Failures grouped by signature: count, first seed, one bundle, the first seed's rerun.

:class:`FailureGroups` is fed every failing run (in the order results arrive)
and answers two questions: should this run's failure bundle be kept (at most
:data:`BUNDLES_PER_GROUP` per signature and :data:`MAX_BUNDLES` in all, so a
stress run of thousands of failures stays small), and what does the summary
say about each group.  Known artifacts of the lab's tests
(:mod:`labtests.artifacts`) get groups of their own, since their signature
carries the artifact's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools.stress.signatures import Signature

BUNDLES_PER_GROUP = 3
MAX_BUNDLES = 30


@dataclass
class Group:
    """The failures of one signature."""

    signature: Signature
    count: int = 0
    first_test: str = ""
    first_seed: int = 0
    first_rerun: str = ""
    tests: dict[str, int] = field(default_factory=dict)  # test -> failures of it here
    bundles: list[str] = field(default_factory=list)  # kept bundle folders

    def to_json(self) -> dict[str, Any]:
        return {"signature": self.signature.key, "id": self.signature.id,
                "check": self.signature.check, "message": self.signature.text,
                "artifact": self.signature.artifact, "count": self.count,
                "first_test": self.first_test, "first_seed": self.first_seed,
                "first_rerun": self.first_rerun, "tests": self.tests,
                "bundles": self.bundles}


class FailureGroups:
    """Groups failures by :class:`~tools.stress.signatures.Signature` (see module doc)."""

    def __init__(self, per_group: int = BUNDLES_PER_GROUP, max_total: int = MAX_BUNDLES) -> None:
        self.per_group = per_group
        self.max_total = max_total
        self.groups: dict[Signature, Group] = {}
        self.kept = 0
        self.not_kept = 0  # bundles dropped by the caps

    def add(self, sig: Signature, test: str, seed: int, rerun: str) -> Group:
        """Count one failure; returns its group."""
        group = self.groups.get(sig)
        if group is None:
            group = self.groups[sig] = Group(sig, first_test=test, first_seed=seed,
                                             first_rerun=rerun)
        group.count += 1
        group.tests[test] = group.tests.get(test, 0) + 1
        return group

    def may_keep(self, sig: Signature) -> bool:
        """Whether one more bundle of ``sig`` fits the caps (count it with :meth:`kept_bundle`)."""
        group = self.groups.get(sig)
        held = len(group.bundles) if group is not None else 0
        return held < self.per_group and self.kept < self.max_total

    def kept_bundle(self, sig: Signature, path: str) -> None:
        self.groups[sig].bundles.append(path)
        self.kept += 1

    def ordered(self) -> list[Group]:
        """Largest group first; artifacts after the Raft's own failures."""
        return sorted(self.groups.values(),
                      key=lambda g: (g.signature.artifact is not None, -g.count))

    def summary_lines(self, short: Any = str) -> list[str]:
        """The summary's section: one block per group (``short`` shortens test ids)."""
        if not self.groups:
            return []
        total = sum(g.count for g in self.groups.values())
        lines = [f"failure groups ({len(self.groups)} signature(s) over {total} failure(s); "
                 f"at most {self.per_group} bundle(s) kept per group, {self.max_total} in all):"]
        for i, group in enumerate(self.ordered(), 1):
            tests = ", ".join(f"{short(t)} x{n}" for t, n in group.tests.items())
            kind = "known artifact " if group.signature.artifact else ""
            lines.append(f"  {kind}group {i}: {group.count} x {group.signature.key}")
            lines.append(f"    tests: {tests}")
            lines.append(f"    first: {short(group.first_test)} seed {group.first_seed}; "
                         f"rerun: {group.first_rerun}")
            bundle = group.bundles[0] if group.bundles else "(none kept)"
            lines.append(f"    bundle: {bundle}")
        if self.not_kept:
            lines.append(f"  {self.not_kept} more bundle(s) not kept (caps above)")
        return lines
