"""labrpc: an in-process fake network for testing RPC-based distributed code.

See :mod:`labrpc.network` for the semantics (it reads as the specification) and
:mod:`labrpc.codec` for the checked encoding every message goes through.
"""

from labrpc.codec import CodecError, decode, encode
from labrpc.network import (
    ClientEnd,
    Network,
    RawService,
    Server,
    Service,
    UnknownMethodError,
)

__all__ = [
    "ClientEnd", "CodecError", "Network", "RawService", "Server", "Service", "UnknownMethodError",
    "decode", "encode",
]
