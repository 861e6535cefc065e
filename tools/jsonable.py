"""Whether a value survives ``json.dumps``: the one test both pytest plugins apply to properties.

``raftlab test``'s events plugin (:mod:`tools.test_run.events`) and ``raftlab stress``'s
plugin (:mod:`tools.stress.pytest_plugin`) both forward a test's user properties as
JSON and drop those that cannot be encoded (a harness object, a set).  The events
plugin is imported before pytest starts and before the current folder is on
``sys.path``, so this module imports nothing but :mod:`json`.
"""

from __future__ import annotations

import json
from typing import Any


def jsonable(value: Any) -> bool:
    """True if ``json.dumps(value)`` works (no custom types, no circular references)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
