"""The peer side: what runs inside a peer process around one Raft object.

A peer process is forked from the template (:mod:`labtests.isolation.template`)
with its connection to the tester.  It builds the objects the Raft is given,
which behave as in-process but talk to the tester:

* :class:`PeerEnd` — ``peers[j].call(svc_meth, args)`` encodes ``args`` with
  labrpc's checked codec *here* (a lock in the args fails here, with the field
  path, and the tester is told), sends the bytes to the tester's network and
  blocks until the network's outcome comes back: the decoded reply, ``None``,
  or :class:`~labrpc.UnknownMethodError` raised in the caller as in-process.
* :class:`PeerPersister` — reads are served from a local copy; every ``save``
  updates the copy and is sent to the tester's persister.  Saves travel on the
  same ordered connection as RPC replies and apply messages, so the tester has
  every save before it sees anything that happened after it.
* :class:`PeerApplyChannel` — ``put`` returns only when the tester's reader
  has taken the message (True) or the tester closed the channel (False): Go's
  unbuffered channel, so a Raft that applies under its lock deadlocks against
  the tester's ``snapshot()`` exactly as in-process.

The tester's requests (``start``, ``get_state``, ``snapshot``, ``kill``, and
``threads`` for the leftover-thread report) and RPCs delivered to this peer run
on a pool of threads, concurrently, as in-process.
"""

from __future__ import annotations

import faulthandler
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from labrpc import CodecError, Service, UnknownMethodError, decode, encode
from labrpc.pool import ThreadPool
from labtests import memory_bound
from labtests.impl_loader import Implementation
from labtests.isolation import procs, wire
from raft import debuglog

HARNESS_THREAD_PREFIX = "raftlab-peer"  # threads of this module, left out of leak reports
STACKS_SIGNAL = signal.SIGUSR1  # the tester sends it for a stack dump of every thread
MAX_ERROR_TEXT = 16 * 1024  # characters of a traceback sent to the tester


def _clip(text: str) -> str:
    if len(text) <= MAX_ERROR_TEXT:
        return text
    half = MAX_ERROR_TEXT // 2
    return f"{text[:half]}\n[... {len(text) - MAX_ERROR_TEXT} characters cut ...]\n{text[-half:]}"


class _Slot:
    """A one-shot rendezvous for one outstanding exchange with the tester."""

    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.value: Any = None

    def fill(self, value: Any) -> None:
        self.value = value
        self.done.release()


class _Link:
    """The connection to the tester plus the table of exchanges waiting for an answer."""

    def __init__(self, conn: wire.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._next = 0
        self._waiting: dict[int, _Slot] = {}
        self.closed = False

    def open_slot(self) -> tuple[int, _Slot]:
        slot = _Slot()
        with self._lock:
            self._next += 1
            key = self._next
            if self.closed:
                slot.fill(None)
            else:
                self._waiting[key] = slot
        return key, slot

    def answer(self, key: int, value: Any) -> None:
        with self._lock:
            slot = self._waiting.pop(key, None)
        if slot is not None:
            slot.fill(value)

    def close(self) -> None:
        """The tester is gone: every waiter gets ``None``."""
        with self._lock:
            self.closed = True
            waiting, self._waiting = self._waiting, {}
        for slot in waiting.values():
            slot.fill(None)

    def send(self, message: tuple[Any, ...]) -> bool:
        try:
            self.conn.send(message)
            return True
        except wire.Closed:
            return False


class PeerEnd:
    """``peers[j]`` inside a peer process: a ClientEnd whose network is in the tester."""

    def __init__(self, link: _Link, target: int) -> None:
        self._link = link
        self._target = target

    def call(self, svc_meth: str, args: Any) -> Any:
        """Send an RPC through the tester's network; the reply, or ``None`` if lost."""
        try:
            request = encode(args, "args")
        except CodecError as err:
            self._link.send(("codec_error", self._target, str(svc_meth), str(err)))
            raise
        key, slot = self._link.open_slot()
        if not self._link.send(("call", key, self._target, str(svc_meth), request)):
            self._link.answer(key, None)
        slot.done.acquire()
        if slot.value is None:
            return None
        reply, unknown = slot.value
        if unknown:
            raise UnknownMethodError(unknown)
        return None if reply is None else decode(reply)

    def __repr__(self) -> str:
        return f"PeerEnd({self._target})"


class PeerPersister:
    """The Raft's persister: local reads, saves forwarded to the tester's persister."""

    def __init__(self, link: _Link, raftstate: bytes, snapshot: bytes) -> None:
        self._link = link
        self._lock = threading.Lock()
        self._raftstate = raftstate
        self._snapshot = snapshot

    @staticmethod
    def _as_bytes(data: Any, what: str) -> bytes:
        if data is None:
            return b""
        if isinstance(data, bytes):
            return data
        if isinstance(data, bytearray | memoryview):
            return bytes(data)
        raise TypeError(
            f"Persister.save: {what} must be bytes (or None), got {type(data).__name__}"
        )

    def save(self, raftstate: bytes | None, snapshot: bytes | None) -> None:
        state = self._as_bytes(raftstate, "raftstate")
        snap = self._as_bytes(snapshot, "snapshot")
        with self._lock:  # one order for the local copy and the tester's
            self._raftstate, self._snapshot = state, snap
            self._link.send(("save", state, snap))

    def read_raft_state(self) -> bytes:
        with self._lock:
            return self._raftstate

    def read_snapshot(self) -> bytes:
        with self._lock:
            return self._snapshot

    def raft_state_size(self) -> int:
        with self._lock:
            return len(self._raftstate)

    def snapshot_size(self) -> int:
        with self._lock:
            return len(self._snapshot)


APPLY_FIELDS = (
    "command_valid", "command", "command_index",
    "snapshot_valid", "snapshot", "snapshot_term", "snapshot_index",
)


class PeerApplyChannel:
    """The Raft's apply channel: ``put`` blocks until the tester's reader took the message."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    def put(self, item: Any) -> bool:
        fields = tuple(getattr(item, name, None) for name in APPLY_FIELDS)
        key, slot = self._link.open_slot()
        try:
            message = ("apply", key, fields)
            wire.dumps(message)  # fails here, in the sender, if a field is not plain data
        except Exception as err:  # noqa: BLE001 - reported to the tester, then raised
            self._link.answer(key, False)
            self._link.send((
                "codec_error", -1, "apply_ch.put",
                f"an ApplyMsg crosses as plain fields (ints, strs, bytes, lists...); "
                f"this one cannot: {err!r}",
            ))
            raise
        if not self._link.send(message):
            self._link.answer(key, False)
        slot.done.acquire()
        return bool(slot.value)


class PeerRuntime:
    """Hosts one Raft object and serves the tester's requests and delivered RPCs."""

    def __init__(self, conn: wire.Connection, impl: Implementation) -> None:
        self.link = _Link(conn)
        self.impl = impl
        self.pool = ThreadPool(f"{HARNESS_THREAD_PREFIX}-worker", numbered=True)
        self.rf: Any = None
        self.service: Service | None = None
        self._ready = threading.Event()

    # -- start-up ------------------------------------------------------------------

    def run(self, init: tuple[Any, ...]) -> NoReturn:
        """Build the Raft from the tester's init message, then serve until the tester closes."""
        me, n, seed, debug, clock_origin, raftstate, snapshot = init[1:]
        random.seed(seed)  # the template's state is shared by every fork: reseed
        if debug:
            debuglog.enable()
        # The tester's clock origin (CLOCK_MONOTONIC is system-wide), so peer lines line up.
        debuglog.reset_clock(clock_origin)
        threading.excepthook = self._excepthook
        reader = threading.Thread(target=self._read, name=f"{HARNESS_THREAD_PREFIX}-reader",
                                  daemon=True)
        reader.start()
        ends = [PeerEnd(self.link, j) for j in range(n)]
        persister = PeerPersister(self.link, raftstate, snapshot)
        try:
            self.rf = self.impl.make(ends, me, persister, PeerApplyChannel(self.link))
            self.service = Service(self.rf, name="Raft")
        except BaseException as exc:  # noqa: BLE001 - reported to the tester
            text = str(exc) if type(exc).__name__ == "ImplementationError" else (
                f"make() raised {exc!r}\n{traceback.format_exc()}")
            self.link.send(("make_failed", _clip(text)))
            _exit(0)
        self._ready.set()
        self.link.send(("hello", os.getpid(), self.service.method_names(),
                        self.service.skipped()))  # skipped: why a method is no handler
        reader.join()
        _exit(0)

    def _excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        tb = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        self.link.send(("uncaught", name, repr(args.exc_value), _clip(tb)))

    # -- serving ---------------------------------------------------------------------

    def _read(self) -> None:
        try:
            while True:
                message = self.link.conn.recv()
                tag = message[0]
                if tag in ("call_result", "applied"):
                    key, value = message[1], message[2:]
                    self.link.answer(key, value if tag == "call_result" else value[0])
                elif tag == "req":
                    _, key, op, args = message
                    self.pool.submit(lambda k=key, o=op, a=args: self._request(k, o, a))
                elif tag == "handle":
                    _, key, method, request = message
                    self.pool.submit(lambda k=key, m=method, r=request: self._handle(k, m, r))
        except (wire.Closed, wire.WireError):
            pass
        finally:
            self.link.close()

    def _request(self, key: int, op: str, args: tuple[Any, ...]) -> None:
        if op != "thread_names":  # answered even while make() runs
            self._ready.wait()
        rf = self.rf
        try:
            if op == "get_state":
                value = rf.get_state()
            elif op == "start":
                value = rf.start(args[0])
            elif op == "snapshot":
                value = rf.snapshot(args[0], args[1])
            elif op == "kill":
                value = rf.kill()
            elif op == "threads":
                value = _leftover_threads(args[0])
            elif op == "thread_names":
                value = [(t.ident, t.name) for t in threading.enumerate()]
            else:
                raise ValueError(f"unknown request {op!r}")
            if op in ("snapshot", "kill"):
                value = None
            elif isinstance(value, list):
                value = tuple(value)
            self.link.send(("result", key, value))
        except Exception as exc:  # noqa: BLE001 - reported to the tester
            self.link.send(("error", key, _clip(
                f"{op}() raised {exc!r}\n{traceback.format_exc()}")))

    def _handle(self, key: int, method: str, request: bytes) -> None:
        self._ready.wait()
        svc_meth = f"Raft.{method}"
        try:
            assert self.service is not None
            handler = self.service.handler(method, svc_meth)
            reply = handler(decode(request))
            if reply is None:
                raise TypeError(
                    f"RPC handler {svc_meth} returned None; a handler must return its reply object"
                )
            self.link.send(("handled", key, encode(reply, "reply")))
        except BaseException as exc:  # noqa: BLE001 - reported, and the call fails
            self.link.send(("handler_error", key, repr(exc), _clip(traceback.format_exc())))


def _leftover_threads(grace: float) -> list[str]:
    """Names of the Raft's threads still alive after up to ``grace`` seconds."""
    deadline = time.monotonic() + grace
    me = threading.current_thread()
    while True:
        alive = [
            t for t in threading.enumerate()
            if t is not me and t is not threading.main_thread() and t.is_alive()
            and not t.name.startswith(HARNESS_THREAD_PREFIX)
        ]
        left = deadline - time.monotonic()
        if not alive or left <= 0:
            return [t.name for t in alive]
        alive[0].join(timeout=min(0.05, left))


def _exit(status: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(status)


def become_peer(
    conn_fd: int, out_fd: int, err_fd: int, stacks_fd: int, tester_pid: int,
    impl: Implementation, close_fds: Callable[[], None], memory_mb: int = 0,
) -> NoReturn:
    """Turn a freshly forked process into a peer (called in the child; never returns).

    ``memory_mb``: the peer's memory bound (:mod:`labtests.memory_bound`), whose stacks
    go to the stack file the tester reads (:meth:`PeerProxy.bound_dump`)."""
    try:
        close_fds()
        os.setpgid(0, 0)  # the terminal's Ctrl-C reaches the tester, which cleans up
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True)  # a SIGKILL loses no finished line
        # Wait to be adopted by the tester (the subreaper), then die with it.
        deadline = time.monotonic() + 10
        while os.getppid() != tester_pid and time.monotonic() < deadline:
            time.sleep(0.0002)
        procs.die_with_parent()
        if os.getppid() != tester_pid:
            _exit(1)
        stacks = os.fdopen(stacks_fd, "w", buffering=1)
        faulthandler.enable(file=stacks, all_threads=True)
        faulthandler.register(STACKS_SIGNAL, file=stacks, all_threads=True, chain=False)
        memory_bound.watch(memory_mb, stacks.fileno(), dump_file=False)
        conn = wire.Connection(socket.socket(fileno=conn_fd))
        init = conn.recv()
        wire.expect(init, int, int, int, bool, float, bytes, bytes)
    except BaseException:  # noqa: BLE001 - nothing to report to yet
        traceback.print_exc()
        _exit(70)
    PeerRuntime(conn, impl).run(init)
