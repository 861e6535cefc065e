"""pytest plugin for the timer-slack and batch-scheduling tests: which timer slack and
scheduling policy the bundled Raft's threads run with.

Loaded with ``-p record_slack`` (its folder on PYTHONPATH) in a child pytest: each
peer's ticker and applier thread reads its own timer slack and policy as it starts,
and the values go to the JSON file ``RAFTLAB_TEST_SLACK_OUT`` at the end, as
``[thread name, slack ns, policy]``.  Test-only.
"""

from __future__ import annotations

import json
import os
import threading

from labtests import batchsched, timerslack
from raft.reference import raft as reference

_seen: list[list] = []
_mu = threading.Lock()


def _recording(method):  # noqa: ANN001, ANN202 - wraps a thread target of the Raft
    def run(self):  # noqa: ANN001, ANN202
        with _mu:
            _seen.append([threading.current_thread().name, timerslack.current_slack_ns(),
                          batchsched.current_policy()])
        return method(self)
    return run


reference.Raft._ticker = _recording(reference.Raft._ticker)
reference.Raft._applier = _recording(reference.Raft._applier)


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001
    with open(os.environ["RAFTLAB_TEST_SLACK_OUT"], "w") as f:
        json.dump(_seen, f)
