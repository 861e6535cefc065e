"""The framing and encoding of every message between the tester and a peer process.

A message is one frame on a stream socket: a 4-byte big-endian length, then a
pickle of a tuple whose first item is the message's tag.  Both directions are
*decoded* with :func:`loads_plain`, a restricted unpickler whose ``find_class``
refuses every global: only builtin scalars and containers (None, bool, int,
float, str, bytes, tuple, list, dict, set) can come out of it, so a hostile
peer cannot make the tester construct an object, let alone run code (pickle
runs code only through callables it looks up by name, and every such lookup
goes through ``find_class``).  RPC requests and replies, which hold the
implementation's own classes, cross inside frames as opaque ``bytes``: the
tester counts and carries them and never decodes them.

Frames are capped (:data:`MAX_FRAME`), so a peer cannot make the tester
allocate without bound; every field a peer sends is checked for its type by the
receiver (:func:`expect`).
"""

from __future__ import annotations

import io
import pickle
import socket
import struct
import threading
from typing import Any

MAX_FRAME = 64 * 1024 * 1024  # bytes; a snapshot or a log this large is already a bug
PROTOCOL = 5
_HEADER = struct.Struct("!I")


class WireError(Exception):
    """The other side broke the protocol (bad frame, refused content, wrong types)."""


class Closed(Exception):
    """The other side closed the connection (or died)."""


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles builtin scalars and containers only; every global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise WireError(f"refused to decode {module}.{name}: only plain data may cross")


def dumps(message: tuple[Any, ...]) -> bytes:
    """Encode one message (a tuple of plain values) as a frame, header included."""
    payload = pickle.dumps(message, PROTOCOL)
    if len(payload) > MAX_FRAME:
        raise WireError(f"message of {len(payload)} bytes exceeds the {MAX_FRAME}-byte cap")
    return _HEADER.pack(len(payload)) + payload


def loads_plain(payload: bytes) -> Any:
    """Decode a frame's payload, refusing anything but plain data."""
    try:
        return _PlainUnpickler(io.BytesIO(payload)).load()
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed payload is the same error
        raise WireError(f"undecodable message: {exc!r}") from None


class Connection:
    """One end of a framed socket: thread-safe ``send``, single-reader ``recv``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._reader = sock.makefile("rb", buffering=1 << 16)

    def send(self, message: tuple[Any, ...]) -> None:
        """Send one message; raises :class:`Closed` if the other side is gone."""
        frame = dumps(message)
        try:
            with self._send_lock:
                self.sock.sendall(frame)
        except OSError as exc:
            raise Closed(str(exc)) from None

    def recv(self) -> tuple[Any, ...]:
        """Receive one message (a non-empty tuple whose first item is a str tag)."""
        try:
            header = self._reader.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise Closed("connection closed")
            (length,) = _HEADER.unpack(header)
            if length > MAX_FRAME:
                raise WireError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte cap")
            payload = self._reader.read(length)
        except (OSError, ValueError) as exc:
            raise Closed(str(exc)) from None
        if len(payload) < length:
            raise Closed("connection closed mid-message")
        message = loads_plain(payload)
        if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
            raise WireError(f"a message must be a tagged tuple, got {type(message).__name__}")
        return message

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.close()
        self.sock.close()


def expect(message: tuple[Any, ...], *types: type | tuple[type, ...]) -> tuple[Any, ...]:
    """Check a received message's arity and field types (tag excluded); return its fields.

    ``bool`` is not accepted where ``int`` is asked for, and vice versa, so a
    peer cannot pass ``True`` as an index.
    """
    fields = message[1:]
    if len(fields) != len(types):
        raise WireError(f"{message[0]!r} message has {len(fields)} fields, expected {len(types)}")
    for n, (value, kind) in enumerate(zip(fields, types, strict=True)):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (
            isinstance(value, bool) and bool not in kinds
        )
        if not ok:
            names = "/".join(k.__name__ for k in kinds)
            raise WireError(
                f"{message[0]!r} message field {n + 1}: expected {names}, "
                f"got {type(value).__name__}"
            )
    return fields
