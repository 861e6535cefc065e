"""Base of the isolation toys: the plain toys' one (``tests/toys/_reference_wrapper.py``).

Loaded from that file, so the wrapper is written once; that folder is not put on
``sys.path``, where its toys would shadow this folder's toys of the same names
(``exits_zero``, ``leaves_threads``...).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_FILE = Path(__file__).resolve().parent.parent / "toys" / "_reference_wrapper.py"
_spec = importlib.util.spec_from_file_location("_reference_wrapper", _FILE)
assert _spec is not None and _spec.loader is not None, f"cannot load {_FILE}"
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

Wrapped = _module.Wrapped
