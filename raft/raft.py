"""Compatibility alias: the reference Raft moved to :mod:`raft.reference.raft`.

``from raft.raft import Raft, make`` keeps working (it is the very same module
object, so patching a class through either name patches both); new code should
import :mod:`raft.reference`.
"""

import sys

import raft.reference.raft as _reference

sys.modules[__name__] = _reference
