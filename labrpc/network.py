"""labrpc: a fake network that can lose requests, lose replies, delay messages,
and entirely disconnect particular hosts.  A port of the lab's labrpc.go.

Objects:

* :class:`Network` holds the ends, the servers and the fault flags.
* :class:`ClientEnd` is one host's way to reach one server: ``end.call(
  "Raft.append_entries", args)`` returns the reply object, or ``None`` when the
  request or the reply was lost, the end is disabled or unconnected, or the
  server is dead.  There is no timeout inside ``call``: the network always
  produces an outcome.
* :class:`Server` is a set of :class:`Service` objects plus a count of the RPCs
  delivered to it; a Service wraps a receiver object whose public one-argument
  methods are its handlers.

What happens to one call (the caller's own thread plays the part of Go's
per-request goroutine, so a delay never holds up another request):

1. The args are encoded (:mod:`labrpc.codec`): the handler gets a deep copy.
   The network's total count goes up by 1 and its total bytes by the request
   length, whatever happens next.
2. The end's state is read once: enabled?  connected to which server?  does
   that server exist?  (It is not re-read after the delays below.)
3. Unreachable (disabled, unconnected, or no server): fail after a random
   0-99 ms, or 0-6999 ms when ``long_delays`` is on (the Raft tester always
   turns it on, so a leader that sends RPCs synchronously is caught out).
   ``on_rpc`` (below) hears ``"unreachable"`` before the delay.
4. Reachable: when unreliable, wait 0-26 ms, then drop the request with
   probability 10 % (the handler never runs).  Otherwise the server counts the
   RPC and runs the handler on a pool thread, concurrently with every other
   handler.  The caller sleeps until the handler returns or the server dies
   (its end is disabled, or the server is deleted or replaced, or the end
   deleted, or the network cleaned up): each of those changes wakes the calls
   in flight on that route at once, so a dead server's call fails at once --
   even when the route comes back before the handler returns -- while its
   handler runs on and is ignored, and a client never hears from an instance
   whose persister was replaced.  (Go's caller polls every 100 ms instead.)
   A route that died between step 2
   and the delivery still gets its handler run and counted, and the call
   fails without waiting for it.  ``on_rpc`` hears ``"dropped"``, or
   ``"sent"`` just before the handler is handed over.
5. After the handler: fail if the server is dead; when unreliable, lose the
   reply with probability 10 % (the handler did run); when ``long_reordering``
   is on, delay 2/3 of replies by 200 + U[0, U[0, 1999]] ms.  The reply bytes
   count only when the reply is delivered.  ``on_rpc`` hears ``"replied"``,
   ``"reply-lost"`` or ``"failed"``.

Every random draw comes from the ``random.Random`` the network is given, so a
test's seed decides the faults (their real-time interleaving still varies).

Python decisions (docs/network.md): an unknown service or method makes
``call`` raise :class:`UnknownMethodError` listing what is available, and
naming the reason when a method of that name was left out for its signature
(Go exits the process); args that cannot be encoded make ``call`` raise
:class:`~labrpc.codec.CodecError` (Go panics), and a reply that cannot be
encoded fails the call.  Both kinds are also reported to ``on_call_error``
with the end's name, because a Raft that swallows the exception in its own
thread must not hide the cause of the failure it provokes.  A handler that
raises, or returns ``None`` instead of a reply, is reported to
``on_handler_error`` and its call fails.  After :meth:`Network.cleanup` or
:meth:`Network.delete_end`, waiting calls fail at once, so no caller thread
outlives a test.  How a caller and a handler thread wake each other (a pipe
in real time, ``threading`` when it is patched) is :mod:`labrpc.wake`'s
business; it changes the cost of a call, not its outcome.

Watching the traffic (the failure timeline, labtests.timeline): when
:attr:`Network.on_rpc` is set it is called (on the thread doing that step:
the caller's, or for ``call_async`` the network's) with
``(end name, server name, "Service.method", outcome, bytes)`` once when the
request's fate is known -- ``"unreachable"`` (step 3, before the failure
delay), ``"dropped"`` (step 4) or ``"sent"`` (delivered to the server, its
handler about to run) -- and, for a sent request, once more when the reply's
fate is known: ``"replied"`` (with the reply bytes), ``"reply-lost"`` (step 5)
or ``"failed"`` (dead server, handler error or no reply; 0 bytes).  Two
calls, not one at the end, so that each is timed when it happens on the wire
(a reordered reply comes up to 2.2 s after its request, an unreachable
failure up to 7 s after the send).  It must be quick and must not block; an
exception it raises is printed and ignored.  Unset (``None``, the default) it
costs one test per step.

Raw bytes (for peers in other processes, see ``labtests.isolation``): a
:class:`RawService` receives the request bytes and returns the reply bytes
(or ``None``: no reply), and :meth:`ClientEnd.call_raw` sends bytes someone
else encoded and returns the reply bytes undecoded.  Everything else, counts
and bytes included, is exactly as above: the network never decodes them.
"""

from __future__ import annotations

import inspect
import random
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from labrpc.codec import CodecError, decode, encode
from labrpc.pool import ThreadPool
from labrpc.timer import Timer
from labrpc.wake import PipeStock, Rendezvous, real_threading

SHORT_DELAY_MS = 27  # unreliable request delay: U[0, 26] ms
DROP_PER_MILLE = 100  # unreliable: 10 % of requests and 10 % of replies are lost
SHORT_FAILURE_DELAY_MS = 100  # unreachable target: fail after U[0, 99] ms ...
LONG_FAILURE_DELAY_MS = 7000  # ... or U[0, 6999] ms with long_delays
REORDER_CHANCE = (600, 900)  # long reordering delays 2/3 of the replies ...
REORDER_BASE_MS, REORDER_SPREAD_MS = 200, 2000  # ... by 200 + U[0, U[0, 1999]] ms

HandlerErrorCallback = Callable[[str, BaseException, str], None]
# on_call_error(kind, end name, "Service.method", message); kind is one of these two:
CODEC_ERROR = "codec"  # args or reply that cannot be encoded
UNKNOWN_METHOD = "unknown-method"  # no such service or method on the server
CallErrorCallback = Callable[[str, Hashable, str, str], None]
# on_rpc(end name, server name, "Service.method", outcome, bytes): see "Watching the traffic".
RpcObserver = Callable[[Hashable, Hashable, str, str, int], None]


_PARKED = object()  # _process: the call_async callback waits on the timer


class UnknownMethodError(LookupError):
    """A call named a service or method that the server does not have."""


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
HANDLER_RULE = "handlers take one args object and return the reply"


def signature_problem(function: Callable[..., Any]) -> str | None:
    """Why ``function`` (a method, ``self`` included) is not a handler; ``None`` if it is.

    A handler takes exactly one positional parameter after ``self``.  The
    reason is kept so that a call to a method left out says why (a Go-style
    ``def request_vote(self, args, reply)`` "takes 2 parameters").
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return "has a signature that cannot be read"
    params = list(signature.parameters.values())[1:]
    if len(params) == 1 and params[0].kind in _POSITIONAL:
        return None
    if not params:
        return "takes no parameters"
    if all(p.kind in _POSITIONAL for p in params):
        return f"takes {len(params)} parameters"
    return f"takes {signature.replace(parameters=params, return_annotation=signature.empty)}"


# class -> (fingerprint, handler names, skipped methods with their reasons).  Reading
# signatures (``inspect.signature``, eight public methods of a Raft) cost 0.3 ms per
# Service, and the harness makes one per peer start: 13 per 2A test, the same class
# every time.  Weak keys: a class defined inside a test is dropped with it.
_TABLES: weakref.WeakKeyDictionary[type, tuple[tuple[Any, ...], tuple[str, ...],
                                              dict[str, str]]] = weakref.WeakKeyDictionary()


def _fingerprint(cls: type) -> tuple[Any, ...]:
    """Everything the handler table of ``cls`` is derived from, compared by identity.

    The attribute names and values of every class in the MRO (``object`` aside):
    assigning, replacing or deleting a method on the class or a base changes it,
    so a class patched after its first Service gets its table made again.
    """
    return tuple(item for klass in cls.__mro__[:-1] for item in klass.__dict__.items())


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and x[1] is y[1] for x, y in zip(a, b, strict=True))


def _handler_table(cls: type) -> tuple[tuple[str, ...], dict[str, str]]:
    """The public handler names of ``cls`` and its skipped methods, made once per class."""
    if type(cls) is not type:  # a metaclass may change what dir() lists: no cache
        return _make_table(cls)
    fingerprint = _fingerprint(cls)
    cached = _TABLES.get(cls)
    if cached is not None and _same(cached[0], fingerprint):
        return cached[1], cached[2]
    names, skipped = _make_table(cls)
    _TABLES[cls] = (fingerprint, names, skipped)
    return names, skipped


def handler_names(cls: type) -> tuple[str, ...]:
    """The methods of ``cls`` a :class:`Service` of one of its instances serves, by name.

    For code that wraps a Raft's handlers (explore's cluster) and must offer exactly
    what the network would call, by the same rule (:func:`signature_problem`).
    """
    return _handler_table(cls)[0]


def _make_table(cls: type) -> tuple[tuple[str, ...], dict[str, str]]:
    names: list[str] = []
    skipped: dict[str, str] = {}
    for attr in dir(cls):
        if attr.startswith("_"):
            continue
        static = inspect.getattr_static(cls, attr)
        if not inspect.isfunction(static):
            continue
        problem = signature_problem(static)
        if problem is None:
            names.append(attr)
        else:
            skipped[attr] = problem
    return tuple(names), skipped


def _folded(name: str) -> str:
    return name.replace("_", "").lower()


class Service:
    """The RPC handlers of one receiver object.

    The service is called ``name``, else after the receiver's class; the Raft
    harness always registers a peer as ``"Raft"``, whatever its class is called.
    Its handlers are the receiver's public methods that take exactly one
    argument (the args) and return the reply; other public methods are left
    out, and remembered with the reason, for the unknown-method message.
    """

    def __init__(self, receiver: object, name: str | None = None) -> None:
        self.name = name if name is not None else type(receiver).__name__
        names, skipped = _handler_table(type(receiver))
        self._methods: dict[str, Callable[[Any], Any]] = {
            attr: getattr(receiver, attr) for attr in names
        }
        self._skipped: dict[str, str] = dict(skipped)

    raw = False  # handlers take and return objects; RawService's take and return bytes

    def method_names(self) -> list[str]:
        return sorted(self._methods)

    def skipped(self) -> dict[str, str]:
        """Public methods that are not handlers, each with the reason."""
        return dict(self._skipped)

    def handler(self, method: str, svc_meth: str) -> Callable[[Any], Any]:
        try:
            return self._methods[method]
        except KeyError:
            raise UnknownMethodError(self._unknown_message(method, svc_meth)) from None

    def _unknown_message(self, method: str, svc_meth: str) -> str:
        available = ", ".join(self.method_names()) or "no handlers"
        if method in self._skipped:
            return (
                f"unknown method {method!r} in {svc_meth!r}: {self.name}.{method} was left out "
                f"because {method} {self._skipped[method]}; {HANDLER_RULE} "
                f"(service {self.name!r} has {available})"
            )
        hint = ""
        near = [m for m in (*self._methods, *self._skipped) if _folded(m) == _folded(method)]
        if near:
            hint = f" (did you mean {near[0]!r}?)"
        return (
            f"unknown method {method!r} in {svc_meth!r}{hint}; "
            f"service {self.name!r} has {available}"
        )


class RawService(Service):
    """A service whose handlers live elsewhere: they take and return encoded bytes.

    ``handler(method, request)`` is called with the request bytes as sent and
    returns the reply bytes, or ``None`` when there is no reply (the call
    fails as for a lost reply, and nothing is reported); an exception is
    reported to ``on_handler_error`` like a local handler's.  ``methods``
    lists the handler names, so an unknown one fails as for a local service.
    """

    raw = True

    def __init__(
        self, name: str, methods: list[str], handler: Callable[[str, bytes], bytes | None],
        skipped: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self._methods = {
            m: (lambda request, m=m: handler(m, request)) for m in methods
        }
        self._skipped = dict(skipped or {})


class Server:
    """Services reachable under one server name, and the count of RPCs delivered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, Service] = {}
        self._count = 0
        # "Service.method" -> (handler, raw), filled at a name's first call: the split
        # and the two lookups cost a fifth of a handler thread's own work per RPC.
        self._resolved: dict[str, tuple[Callable[[Any], Any], bool]] = {}

    def add_service(self, service: Service) -> None:
        with self._lock:
            self._services[service.name] = service
            self._resolved = {}

    def get_count(self) -> int:
        with self._lock:
            return self._count

    def _lookup(self, svc_meth: str) -> tuple[Callable[[Any], Any], bool]:
        """The handler for ``svc_meth`` and whether it is raw (bytes in, bytes out)."""
        with self._lock:
            self._count += 1  # counted before the lookup, as in the lab
            found = self._resolved.get(svc_meth)
            if found is not None:
                return found
            resolved = self._resolved
            service_name, dot, method = svc_meth.rpartition(".")
            service = self._services.get(service_name) if dot else None
            if service is None:
                raise UnknownMethodError(
                    f"unknown service {service_name or svc_meth!r} in {svc_meth!r}; expected "
                    f"'Service.method' with a service among: {', '.join(sorted(self._services))}"
                )
        found = service.handler(method, svc_meth), service.raw
        resolved[svc_meth] = found  # a stale dict (add_service since) is simply dropped
        return found


class _PendingCall(Rendezvous):
    """One delivered call: the pool task that runs its handler, and its rendezvous.

    The caller waits on it (:meth:`Rendezvous.wait`); whichever comes first,
    the handler finishing or a notice that the server died
    (:meth:`Network._notify_dead`), claims it, sets the outcome and wakes the
    caller.  Registered in the network's in-flight set while the caller
    waits, so a notice can find it.  One object, not a call holding a
    rendezvous: an RPC makes one allocation less.
    """

    __slots__ = ("net", "server", "servername", "endname", "svc_meth", "request",
                 "reply", "error", "dead")

    def __init__(
        self, net: Network, server: Server, servername: Hashable, endname: Hashable,
        svc_meth: str, request: bytes,
    ) -> None:
        Rendezvous.__init__(self, net._pipes)
        self.net = net
        self.server = server
        self.servername = servername
        self.endname = endname
        self.svc_meth = svc_meth
        self.request: bytes | None = request
        self.reply: bytes | None = None
        self.error: BaseException | None = None
        self.dead = False  # set by a death notice that claimed the meeting

    def __call__(self) -> None:
        """Run the handler (on a pool thread), then wake the caller unless a notice did."""
        request, self.request = self.request, None
        reply, error = self.net._run_handler(self.server, self.svc_meth, request, self.endname)
        if self.claim():
            self.reply, self.error = reply, error
            self.wake()


def _report_handler_error(svc_meth: str, exc: BaseException, tb_text: str) -> None:
    print(f"labrpc: handler {svc_meth} failed: {exc!r}\n{tb_text}", file=sys.stderr)


def _report_call_error(kind: str, endname: Hashable, svc_meth: str, message: str) -> None:
    print(f"labrpc: {kind} error in {svc_meth} from end {endname!r}: {message}", file=sys.stderr)


class ClientEnd:
    """One host's connection to one server; safe to use from many threads."""

    def __init__(self, name: Hashable, network: Network) -> None:
        self.name = name
        self._net = network
        self._gone = threading.Event()  # set by delete_end or cleanup

    def call(self, svc_meth: str, args: Any) -> Any:
        """Send an RPC and wait for its outcome: the reply object, or ``None``."""
        return self._net._process(self, svc_meth, args)

    def call_async(self, svc_meth: str, args: Any, done: Callable[[Any], None]) -> None:
        """``call`` without a thread waiting for the outcome: ``done(reply or None)``.

        Everything about the call is as for :meth:`call` (the same steps, random
        draws and counts, the request encoded now, a codec error raised now), but
        ``done`` runs later on a network thread: an unreachable server's failure
        delay is waited out by the network's one timer thread (:mod:`labrpc.timer`)
        instead of the caller's, and a delivered call's wait by a network pool
        thread.  ``done`` runs exactly once and must not block for long.
        """
        self._net._process_async(self, svc_meth, args, done)

    def call_raw(self, svc_meth: str, request: bytes) -> bytes | None:
        """``call`` with ``request`` already encoded; the reply bytes, undecoded, or ``None``."""
        return self._net._process(self, svc_meth, request, raw=True)

    def report_codec_error(self, svc_meth: str, message: str) -> None:
        """The sender (in another process) could not encode a request for this end.

        Reported to ``on_call_error`` exactly as ``call`` reports its own codec
        errors; nothing is counted, as nothing was sent.
        """
        self._net._report(CODEC_ERROR, self.name, svc_meth, message)

    def __repr__(self) -> str:
        return f"ClientEnd({self.name!r})"


class Network:
    """The fake network: ends, servers, fault flags and counters."""

    on_rpc: RpcObserver | None = None  # see "Watching the traffic" in the module docstring

    def __init__(
        self,
        rng: random.Random | None = None,
        on_handler_error: HandlerErrorCallback | None = None,
        on_call_error: CallErrorCallback | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._rng = rng if rng is not None else random.Random()
        self._on_handler_error = on_handler_error or _report_handler_error
        self._on_call_error = on_call_error or _report_call_error
        self._reliable = True
        self._long_delays = False
        self._long_reordering = False
        self._ends: dict[Hashable, ClientEnd] = {}
        self._enabled: dict[Hashable, bool] = {}
        self._connections: dict[Hashable, Hashable] = {}
        self._servers: dict[Hashable, Server | None] = {}
        self._total_count = 0
        self._total_bytes = 0
        self._done = False
        self._pool = ThreadPool("labrpc-worker", numbered=True)
        self._timer = Timer()  # waits out unreachable call_async delays (labrpc.timer)
        self._pipes = PipeStock() if real_threading() else None  # see labrpc.wake
        # Real time: a reliable call registers in the same lock hold as its snapshot
        # (step 2) and counts its reply bytes in the same hold as its last route check,
        # two lock round trips less per RPC with the same outcomes.  Patched threading
        # keeps every hold, so a simulated run replays exactly as before.
        self._merge_holds = self._pipes is not None
        # Calls waiting for their handler, in order (a dict: a set's order would vary
        # from run to run, and simulated time must replay exactly).
        self._inflight: dict[_PendingCall, None] = {}

    # -- configuration -----------------------------------------------------

    def reliable(self, yes: bool) -> None:
        with self._lock:
            self._reliable = yes

    def long_delays(self, yes: bool) -> None:
        with self._lock:
            self._long_delays = yes

    def long_reordering(self, yes: bool) -> None:
        with self._lock:
            self._long_reordering = yes

    def make_end(self, name: Hashable) -> ClientEnd:
        """A new end, disabled and unconnected.  Names must be unique."""
        with self._lock:
            if name in self._ends:
                raise ValueError(f"make_end: an end named {name!r} already exists")
            end = ClientEnd(name, self)
            self._ends[name] = end
            self._enabled[name] = False
            if self._done:
                end._gone.set()
            return end

    def delete_end(self, name: Hashable) -> None:
        """Forget an end; calls waiting on it fail at once."""
        with self._lock:
            end = self._ends.pop(name, None)
            self._enabled.pop(name, None)
            self._connections.pop(name, None)
            self._notify_dead(lambda p: p.endname == name)
        if end is not None:
            end._gone.set()
            self._timer.fire(end)

    def add_server(self, name: Hashable, server: Server) -> None:
        with self._lock:
            self._servers[name] = server
            self._notify_dead(lambda p: p.servername == name and p.server is not server)

    def delete_server(self, name: Hashable) -> None:
        with self._lock:
            self._servers[name] = None
            self._notify_dead(lambda p: p.servername == name)

    def connect(self, endname: Hashable, servername: Hashable) -> None:
        with self._lock:
            self._check_end(endname)
            self._connections[endname] = servername

    def enable(self, endname: Hashable, enabled: bool) -> None:
        with self._lock:
            self._check_end(endname)
            self._enabled[endname] = enabled
            if not enabled:
                self._notify_dead(lambda p: p.endname == endname)

    def enable_many(self, endnames: list[Hashable], enabled: bool) -> None:
        """:meth:`enable` for each name in turn, with the same outcome.

        The tester's connect and disconnect switch up to 2n ends at once.  In real
        time that is one lock hold and one look at the calls in flight instead of
        one per end; when ``threading`` is patched it is exactly the calls to
        :meth:`enable` it stands for (a simulated run's schedule counts every lock
        operation).  An unknown name raises ``KeyError`` as :meth:`enable` does,
        the names before it switched.
        """
        if not self._merge_holds:
            for name in endnames:
                self.enable(name, enabled)
            return
        with self._lock:
            try:
                for name in endnames:
                    self._check_end(name)
                    self._enabled[name] = enabled
            finally:
                if not enabled and self._inflight:
                    names = set(endnames)
                    self._notify_dead(lambda p: p.endname in names)

    def _check_end(self, endname: Hashable) -> None:
        if endname not in self._ends:
            raise KeyError(f"no end named {endname!r} (make_end it first)")

    # -- counters ------------------------------------------------------------

    def get_count(self, servername: Hashable) -> int:
        """How many RPCs were delivered to the server now named ``servername``."""
        with self._lock:
            server = self._servers.get(servername)
        if server is None:
            raise LookupError(f"get_count: no live server named {servername!r}")
        return server.get_count()

    def get_total_count(self) -> int:
        with self._lock:
            return self._total_count

    def get_total_bytes(self) -> int:
        with self._lock:
            return self._total_bytes

    def cleanup(self) -> None:
        """Shut the network down: every later or waiting call fails promptly."""
        with self._lock:
            self._done = True
            ends = list(self._ends.values())
            self._notify_dead(lambda p: True)
        for end in ends:
            end._gone.set()
        self._timer.close()
        self._pool.close()
        if self._pipes is not None:
            self._pipes.close()

    # -- one request ---------------------------------------------------------

    def _report(self, kind: str, endname: Hashable, svc_meth: str, message: str) -> None:
        try:
            self._on_call_error(kind, endname, svc_meth, message)
        except BaseException:  # noqa: BLE001 - a broken callback must not change the call
            traceback.print_exc()

    def _observe(self, on_rpc: RpcObserver, endname: Hashable, servername: Hashable,
                 svc_meth: str, outcome: str, nbytes: int) -> None:
        try:
            on_rpc(endname, servername, svc_meth, outcome, nbytes)
        except BaseException:  # noqa: BLE001 - a broken observer must not change the call
            traceback.print_exc()

    def _process_async(self, end: ClientEnd, svc_meth: str, args: Any,
                       done: Callable[[Any], None]) -> None:
        """Steps 1-3 on the caller's thread; the rest on a pool thread (``call_async``)."""
        later = self._process(end, svc_meth, args, later=done)
        if later is None:  # failed at once (cleanup): still never on the caller's thread
            self._timer.after(0.0, end, done)
        elif later is not _PARKED:
            deliver = later

            def task() -> None:
                try:
                    reply = deliver()
                except Exception:  # noqa: BLE001 - reported by _deliver; the call fails
                    reply = None
                done(reply)

            if not self._pool.submit(task):
                self._timer.after(0.0, end, done)

    def _process(self, end: ClientEnd, svc_meth: str, args: Any, raw: bool = False,
                 later: Callable[[Any], None] | None = None) -> Any:
        """One call (the module docstring's steps).  With ``later`` (``call_async``):
        an unreachable call's ``later`` is parked on the timer (returns ``_PARKED``),
        and a deliverable one returns the rest of the call to run elsewhere."""
        if raw:
            request = args
        else:
            try:
                request = encode(args, "args")
            except CodecError as err:
                self._report(CODEC_ERROR, end.name, svc_meth, str(err))
                raise
        pending = None
        with self._lock:
            if self._done or end._gone.is_set():
                return None
            self._total_count += 1
            self._total_bytes += len(request)
            enabled = self._enabled.get(end.name, False)
            servername = self._connections.get(end.name)
            server = self._servers.get(servername) if servername is not None else None
            reliable = self._reliable
            long_reordering = self._long_reordering
            long_delays = self._long_delays
            if reliable and later is None and self._merge_holds and enabled and server is not None:
                # Delivered at once (no request delay): registered now, on a route this
                # very snapshot found alive, so a death notice from here on finds it.
                pending = _PendingCall(self, server, servername, end.name, svc_meth, request)
                self._inflight[pending] = None
        rng = self._rng
        on_rpc = self.on_rpc

        if not enabled or server is None:
            if on_rpc is not None:
                self._observe(on_rpc, end.name, servername, svc_meth, "unreachable", len(request))
            limit = LONG_FAILURE_DELAY_MS if long_delays else SHORT_FAILURE_DELAY_MS
            delay = rng.randrange(limit) / 1000
            if later is not None:  # no thread sleeps through it
                self._timer.after(0.0 if end._gone.is_set() else delay, end, later)
                return _PARKED
            end._gone.wait(delay)
            return None
        if later is not None:
            return lambda: self._deliver(end, svc_meth, request, False, servername, server,
                                         reliable, long_reordering, rng, on_rpc, inline=True)
        return self._deliver(end, svc_meth, request, raw, servername, server, reliable,
                             long_reordering, rng, on_rpc, pending=pending)

    def _deliver(self, end: ClientEnd, svc_meth: str, request: bytes, raw: bool,
                 servername: Hashable, server: Server, reliable: bool, long_reordering: bool,
                 rng: random.Random, on_rpc: RpcObserver | None, inline: bool = False,
                 pending: _PendingCall | None = None) -> Any:
        """Steps 4-5: a reachable server (as read in step 2).  ``inline`` (``call_async``,
        already on a pool thread): run the handler here, one thread hand-off less; a
        death notice during the handler still fails the call, once the handler returns.
        ``pending``: already registered by step 2 (a reliable call in real time)."""

        if not reliable:
            if end._gone.wait(rng.randrange(SHORT_DELAY_MS) / 1000):
                if on_rpc is not None:  # the end was deleted meanwhile
                    self._observe(on_rpc, end.name, servername, svc_meth, "unreachable",
                                  len(request))
                return None
            if rng.randrange(1000) < DROP_PER_MILLE:
                if on_rpc is not None:
                    self._observe(on_rpc, end.name, servername, svc_meth, "dropped", len(request))
                return None

        if on_rpc is not None:
            self._observe(on_rpc, end.name, servername, svc_meth, "sent", len(request))
        if pending is None:
            pending = _PendingCall(self, server, servername, end.name, svc_meth, request)
            with self._lock:  # from here a death notice can end the wait
                self._inflight[pending] = None
                dead = self._is_dead(end, servername, server)
            if dead and pending.claim():
                pending.dead = True  # died since the snapshot: the handler still runs
                pending.wake()
        if inline:
            pending()
            pending.wait()
        elif self._pool.submit(pending):
            pending.wait()
        else:  # the network is shutting down
            pending.dead = True
            pending.abandon()
        # Reliable, no reordering: nothing can happen between the route check and the
        # delivery, so in real time the reply bytes are counted in the same hold.
        counted = reliable and not long_reordering and self._merge_holds
        name = end.name
        with self._lock:
            del self._inflight[pending]
            dead = (pending.dead or self._done or end._gone.is_set()  # _is_dead, inlined
                    or not self._enabled.get(name, False)
                    or self._servers.get(servername) is not server)
            if counted and not dead and pending.reply is not None:
                self._total_bytes += len(pending.reply)
        if pending.dead or pending.reply is None or dead:
            if on_rpc is not None:
                self._observe(on_rpc, end.name, servername, svc_meth, "failed", 0)
            if pending.dead:
                return None  # the handler runs on, or ran; its outcome is ignored
            if isinstance(pending.error, UnknownMethodError):
                self._report(UNKNOWN_METHOD, end.name, svc_meth, str(pending.error))
                raise UnknownMethodError(str(pending.error))
            return None
        if not reliable and rng.randrange(1000) < DROP_PER_MILLE:
            if on_rpc is not None:
                self._observe(on_rpc, end.name, servername, svc_meth, "reply-lost", 0)
            return None
        if long_reordering and rng.randrange(REORDER_CHANCE[1]) < REORDER_CHANCE[0]:
            delay_ms = REORDER_BASE_MS + rng.randrange(1 + rng.randrange(REORDER_SPREAD_MS))
            if end._gone.wait(delay_ms / 1000):
                if on_rpc is not None:
                    self._observe(on_rpc, end.name, servername, svc_meth, "failed", 0)
                return None
        if not counted:
            with self._lock:
                self._total_bytes += len(pending.reply)
        if on_rpc is not None:
            self._observe(on_rpc, end.name, servername, svc_meth, "replied", len(pending.reply))
        return pending.reply if raw else decode(pending.reply)

    def _is_dead(self, end: ClientEnd, servername: Hashable, server: Server) -> bool:
        """Whether the call's route died (called with ``_lock`` held)."""
        return (
            self._done
            or end._gone.is_set()
            or not self._enabled.get(end.name, False)
            or self._servers.get(servername) is not server
        )

    def _notify_dead(self, dead: Callable[[_PendingCall], bool]) -> None:
        """End the wait of every in-flight call for which ``dead`` holds (``_lock`` held).

        Called by every change that kills a route (disabling an end, deleting
        or replacing a server, deleting an end, cleanup), so a waiting caller
        learns at once, without polling.
        """
        for pending in list(self._inflight):
            if dead(pending) and pending.claim():
                pending.dead = True
                pending.wake()

    def _run_handler(
        self, server: Server, svc_meth: str, request: bytes, endname: Hashable,
    ) -> tuple[bytes | None, BaseException | None]:
        """Run one handler; (reply bytes or None, error or None).  Never raises."""
        try:
            handler, raw = server._lookup(svc_meth)
            if raw:
                return handler(request), None
            reply = handler(decode(request))
            if reply is None:
                raise TypeError(
                    f"RPC handler {svc_meth} returned None; a handler must return its reply object"
                )
            try:
                return encode(reply, "reply"), None
            except CodecError as err:  # the call fails as if the reply were lost
                self._report(CODEC_ERROR, endname, svc_meth, str(err))
                return None, err
        except UnknownMethodError as err:
            return None, err
        except BaseException as err:  # noqa: BLE001 - reported, and the call fails
            try:
                self._on_handler_error(svc_meth, err, traceback.format_exc())
            except BaseException:  # noqa: BLE001 - a broken callback must not kill the pool
                traceback.print_exc()
            return None, err
