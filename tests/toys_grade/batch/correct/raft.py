"""Toy submission: the bundled reference Raft, as a student's raft.py would provide it."""

from raft.raft import Raft, make  # noqa: F401 - re-exported as the submission's API
