"""Ports of labrpc's own tests (docs/network.md), plus the Python-specific error cases."""

from __future__ import annotations

import dataclasses
import random
import threading
import time

import pytest

from labrpc import ClientEnd, CodecError, Network, Server, Service, UnknownMethodError
from tests.fd_support import open_fds, opened_since


@dataclasses.dataclass
class JunkArgs:
    x: int = 0


@dataclasses.dataclass
class JunkReply:
    x: str = ""


class JunkServer:
    """The lab's test server: each handler exercises one aspect of dispatch."""

    def __init__(self) -> None:
        self.mu = threading.Lock()
        self.log1: list[str] = []
        self.log2: list[int] = []
        self.release_handler3 = threading.Event()  # so the "20 s" handler cannot leak

    def handler1(self, args: str) -> int:
        with self.mu:
            self.log1.append(args)
            return int(args)

    def handler2(self, args: int) -> str:
        with self.mu:
            self.log2.append(args)
            return f"handler2-{args}"

    def handler3(self, args: int) -> int:
        with self.mu:
            self.release_handler3.wait(20)
            return -args

    def handler4(self, args: JunkArgs) -> JunkReply:
        args.x += 1  # must not be visible to the caller: args are a deep copy
        return JunkReply("pointer")

    def handler6(self, args: str) -> int:
        return len(args)

    def handler7(self, args: int) -> str:
        return "y" * args

    def helper(self) -> None:
        """Not a handler: takes no argument."""

    def _private(self, args: int) -> int:
        return args


@pytest.fixture
def net():
    network = Network(random.Random(1))
    yield network
    network.cleanup()


def _serve(net: Network, name, junk: JunkServer | None = None) -> tuple[JunkServer, Server]:
    junk = junk or JunkServer()
    server = Server()
    server.add_service(Service(junk))
    net.add_server(name, server)
    return junk, server


def _end(net: Network, endname, servername, enabled: bool = True) -> ClientEnd:
    end = net.make_end(endname)
    net.connect(endname, servername)
    net.enable(endname, enabled)
    return end


def test_basic(net):
    _serve(net, "server99")
    end = _end(net, "end1-99", "server99")
    assert end.call("JunkServer.handler2", 111) == "handler2-111"
    assert end.call("JunkServer.handler1", "9099") == 9099


def test_types_and_deep_copy(net):
    _serve(net, "server99")
    end = _end(net, "end1-99", "server99")
    args = JunkArgs(7)
    reply = end.call("JunkServer.handler4", args)
    assert reply == JunkReply("pointer")
    assert args.x == 7, "the handler's change to its args reached the caller"
    assert end.call("JunkServer.handler2", [1, 2]) == "handler2-[1, 2]"


def test_disconnect(net):
    _serve(net, "server99")
    end = _end(net, "end1-99", "server99", enabled=False)
    t0 = time.monotonic()
    assert end.call("JunkServer.handler2", 111) is None
    assert time.monotonic() - t0 < 0.2, "without long delays a failure takes < 100 ms"
    net.enable("end1-99", True)
    assert end.call("JunkServer.handler1", "9099") == 9099


def test_counts(net):
    _serve(net, 99)
    end = _end(net, "end1-99", 99)
    for i in range(17):
        assert end.call("JunkServer.handler2", i) == f"handler2-{i}"
    assert net.get_count(99) == 17
    assert net.get_total_count() == 17


def test_bytes(net):
    _serve(net, 99)
    end = _end(net, "end1-99", 99)
    args = "x" * 284
    for _ in range(17):
        assert end.call("JunkServer.handler6", args) == 284
    first = net.get_total_bytes()
    assert 4828 <= first <= 6000, f"wrong byte count {first}"
    for _ in range(17):
        assert len(end.call("JunkServer.handler7", 107)) == 107
    delta = net.get_total_bytes() - first
    assert 1800 <= delta <= 2500, f"wrong byte count {delta}"


def test_concurrent_many(net):
    _, server = _serve(net, 1000)
    done: list[int] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        end = _end(net, i, 1000)
        for j in range(10):
            assert end.call("JunkServer.handler2", i * 100 + j) == f"handler2-{i * 100 + j}"
            with lock:
                done.append(j)

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 200
    assert net.get_count(1000) == 200 == server.get_count()


def test_unreliable(net):
    _serve(net, 1000)
    net.reliable(False)
    outcomes: list[bool] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        end = _end(net, i, 1000)
        reply = end.call("JunkServer.handler2", i * 100)
        if reply is not None:
            assert reply == f"handler2-{i * 100}"
        with lock:
            outcomes.append(reply is not None)

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 300
    assert any(outcomes) and not all(outcomes), f"{sum(outcomes)} of 300 succeeded"


def test_concurrent_one(net):
    junk, _ = _serve(net, 1000)
    end = _end(net, "c", 1000)
    replies: list[str | None] = [None] * 20

    def client(i: int) -> None:
        replies[i] = end.call("JunkServer.handler2", 100 + i)

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [f"handler2-{100 + i}" for i in range(20)]
    assert len(junk.log2) == 20
    assert net.get_count(1000) == 20


def test_regression1(net):
    """Failed calls on a disabled end must neither hold the end up nor arrive late."""
    junk, _ = _serve(net, 1000)
    end = _end(net, "c", 1000, enabled=False)
    early = [threading.Thread(target=end.call, args=("JunkServer.handler2", 100 + i),
                              name=f"early-{i}") for i in range(20)]
    for t in early:
        t.start()
    time.sleep(0.1)
    net.enable("c", True)
    t0 = time.monotonic()
    assert end.call("JunkServer.handler2", 99) == "handler2-99"
    elapsed = time.monotonic() - t0
    assert elapsed <= 0.03, f"a call on a re-enabled end took {elapsed:.3f}s"
    for t in early:
        t.join()
    assert len(junk.log2) == 1, f"early calls were delivered late: {junk.log2}"
    assert net.get_count(1000) == 1


def test_killed(net):
    """A call in flight to a deleted server fails within 100 ms."""
    junk, _ = _serve(net, "server99")
    end = _end(net, "end1-99", "server99")
    outcome: list[object] = []
    caller = threading.Thread(
        target=lambda: outcome.append(end.call("JunkServer.handler3", 99)), name="killed-caller"
    )
    caller.start()
    try:
        time.sleep(1.0)
        assert not outcome, "handler3 returned early"
        time.sleep(0.1)
        assert not outcome, "handler3 returned early"
        net.delete_server("server99")
        t0 = time.monotonic()
        caller.join(1.0)
        elapsed = time.monotonic() - t0
        assert outcome == [None], "a call to a deleted server must fail"
        assert elapsed <= 0.1, f"the call took {elapsed:.3f}s to fail after delete_server"
    finally:
        junk.release_handler3.set()


def test_disabled_end_fails_in_flight_call(net):
    junk, _ = _serve(net, "s")
    end = _end(net, "e", "s")
    outcome: list[object] = []
    caller = threading.Thread(target=lambda: outcome.append(end.call("JunkServer.handler3", 5)),
                              name="disabled-caller")
    caller.start()
    try:
        time.sleep(0.2)
        net.enable("e", False)
        t0 = time.monotonic()
        caller.join(1.0)
        assert outcome == [None]
        assert time.monotonic() - t0 <= 0.15
    finally:
        junk.release_handler3.set()


def test_long_delays_failure_takes_up_to_seven_seconds():
    net = Network(random.Random(3))
    net.long_delays(True)
    end = net.make_end("e")  # never connected
    delays = []
    try:
        for _ in range(5):
            t0 = time.monotonic()
            assert end.call("JunkServer.handler2", 1) is None
            delays.append(time.monotonic() - t0)
            if delays[-1] > 0.15:
                break
        assert max(delays) > 0.15, f"long delays never exceeded 100 ms: {delays}"
        assert max(delays) < 7.1
    finally:
        net.cleanup()


def test_cleanup_wakes_waiting_calls_and_ends_worker_threads():
    before = set(threading.enumerate())
    net = Network(random.Random(4))
    net.long_delays(True)
    junk, _ = _serve(net, "s")
    live = _end(net, "live", "s")
    dead = net.make_end("dead")
    outcomes: list[object] = []
    callers = [
        threading.Thread(target=lambda: outcomes.append(live.call("JunkServer.handler3", 1)),
                         name="caller-live"),
        threading.Thread(target=lambda: outcomes.append(dead.call("JunkServer.handler2", 1)),
                         name="caller-dead"),
    ]
    for c in callers:
        c.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    net.cleanup()
    for c in callers:
        c.join(1.0)
    assert time.monotonic() - t0 < 0.3, "cleanup must wake waiting calls within 100 ms"
    assert outcomes == [None, None]
    assert live.call("JunkServer.handler2", 1) is None, "calls after cleanup fail"
    junk.release_handler3.set()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        leftover = [t for t in set(threading.enumerate()) - before if t.is_alive()]
        if not leftover:
            break
        time.sleep(0.02)
    assert not leftover, f"threads left after cleanup: {[t.name for t in leftover]}"


def test_delete_end_fails_pending_long_delay_at_once():
    net = Network(random.Random(5))
    net.long_delays(True)
    end = net.make_end("e")
    outcome: list[object] = []
    durations: list[float] = []

    def caller() -> None:
        t0 = time.monotonic()
        for _ in range(20):  # repeat until one call is in a long wait
            outcome.append(end.call("X.y", 1))
            if end._gone.is_set():
                break
        durations.append(time.monotonic() - t0)

    thread = threading.Thread(target=caller, name="delete-end-caller")
    thread.start()
    time.sleep(0.3)
    net.delete_end("e")
    thread.join(2.0)
    assert not thread.is_alive()
    assert set(outcome) == {None}
    net.cleanup()


def test_duplicate_end_name_is_a_clear_error(net):
    net.make_end("a")
    with pytest.raises(ValueError, match="an end named 'a' already exists"):
        net.make_end("a")


def test_unknown_method_names_the_available_ones(net):
    _serve(net, "s")
    end = _end(net, "e", "s")
    with pytest.raises(UnknownMethodError) as err:
        end.call("JunkServer.handler9", 1)
    message = str(err.value)
    assert "handler9" in message and "handler1" in message and "handler7" in message
    assert "helper" not in message and "_private" not in message


def test_unknown_service_names_the_available_ones(net):
    _serve(net, "s")
    end = _end(net, "e", "s")
    with pytest.raises(UnknownMethodError, match=r"'Raft'.*JunkServer"):
        end.call("Raft.request_vote", 1)


@dataclasses.dataclass
class Entry:
    term: int
    command: object


@dataclasses.dataclass
class Args:
    entries: list


def test_unencodable_args_name_the_field_path(net):
    _serve(net, "s")
    end = _end(net, "e", "s")
    args = Args([Entry(1, 1), Entry(1, 2), Entry(1, 3), Entry(2, threading.Lock())])
    with pytest.raises(CodecError, match=r"args\.entries\[3\]\.command: threading\.Lock"):
        end.call("JunkServer.handler2", args)
    assert net.get_total_count() == 0, "a refused request never entered the network"


class Faulty:
    def boom(self, args: int) -> int:
        raise RuntimeError(f"boom {args}")

    def silent(self, args: int) -> None:
        return None

    def leaky(self, args: int) -> object:
        return threading.Lock()


def test_handler_errors_fail_the_call_and_are_reported():
    reported: list[tuple[str, str]] = []
    call_errors: list[tuple[str, object, str, str]] = []
    net = Network(random.Random(6), on_handler_error=lambda m, e, tb: reported.append((m, str(e))),
                  on_call_error=lambda *a: call_errors.append(a))
    server = Server()
    server.add_service(Service(Faulty()))
    net.add_server("s", server)
    end = _end(net, "e", "s")
    try:
        assert end.call("Faulty.boom", 3) is None
        assert end.call("Faulty.silent", 3) is None
        assert end.call("Faulty.leaky", 3) is None
    finally:
        net.cleanup()
    assert reported[0] == ("Faulty.boom", "boom 3")
    assert reported[1][0] == "Faulty.silent" and "returned None" in reported[1][1]
    assert len(reported) == 2, reported  # a reply that cannot be encoded is a codec error
    assert call_errors == [
        ("codec", "e", "Faulty.leaky", "reply: threading.Lock cannot cross a network")
    ]


def test_codec_and_unknown_method_errors_are_reported_with_the_end():
    """The caller still gets the exception, and the network tells its owner too,
    so a Raft that swallows the exception cannot hide the cause."""
    call_errors: list[tuple[str, object, str, str]] = []
    net = Network(random.Random(7), on_call_error=lambda *a: call_errors.append(a))
    _serve(net, "s")
    end = _end(net, "e", "s")
    try:
        with pytest.raises(CodecError):
            end.call("JunkServer.handler2", {"mu": threading.RLock()})
        with pytest.raises(UnknownMethodError):
            end.call("JunkServer.nope", 1)
        with pytest.raises(UnknownMethodError):
            end.call("Nope.handler1", 1)
    finally:
        net.cleanup()
    assert [(k, e, m) for k, e, m, _ in call_errors] == [
        ("codec", "e", "JunkServer.handler2"),
        ("unknown-method", "e", "JunkServer.nope"),
        ("unknown-method", "e", "Nope.handler1"),
    ]
    assert call_errors[0][3] == "args['mu']: threading.RLock cannot cross a network"
    assert "unknown method 'nope'" in call_errors[1][3]


class GoStyle:
    """Handlers written as in Go: (args, reply) and no return value."""

    def request_vote(self, args, reply):  # noqa: ANN001
        reply["granted"] = True

    def append_entries(self, args):  # noqa: ANN001
        return {"ok": True}

    def tick(self):
        pass

    def install(self, *, args):  # noqa: ANN001
        return args


def test_method_skipped_for_its_signature_says_why(net):
    server = Server()
    service = Service(GoStyle(), name="Raft")
    server.add_service(service)
    net.add_server("s", server)
    end = _end(net, "e", "s")
    assert service.method_names() == ["append_entries"]
    assert service.skipped() == {
        "install": "takes (*, args)", "request_vote": "takes 2 parameters",
        "tick": "takes no parameters",
    }
    with pytest.raises(UnknownMethodError) as err:
        end.call("Raft.request_vote", {"term": 1})
    message = str(err.value)
    assert "request_vote takes 2 parameters; handlers take one args object and return the " \
           "reply" in message, message
    assert "service 'Raft' has append_entries" in message


def test_handler_table_is_read_once_per_class_and_again_after_a_patch(monkeypatch):
    """The signatures of a class are read for its first Service only (a harness makes one
    per peer start), but a method replaced, added or deleted afterwards is seen: a cached
    table must never hand out a handler the class no longer has, or hide a new one."""
    import labrpc.network as network

    class Peer:
        def request_vote(self, args):  # noqa: ANN001
            return {"vote": args}

        def tick(self):
            pass

    calls: list[str] = []
    real = network.signature_problem
    monkeypatch.setattr(network, "signature_problem",
                        lambda fn: calls.append(fn.__name__) or real(fn))
    first, second = Service(Peer()), Service(Peer())
    assert calls == ["request_vote", "tick"]  # the second Service read nothing
    assert first.method_names() == second.method_names() == ["request_vote"]
    assert second.skipped() == {"tick": "takes no parameters"}

    def tick(self, args, reply):  # noqa: ANN001 - Go style: left out, with the reason
        return None

    Peer.tick = tick
    Peer.append_entries = lambda self, args: {"ok": args}
    del Peer.request_vote
    patched = Service(Peer())
    assert patched.method_names() == ["append_entries"]
    assert patched.skipped() == {"tick": "takes 2 parameters"}
    assert first.method_names() == ["request_vote"]  # a Service made before keeps its own

    class Child(Peer):  # a subclass has its own table, and a patched base reaches it
        pass

    assert Service(Child()).method_names() == ["append_entries"]
    Peer.request_vote = lambda self, args: args
    assert Service(Child()).method_names() == ["append_entries", "request_vote"]
    # handler_names (explore's proxy of a Raft's handlers) is the same table
    assert list(network.handler_names(Child)) == ["append_entries", "request_vote"]


def test_enable_many_is_enable_per_name_and_wakes_only_the_calls_it_kills(net):
    """connect/disconnect switch many ends in one network call: the routes end up as with
    one enable() per name, a disable ends the waits of calls on those ends at once (not
    the others'), and an unknown name raises KeyError after switching the names before it."""
    junk, _server = _serve(net, "s")
    ends = {name: _end(net, name, "s", enabled=False) for name in ("a", "b", "c")}
    net.enable_many(["a", "b"], True)
    assert ends["a"].call("JunkServer.handler2", 1) == "handler2-1"
    assert ends["b"].call("JunkServer.handler2", 2) == "handler2-2"
    t0 = time.monotonic()
    assert ends["c"].call("JunkServer.handler2", 3) is None  # still disabled
    assert time.monotonic() - t0 < 1.0  # unreachable: fails after U[0, 99] ms
    outcomes: dict[str, list[object]] = {"a": [], "b": []}
    callers = [threading.Thread(target=lambda n=n: outcomes[n].append(
        ends[n].call("JunkServer.handler3", 7)), name=f"caller-{n}") for n in ("a", "b")]
    try:
        for t in callers:
            t.start()
        deadline = time.monotonic() + 5.0
        while net.get_count("s") < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert net.get_count("s") == 4, "both handler3 calls delivered"
        t0 = time.monotonic()
        net.enable_many(["a"], False)
        callers[0].join(2.0)
        assert outcomes["a"] == [None] and time.monotonic() - t0 < 1.0, \
            "a disabled end's waiting call fails at once"
        time.sleep(0.1)
        assert callers[1].is_alive() and outcomes["b"] == [], "b's call was not on a killed end"
        with pytest.raises(KeyError, match="no end named 'nope'"):
            net.enable_many(["b", "nope", "c"], False)
        callers[1].join(2.0)
        assert outcomes["b"] == [None], "b was switched off before the unknown name"
        assert ends["c"].call("JunkServer.handler2", 4) is None  # c, after it, untouched
    finally:
        junk.release_handler3.set()
        for t in callers:
            t.join(5.0)


def test_unknown_method_suggests_the_snake_case_name(net):
    _serve(net, "s")
    end = _end(net, "e", "s")
    with pytest.raises(UnknownMethodError, match=r"'Handler2'.*did you mean 'handler2'\?"):
        end.call("JunkServer.Handler2", 1)


def test_local_class_is_reported_with_its_path(net):
    def make():
        class Local:
            pass

        return Local()

    _serve(net, "s")
    end = _end(net, "e", "s")
    with pytest.raises(CodecError, match=r"args\[1\]: .*Local cannot be encoded"):
        end.call("JunkServer.handler2", [1, make()])


def test_reply_bytes_counted_only_when_delivered(net):
    _serve(net, "s")
    end = _end(net, "e", "s")
    end.call("JunkServer.handler7", 0)
    with_reply = net.get_total_bytes()
    net.delete_server("s")
    end.call("JunkServer.handler7", 0)
    request_only = net.get_total_bytes() - with_reply
    assert 0 < request_only < with_reply, "a failed call counts its request bytes only"
    assert net.get_total_count() == 2


def test_long_reordering_delays_most_replies():
    net = Network(random.Random(7))
    net.long_reordering(True)
    _serve(net, "s")
    end = _end(net, "e", "s")
    slow = 0
    try:
        for i in range(9):
            t0 = time.monotonic()
            assert end.call("JunkServer.handler2", i) == f"handler2-{i}"
            elapsed = time.monotonic() - t0
            assert elapsed < 2.3
            slow += elapsed >= 0.2
    finally:
        net.cleanup()
    assert 2 <= slow <= 9, f"{slow} of 9 replies were delayed (expected about 6)"


# -- death notices instead of polling (labrpc/network.py step 4) ----------------------


def _voluntary_switches(thread: threading.Thread) -> int:
    """How many times ``thread`` went to sleep so far (Linux: /proc)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def _call_in_thread(end: ClientEnd, method: str, arg, name: str):  # noqa: ANN001, ANN202
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(end.call(method, arg)), name=name)
    thread.start()
    return thread, outcome


@pytest.mark.skipif(not hasattr(threading.Thread, "native_id") or not
                    __import__("os").path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_a_caller_waiting_for_a_slow_handler_sleeps_without_polling(net):
    """The old caller woke every 100 ms to look at the server; now it sleeps until told."""
    junk, _ = _serve(net, "s")
    end = _end(net, "e", "s")
    thread, outcome = _call_in_thread(end, "JunkServer.handler3", 4, "sleeping-caller")
    try:
        time.sleep(0.2)  # the caller is waiting for handler3 by now
        before = _voluntary_switches(thread)
        time.sleep(1.0)
        during = _voluntary_switches(thread) - before
        assert not outcome
        assert during <= 2, f"the waiting caller woke {during} times in 1 s (a poll?)"
        net.delete_server("s")
        thread.join(0.5)
        assert outcome == [None]
    finally:
        junk.release_handler3.set()


@pytest.mark.parametrize("kill", ["delete_server", "replace_server", "disable", "delete_end"])
def test_every_route_death_fails_an_in_flight_call_at_once(net, kill):
    junk, _ = _serve(net, "s")
    end = _end(net, "e", "s")
    other, _ = _serve(net, "other")
    bystander_end = _end(net, "b", "other")
    thread, outcome = _call_in_thread(end, "JunkServer.handler3", 1, "dying-caller")
    bystander, bystander_outcome = _call_in_thread(bystander_end, "JunkServer.handler3", 2,
                                                   "bystander")
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        if kill == "delete_server":
            net.delete_server("s")
        elif kill == "replace_server":
            _serve(net, "s")  # a restarted server under the same name
        elif kill == "disable":
            net.enable("e", False)
        else:
            net.delete_end("e")
        thread.join(1.0)
        assert outcome == [None], f"{kill}: the in-flight call must fail"
        assert time.monotonic() - t0 < 0.1, f"{kill}: the call took too long to fail"
        assert net.get_count("other") == 1
        assert not bystander_outcome, f"{kill} ended an unrelated call"
    finally:
        junk.release_handler3.set()
        other.release_handler3.set()
    bystander.join(1.0)
    assert bystander_outcome == [-2], "the unrelated call completes normally"


def test_a_disconnect_and_reconnect_during_the_handler_still_fails_the_call(net):
    """The notice is not a sample: a flap shorter than the old 100 ms poll is not missed."""
    junk, _ = _serve(net, "s")
    end = _end(net, "e", "s")
    thread, outcome = _call_in_thread(end, "JunkServer.handler3", 1, "flap-caller")
    try:
        time.sleep(0.2)
        net.enable("e", False)
        net.enable("e", True)
        thread.join(1.0)
        assert outcome == [None]
    finally:
        junk.release_handler3.set()
    assert end.call("JunkServer.handler2", 3) == "handler2-3"  # the route works again


def test_a_route_dead_before_delivery_still_runs_and_counts_the_handler():
    """State is read once: a route found alive, then disabled during the request delay, is
    still delivered to the snapshot's server (its handler runs and counts), and the call
    fails.  The observer holds each request at "sent" (after the delay, before the route
    is looked at again) until the end is disabled, so the order is certain on any machine
    instead of "usually within the 0-26 ms delay"."""
    net = Network(random.Random(8))
    net.reliable(False)  # the request delay (and the 10 % drops) of an unreliable network
    junk, server = _serve(net, "s")
    end = _end(net, "e", "s")
    reached: list[str] = []
    at_delivery = threading.Event()
    disabled = threading.Event()

    def hold_until_disabled(endname, servername, svc_meth, outcome, nbytes):  # noqa: ANN001, ANN202
        if outcome in ("sent", "dropped"):  # the request's delay is over
            reached.append(outcome)
            at_delivery.set()
            if outcome == "sent":
                assert disabled.wait(10), "the test never disabled the end"

    net.on_rpc = hold_until_disabled
    try:
        for i in range(40):
            at_delivery.clear()
            disabled.clear()
            net.enable("e", True)
            thread, outcome = _call_in_thread(end, "JunkServer.handler2", i, f"early-{i}")
            assert at_delivery.wait(10), "the request never got past its delay"
            net.enable("e", False)
            disabled.set()
            thread.join(10)
            assert outcome == [None], "a call whose end was disabled meanwhile never succeeds"
        sent = reached.count("sent")
        assert sent >= 20, f"only {sent} of 40 requests were delivered: the case is untested"
        deadline = time.monotonic() + 5  # a failed call does not wait for its handler
        while (len(junk.log2) < sent or server.get_count() < sent) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.get_count() == sent  # delivered to the server found alive: counted
        assert len(junk.log2) == sent  # every delivered request ran its handler
        assert net.get_total_count() == 40
    finally:
        disabled.set()
        net.cleanup()


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/fd"), reason="needs /proc")
def test_cleanup_closes_every_pipe_of_the_network():
    before = open_fds()
    net = Network(random.Random(9))
    junk, _ = _serve(net, "s")
    ends = [_end(net, f"e{i}", "s") for i in range(8)]
    threads = [threading.Thread(target=lambda e=e: [e.call("JunkServer.handler2", j)
                                                    for j in range(50)]) for e in ends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(junk.log2) == 400
    assert opened_since(before)  # pipes in use: the handler pool's and the callers'
    net.cleanup()
    deadline = time.monotonic() + 2
    while opened_since(before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert opened_since(before) == set(), "cleanup left pipes open"


def test_under_patched_threading_the_network_hands_off_through_threading(monkeypatch):
    """Simulated time and the race detector patch threading: no pipe may be used then."""
    real_lock = threading.Lock
    monkeypatch.setattr(threading, "Lock", lambda: real_lock())
    net = Network(random.Random(10))
    assert net._pipes is None and net._pool._queue is not None
    junk, _ = _serve(net, "s")
    end = _end(net, "e", "s")
    assert end.call("JunkServer.handler2", 7) == "handler2-7"
    thread, outcome = _call_in_thread(end, "JunkServer.handler3", 1, "patched-caller")
    try:
        time.sleep(0.2)
        net.delete_server("s")
        thread.join(1.0)
        assert outcome == [None]
    finally:
        junk.release_handler3.set()
        net.cleanup()


# -- on_rpc: the traffic observer of the failure timeline ------------------------------------


def _observed(net: Network) -> list[tuple]:
    seen: list[tuple] = []
    net.on_rpc = lambda *a: seen.append(a)
    return seen


def test_on_rpc_sees_each_request_and_its_reply_with_bytes(net):
    _serve(net, "s")
    seen = _observed(net)
    end = _end(net, "e", "s")
    assert end.call("JunkServer.handler2", 7) == "handler2-7"
    (e1, s1, m1, o1, b1), (e2, s2, m2, o2, b2) = seen
    assert (e1, s1, m1, o1) == ("e", "s", "JunkServer.handler2", "sent")
    assert (e2, s2, m2, o2) == ("e", "s", "JunkServer.handler2", "replied")
    assert b1 + b2 == net.get_total_bytes(), "the observer's bytes are the network's bytes"


def test_on_rpc_names_unreachable_failed_and_unknown_outcomes(net):
    _serve(net, "s")
    seen = _observed(net)
    _end(net, "off", "s", enabled=False).call("JunkServer.handler2", 1)
    net.make_end("loose")  # never connected
    net.enable("loose", True)
    net._ends["loose"].call("JunkServer.handler2", 1)
    end = _end(net, "e", "s")
    with pytest.raises(UnknownMethodError):
        end.call("JunkServer.nope", 1)
    net.delete_server("s")
    end.call("JunkServer.handler2", 1)
    outcomes = [(a[0], a[1], a[3]) for a in seen]
    assert outcomes == [
        ("off", "s", "unreachable"), ("loose", None, "unreachable"),
        ("e", "s", "sent"), ("e", "s", "failed"),  # the unknown method
        ("e", "s", "unreachable"),  # the server is gone
    ]
    assert [a[4] for a in seen if a[3] == "failed"] == [0]


def test_on_rpc_sees_every_unreliable_loss_exactly_once():
    net = Network(random.Random(3))
    _serve(net, "s")
    net.reliable(False)
    seen = _observed(net)
    end = _end(net, "e", "s")
    try:
        replies = [end.call("JunkServer.handler2", i) for i in range(300)]
    finally:
        net.cleanup()
    kinds = [a[3] for a in seen]
    requests = [k for k in kinds if k in ("sent", "dropped", "unreachable")]
    assert len(requests) == 300 == net.get_total_count(), "one request event per call"
    assert kinds.count("sent") == kinds.count("replied") + kinds.count("reply-lost") \
        + kinds.count("failed"), "one reply event per delivered request"
    assert kinds.count("replied") == sum(r is not None for r in replies)
    assert kinds.count("dropped") > 5 and kinds.count("reply-lost") > 5, kinds.count("dropped")


def test_a_broken_observer_changes_no_call(net, capsys):
    _serve(net, "s")

    def hostile(*_a):
        raise RuntimeError("observer bug")

    net.on_rpc = hostile
    end = _end(net, "e", "s")
    assert end.call("JunkServer.handler2", 5) == "handler2-5"
    assert "observer bug" in capsys.readouterr().err


def test_on_rpc_draws_nothing_from_the_network_random_stream():
    """Observing must not change which faults a seed makes (the simulated schedule)."""
    def run(observe: bool) -> list[object]:
        net = Network(random.Random(11))
        _serve(net, "s")
        net.reliable(False)
        if observe:
            net.on_rpc = lambda *a: None
        end = _end(net, "e", "s")
        try:
            return [end.call("JunkServer.handler2", i) for i in range(60)]
        finally:
            net.cleanup()

    assert run(True) == run(False)


def test_on_rpc_sees_call_async_requests_and_replies_once_each():
    net = Network(random.Random(4))
    _serve(net, "s")
    net.reliable(False)
    seen = _observed(net)
    end = _end(net, "e", "s")
    _end(net, "off", "s", enabled=False)
    done: list[object] = []
    finished = threading.Event()

    def callback(reply: object) -> None:
        done.append(reply)
        if len(done) == 120:
            finished.set()

    try:
        for i in range(100):
            end.call_async("JunkServer.handler2", i, callback)
        for i in range(20):
            net._ends["off"].call_async("JunkServer.handler2", i, callback)
        assert finished.wait(30), f"{len(done)} of 120 callbacks"
    finally:
        net.cleanup()
    kinds = [a[3] for a in seen]
    assert sum(k in ("sent", "dropped", "unreachable") for k in kinds) == 120
    assert kinds.count("unreachable") >= 20
    assert kinds.count("sent") == sum(k in ("replied", "reply-lost", "failed") for k in kinds)
    assert kinds.count("replied") == sum(r is not None for r in done)


# -- session 5 (issue 19): the merged lock holds and the handler cache keep every count ---


def test_bytes_and_counts_stay_exact_while_routes_die_under_reliable_calls():
    """Real time, reliable: registration shares step 2's lock hold and the reply bytes
    the last route check's.  Whatever a racing disable/delete does, the network's bytes
    are exactly the requests plus the replies delivered, and every counted RPC ran."""
    from labrpc.codec import encode

    net = Network(random.Random(11))
    junk, server = _serve(net, "s")
    ends = [_end(net, f"e{i}", "s") for i in range(6)]
    outcomes: dict[int, list[object]] = {i: [] for i in range(6)}
    stop = threading.Event()

    def caller(i: int) -> None:
        for j in range(150):
            outcomes[i].append((j, ends[i].call("JunkServer.handler2", j)))

    def killer() -> None:
        rng = random.Random(5)
        while not stop.is_set():
            name = f"e{rng.randrange(6)}"
            net.enable(name, False)
            time.sleep(0.0005)
            net.enable(name, True)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(6)]
    chaos = threading.Thread(target=killer)
    try:
        chaos.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stop.set()
        chaos.join(10)
        assert not any(t.is_alive() for t in threads)
        calls = [(j, reply) for i in outcomes for j, reply in outcomes[i]]
        assert len(calls) == 900 and net.get_total_count() == 900
        delivered = [(j, r) for j, r in calls if r is not None]
        assert all(r == f"handler2-{j}" for j, r in delivered)
        assert 0 < len(delivered) < 900, "the race never happened: make the killer faster"
        expected = sum(len(encode(j, "args")) for j, _ in calls) + sum(
            len(encode(r, "reply")) for _, r in delivered)
        assert net.get_total_bytes() == expected
        deadline = time.monotonic() + 5  # failed calls do not wait for their handlers
        while len(junk.log2) < server.get_count() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(junk.log2) == server.get_count() >= len(delivered)
    finally:
        stop.set()
        net.cleanup()


def test_a_service_added_or_replaced_after_calls_is_the_one_called(net):
    """The server caches each "Service.method"'s handler; add_service must drop it."""
    class Other:
        def ping(self, args: int) -> str:
            return f"other-{args}"

    class Replacement:
        def handler2(self, args: int) -> str:
            return f"replaced-{args}"

    _, server = _serve(net, "s")
    end = _end(net, "e", "s")
    assert end.call("JunkServer.handler2", 1) == "handler2-1"
    with pytest.raises(UnknownMethodError, match="unknown service 'Other'"):
        end.call("Other.ping", 1)
    server.add_service(Service(Other()))
    assert end.call("Other.ping", 2) == "other-2"
    server.add_service(Service(Replacement(), name="JunkServer"))
    assert end.call("JunkServer.handler2", 3) == "replaced-3"
    with pytest.raises(UnknownMethodError, match="unknown method 'handler1'"):
        end.call("JunkServer.handler1", "4")  # the old service's other methods are gone
    assert server.get_count() == 5  # unknown ones counted too, as in the lab


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/fd"), reason="needs /proc")
def test_pipes_given_back_while_the_stock_closes_are_all_closed():
    """PipeStock has no lock: a give racing close() must still close every pipe."""
    from labrpc.wake import PipeStock

    before = open_fds()
    for _ in range(20):
        stock = PipeStock()
        taken = [stock.take() for _ in range(40)]
        start = threading.Barrier(5)

        def give_back(part: list, s: PipeStock = stock, b: threading.Barrier = start) -> None:
            b.wait()
            for pipe in part:
                s.give(pipe)

        givers = [threading.Thread(target=give_back, args=(taken[k::4],)) for k in range(4)]
        for g in givers:
            g.start()
        start.wait()
        stock.close()
        for g in givers:
            g.join(10)
        assert stock._free == []
    assert opened_since(before) == set(), "a pipe given back during close() stayed open"


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/fd"), reason="needs /proc")
def test_the_pool_runs_every_accepted_task_while_it_closes_and_leaves_nothing():
    """Idle pool threads register without a lock now: submits racing close() must still
    run every task they were promised exactly once, and no thread or pipe may stay."""
    from labrpc.pool import ThreadPool

    before = open_fds()
    for round_ in range(15):
        name = f"test-s5-pool-close-{round_}"
        pool = ThreadPool(name)
        ran: list[tuple[int, int]] = []
        accepted: list[tuple[int, int]] = []
        start = threading.Barrier(5)

        def submitter(k: int, p: ThreadPool = pool, b: threading.Barrier = start,
                      ran: list = ran, accepted: list = accepted) -> None:
            b.wait()
            for i in range(300):
                if not p.submit(lambda k=k, i=i: ran.append((k, i))):
                    return
                accepted.append((k, i))
                if i % 7 == 0:
                    time.sleep(0)  # let pool threads go idle and re-register

        threads = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        start.wait()
        time.sleep(0.002 * (round_ % 4))  # close early, mid-way or late
        pool.close()
        for t in threads:
            t.join(10)
        deadline = time.monotonic() + 5
        while (any(t.name.startswith(name) for t in threading.enumerate())
               and time.monotonic() < deadline):
            time.sleep(0.01)
        assert not [t.name for t in threading.enumerate() if t.name.startswith(name)]
        assert sorted(ran) == sorted(accepted), "an accepted task did not run exactly once"
        assert not pool.submit(lambda: None)
    assert opened_since(before) == set(), "a closed pool left its pipe open"
