"""Isolation building blocks: labrpc's raw-bytes path and the tester's restricted decoding.

The raw path must count exactly like the object path (the lab's RPC and byte
counts are graded), and the tester's decoder must refuse anything that could
run code or build an object chosen by a peer.
"""

from __future__ import annotations

import os
import pickle
import random
import socket
import threading

import pytest

from labrpc import Network, RawService, Server, Service, UnknownMethodError, decode, encode
from labtests.isolation import wire


class Echo:
    def echo(self, args):
        return {"got": args}


def _net_with(service) -> tuple[Network, object]:
    net = Network(rng=random.Random(1))
    srv = Server()
    srv.add_service(service)
    net.add_server("s", srv)
    end = net.make_end("e")
    net.connect("e", "s")
    net.enable("e", True)
    return net, end


def test_raw_path_counts_like_the_object_path():
    obj_net, obj_end = _net_with(Service(Echo(), name="Echo"))
    assert obj_end.call("Echo.echo", [1, 2, 3]) == {"got": [1, 2, 3]}

    seen = []

    def handler(method: str, request: bytes) -> bytes:
        seen.append((method, request))
        return encode({"got": decode(request)}, "reply")

    raw_net, raw_end = _net_with(RawService("Echo", ["echo"], handler))
    request = encode([1, 2, 3], "args")
    reply = raw_end.call_raw("Echo.echo", request)
    assert decode(reply) == {"got": [1, 2, 3]}
    assert seen == [("echo", request)]  # delivered as sent, never decoded by the network
    for net in (obj_net, raw_net):
        assert net.get_total_count() == 1
        assert net.get_count("s") == 1
    assert raw_net.get_total_bytes() == obj_net.get_total_bytes()
    obj_net.cleanup()
    raw_net.cleanup()


def test_raw_service_unknown_method_and_no_reply():
    errors = []
    net = Network(rng=random.Random(1), on_handler_error=lambda *a: errors.append(a))
    srv = Server()
    srv.add_service(RawService("Raft", ["vote"], lambda m, r: None))
    net.add_server(0, srv)
    end = net.make_end("x")
    net.connect("x", 0)
    net.enable("x", True)
    with pytest.raises(UnknownMethodError, match="service 'Raft' has vote"):
        end.call_raw("Raft.nope", b"")
    assert end.call_raw("Raft.vote", encode(1)) is None  # no reply: a lost reply, not an error
    assert errors == []
    assert net.get_count(0) == 2  # counted before the lookup, as in the lab
    net.cleanup()


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("value", [Boom(), threading.Lock, random.Random, {"a": Echo()}])
def test_plain_decoder_refuses_globals(value):
    try:
        payload = pickle.dumps(("result", 1, value), wire.PROTOCOL)
    except Exception:
        pytest.skip("not picklable at all")
    with pytest.raises(wire.WireError, match="refused to decode|undecodable"):
        wire.loads_plain(payload)


def test_plain_decoder_keeps_plain_data():
    value = ("apply", 3, (True, "x", 7, False, b"\x00", 0, 0), [1.5, None], {"k": {1, 2}})
    assert wire.loads_plain(pickle.dumps(value, wire.PROTOCOL)) == value


def test_connection_caps_frames_and_checks_types():
    a, b = socket.socketpair()
    ca, cb = wire.Connection(a), wire.Connection(b)
    try:
        a.sendall((wire.MAX_FRAME + 1).to_bytes(4, "big"))
        with pytest.raises(wire.WireError, match="exceeds"):
            cb.recv()
        with pytest.raises(wire.WireError, match="field 1: expected int, got bool"):
            wire.expect(("start", True), int)
        with pytest.raises(wire.WireError, match="2 fields, expected 1"):
            wire.expect(("start", 1, 2), int)
        ca.send(("x", 1))
    finally:
        ca.close()
        cb.close()
