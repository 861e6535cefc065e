"""Broken toy: commits without a majority (the oracle ignores the network)."""

from _oracle import make  # noqa: F401
