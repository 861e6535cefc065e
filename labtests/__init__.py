"""The raftlab test harness and the graded Raft suites (parts 2A-2D)."""

from labtests import shadowing as _shadowing

# Before anything imports ``raft``: a student's own ``raft/`` folder never shadows
# the framework's (see labtests/shadowing.py).
_shadowing.install()
