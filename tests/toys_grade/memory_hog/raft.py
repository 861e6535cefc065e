"""Toy submission whose make() allocates memory until the limit stops it."""


def make(peers, me, persister, apply_ch):
    hoard = []
    while True:
        hoard.append(bytearray(256 * 1024 * 1024))
