"""Known artifacts of the lab's tests: failures that a correct Raft can get from the test.

The graded tests are the lab's, and stay as strict as the lab's: a failure
stays a failure.  But a few of the lab's checks can fail a correct Raft, rarely,
because of how the *test* acts, not because of anything the Raft did wrong.  When
a failure matches one of these patterns exactly, the harness says so in the
failure message and names the pattern (``raftlab_artifact`` on the test's
report), so that ``raftlab stress`` and ``raftlab grade`` can count them apart.

Each detector here is a pure function of what the harness observed, so a unit
test can drive it without threads; docs/harness.md (Known artifacts) lists the
patterns and why each one is the test's doing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ARTIFACT_KEY = "raftlab_artifact"  # the report's user property naming the artifact
DEPOSED_LEADER = "deposed-leader-submission"
LATE_APPLY = "late-apply-after-restart"


@dataclass(frozen=True)
class Artifact:
    """A failure that matches a known artifact: its short name and what happened."""

    name: str
    explanation: str

    def annotate(self, message: str) -> str:
        """The failure message followed by the explanation (the lab's line stays first)."""
        return (
            f"{message}\n(known artifact of the lab's tests, {self.name!r}: {self.explanation}; "
            f"the verdict stands, see docs/harness.md, Known artifacts)"
        )


def deposed_leader_submission(
    accepted: int, accepted_term: int, claims: Mapping[int, tuple[int, bool]]
) -> Artifact | None:
    """``one(cmd, n, retry=False)`` failed: was the command given to a deposed leader?

    ``accepted`` is the server whose ``start()`` took the command, in
    ``accepted_term``; ``claims`` maps each other connected server to its
    ``get_state()`` read right after that submission.  The pattern: another
    connected server claimed leadership in a higher term, so the server that took
    the command was a leader that had not yet heard of the new term (right after
    a partition heals, both can claim leadership for a moment).  Its entry can
    never commit, and ``one()`` without retry does not resubmit.
    """
    higher = sorted(
        (term, peer)
        for peer, (term, is_leader) in claims.items()
        if peer != accepted and is_leader and term > accepted_term
    )
    if not higher:
        return None
    term, peer = higher[-1]
    return Artifact(
        DEPOSED_LEADER,
        f"when one() submitted the command, server {accepted} accepted it in term "
        f"{accepted_term} while server {peer} claimed leadership in the higher term {term}; "
        f"a deposed leader that has not yet heard of the new term takes a command that can "
        f"never commit, and one() without retry does not resubmit it",
    )


def late_apply_after_restart(server: int, index: int, expected: int) -> Artifact:
    """A 2D apply-order failure caused by two instances of one server sharing its counter.

    The caller has checked the pattern: the tester keeps one "last applied"
    counter per server, and after a restart the crashed instance's reader still
    drains the old apply channel (as in the lab); the index is in order for the
    instance that delivered it, but the counter was last set by the reader of the
    *other* instance.
    """
    return Artifact(
        LATE_APPLY,
        f"index {index} is in order for the instance of server {server} that applied it, but "
        f"the tester's one last-applied counter for server {server} (expecting {expected}) was "
        f"last set by the reader of another instance of it (a crashed instance still "
        f"delivering after the restart, or its successor)",
    )
