"""How ``raftlab test`` and its child pytest find their events file.

A module of its own, without pytest: the parent (:mod:`tools.test_run.follow`)
needs only this name, and importing the events plugin itself would load pytest
into a process that never runs a test (about 0.2 s of CPU and 15 MB per
``raftlab test``).
"""

ENV_EVENTS = "RAFTLAB_TEST_EVENTS"  # set by raftlab test for its child only
