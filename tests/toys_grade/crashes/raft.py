"""Toy submission whose make() kills its own process (like a segfault would)."""

import os


def make(peers, me, persister, apply_ch):
    os._exit(3)
