"""Helpers for the node tests (a unique module name: every test area has a conftest)."""
import os
import time


def fill(directory, nbytes, name="fill.bin"):
    with open(os.path.join(directory, name), "wb") as handle:
        handle.write(b"\0" * nbytes)
    return os.path.join(directory, name)


def age(path, days):
    old = time.time() - days * 86400
    os.utime(path, (old, old))
