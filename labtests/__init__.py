"""The raftlab test harness and the graded Raft suites (parts 2A-2D)."""
