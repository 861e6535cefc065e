"""Command-line tools of raftlab: test, stress, logs (and later grade)."""
