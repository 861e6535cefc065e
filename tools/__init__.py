"""Command-line tools of raftlab: test, stress, logs, grade.

PYTEST_DONT_REWRITE: these tools start pytest after importing this package, so
pytest must not try (and warn that it fails) to rewrite asserts here.
"""
