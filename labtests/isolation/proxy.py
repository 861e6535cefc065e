"""The tester side of one peer process: :class:`PeerProxy` stands in for its Raft object.

The harness holds a PeerProxy where it would hold the Raft (``cfg.rafts[i]``)
and calls ``start``, ``get_state``, ``snapshot`` and ``kill`` on it; each is a
request to the peer process with a deadline.  The proxy also does the tester's
half of everything the peer's Raft does:

* its RPCs: a ``call`` from the peer goes through the tester's own ClientEnd
  (``call_raw``: the network counts, delays, drops and reorders the bytes) on a
  pool thread, and the outcome goes back; RPCs *to* this peer arrive through
  :meth:`rpc_service`, a :class:`~labrpc.RawService`;
* its persister: each ``save`` is applied to the tester's Persister;
* its apply channel: each message is put on the tester's ApplyChannel by one
  forwarder thread, in arrival order, and the peer's ``put`` is released only
  when the tester's reader has taken it.

Everything the peer sends is untrusted: decoded by the restricted decoder and
type-checked; a peer that breaks the protocol is cut off and fails the test.
A peer that misses a deadline fails the test with its threads' stacks; one
that dies on its own fails it with its exit status or signal.  Nothing here
blocks without a bound except what blocks in-process too (a handler that never
returns), and :meth:`terminate` ends all of that.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from labrpc import ClientEnd, RawService, UnknownMethodError
from labrpc.network import CODEC_ERROR
from labrpc.pool import ThreadPool
from labtests import last_bound
from labtests.failures import FailureChannel
from labtests.isolation import procs, wire
from raft.api import ApplyMsg
from raft.apply_channel import ApplyChannel
from raft.debuglog import dlog
from raft.persister import Persister

REQUEST_DEADLINE_S = 5.0  # start, get_state, snapshot: a correct Raft answers in microseconds
KILL_DEADLINE_S = 3.0  # kill() must return within this
START_DEADLINE_S = 10.0  # from fork to the peer's hello (make() included)
EXIT_WAIT_S = 2.0  # how long a closed peer gets to finish exiting before SIGKILL
STACKS_WAIT_S = 0.5  # how long a stack dump gets to be written
MAX_STACKS = 64 * 1024  # characters of a stack dump shown in a failure
# What one peer may have outstanding in the tester: far above what any Raft needs (the
# network answers within seconds), low enough that a flooding peer cannot exhaust the
# tester's threads or memory.
MAX_CALLS_IN_FLIGHT = 5000
MAX_QUEUED_APPLIES = 1000
# A crashed peer's process lives on until its Raft threads have ended (waited for this
# long), as a killed Raft object does in-process; one whose threads still run then is
# kept until the test's cleanup, which reports them.
RETIRED_THREADS_WAIT_S = 10.0


class PeerHandlerError(Exception):
    """An RPC handler failed in the peer process; carries the peer's traceback."""

    def __init__(self, exc_repr: str, tb_text: str) -> None:
        super().__init__(exc_repr)
        self.exc_repr = exc_repr
        self.tb_text = tb_text

    def __repr__(self) -> str:
        return self.exc_repr


class _Slot:
    """One outstanding exchange with the peer."""

    __slots__ = ("event", "kind", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.kind = ""  # "ok", "error" or "dead"
        self.value: Any = None

    def fill(self, kind: str, value: Any) -> None:
        if not self.event.is_set():
            self.kind, self.value = kind, value
            self.event.set()


class PeerProxy:
    """Server ``me``'s Raft as the tester sees it, when it runs in its own process."""

    def __init__(
        self, *, me: int, label: str, pid: int, conn: wire.Connection, stacks_fd: int,
        ends: list[ClientEnd], persister: Persister, apply_ch: ApplyChannel,
        failures: FailureChannel, calls: ThreadPool,
    ) -> None:
        self.me = me
        self.label = label  # "server 2 (peer process 1234)"
        self.pid = pid
        self._conn = conn
        self._stacks_fd = stacks_fd
        self._ends = ends
        self._persister = persister
        self._apply_ch = apply_ch
        self._failures = failures
        self._calls = calls
        self._lock = threading.Lock()
        self._reap_lock = threading.Lock()  # one reaper, so a reaped pid is never signalled
        self._next = 0
        self._waiting: dict[int, _Slot] = {}
        self._hello = _Slot()
        self.methods: list[str] = []
        self.skipped: dict[str, str] = {}  # public methods that are not handlers, and why
        self._terminated = False  # the tester ended the process (crash or cleanup)
        self._retired = False  # crashed: kill() returned; the process lives on (see kill)
        self._death: str | None = None  # why the peer is gone, if it went on its own
        self._status: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:
            self._pidfd = None
        self._applies: queue.SimpleQueue[tuple[int, ApplyMsg] | None] = queue.SimpleQueue()
        self._in_flight = 0  # this peer's RPCs on their way through the tester's network
        self._reader = threading.Thread(target=self._read, name=f"tester-{label}-reader",
                                        daemon=True)
        self._forwarder = threading.Thread(target=self._forward_applies,
                                           name=f"tester-{label}-apply", daemon=True)

    # -- start-up ------------------------------------------------------------------

    def start_peer(self, init: tuple[Any, ...]) -> None:
        """Send the init message and wait for the peer's hello (make() has returned)."""
        if procs.parent_of(self.pid) != os.getpid():
            self._death = (f"{self.label}: the template reported a process that is not a "
                           "child of the tester")
            self._fail(self._death)
        self._reader.start()
        self._forwarder.start()
        try:
            self._conn.send(init)
        except wire.Closed:
            pass
        if not self._hello.event.wait(START_DEADLINE_S):
            stacks = self.dump_stacks()
            self._fail(f"{self.label}: make() did not return within {START_DEADLINE_S:g} s; "
                       f"its threads:\n{stacks}")
        if self._hello.kind == "error":
            self._fail(f"{self.label}: {self._hello.value}")
        if self._hello.kind == "dead":
            self._fail(self._death_message("make()"))

    @property
    def alive(self) -> bool:
        """Neither crashed, nor killed by the tester, nor gone on its own."""
        with self._lock:
            return not self._terminated and self._death is None and not self._retired

    @property
    def retired_running(self) -> bool:
        """Crashed (``kill()`` returned), and its process still runs."""
        with self._lock:
            return self._retired and not self._terminated and self._death is None

    def rpc_service(self) -> RawService:
        """The service the tester's network delivers this peer's RPCs to."""
        return RawService("Raft", self.methods, self._handle, skipped=self.skipped)

    # -- the Raft API ---------------------------------------------------------------

    def get_state(self) -> tuple[int, bool]:
        __tracebackhide__ = True
        return self._call("get_state", (), REQUEST_DEADLINE_S, (-1, False))

    def start(self, command: Any) -> tuple[int, int, bool]:
        __tracebackhide__ = True
        return self._call("start", (command,), REQUEST_DEADLINE_S, (-1, -1, False))

    def snapshot(self, index: int, snapshot: bytes) -> None:
        __tracebackhide__ = True
        self._call("snapshot", (index, snapshot), REQUEST_DEADLINE_S, None)

    def kill(self) -> None:
        """A crash: ``kill()`` within its deadline; the process lives on until its Raft
        threads end.

        In-process (and in Go) a crashed Raft object is not destroyed: its
        threads run until they notice ``kill()``, and the calls they make
        meanwhile go through its ends, which the tester disabled -- counted by
        the network, failed after the usual delays, ended at the latest by the
        test's cleanup.  So the peer process is not SIGKILLed here: it keeps
        calling through the same network, writing into the persister the
        tester no longer reads and sending on its old apply channel, until
        none of its Raft threads is left (then it is killed: nothing in it can
        call any more); threads that never end keep it until the test's
        cleanup, which reports them with the other leftover threads.  A kill()
        that fails or misses its deadline ends the process at once.
        """
        __tracebackhide__ = True
        try:
            self._call("kill", (), KILL_DEADLINE_S, None)
        except BaseException:
            self.terminate()
            raise
        self._retire()

    def _retire(self) -> None:
        with self._lock:
            if self._terminated or self._death is not None:
                return
            self._retired = True
        dlog("TEST", None, "isolated: %s crashed; its process runs until its threads end",
             self.label)
        threading.Thread(target=self._end_when_threads_end, name=f"tester-{self.label}-retired",
                         daemon=True).start()

    def _end_when_threads_end(self) -> None:
        slot = self.request("threads", (RETIRED_THREADS_WAIT_S,))
        if not slot.event.wait(RETIRED_THREADS_WAIT_S + EXIT_WAIT_S):
            return  # a peer too broken to answer: the test's cleanup ends it
        if slot.kind == "ok" and not slot.value:
            self.terminate()

    # -- requests with deadlines -----------------------------------------------------

    def request(self, op: str, args: tuple[Any, ...]) -> _Slot:
        """Send one request; the slot is filled by its outcome."""
        slot = _Slot()
        with self._lock:
            if self._terminated or self._death is not None:
                slot.fill("dead", None)
                return slot
            self._next += 1
            key = self._next
            self._waiting[key] = slot
        try:
            self._conn.send(("req", key, op, args))
        except wire.Closed:
            pass  # the reader sees the end and fills the slot
        return slot

    def outcome(self, slot: _Slot, op: str, deadline: float, default: Any) -> Any:
        """The value of a request, or a precise failure (missed deadline, death, error)."""
        __tracebackhide__ = True
        if not slot.event.wait(max(0.0, deadline - time.monotonic())):
            stacks = self.dump_stacks()
            self._fail(
                f"{self.label}: {op}() did not return within "
                f"{KILL_DEADLINE_S if op == 'kill' else REQUEST_DEADLINE_S:g} s "
                f"(a deadlock?); its threads, most recent call first:\n{stacks}"
            )
        if slot.kind == "ok":
            return slot.value
        if slot.kind == "error":
            self._fail(f"{self.label}: {slot.value}")
        if self._terminated and self._death is None:
            return default  # a crashed peer, as the harness's own threads may still call it
        self._fail(self._death_message(f"{op}()"))
        return default

    def _call(self, op: str, args: tuple[Any, ...], timeout: float, default: Any) -> Any:
        __tracebackhide__ = True
        slot = self.request(op, args)
        return self.outcome(slot, op, time.monotonic() + timeout, default)

    def _fail(self, msg: str) -> None:
        __tracebackhide__ = True
        dlog("TEST", None, "%s", msg.splitlines()[0])
        self._failures.fail(msg)

    # -- the end -------------------------------------------------------------------

    def dump_stacks(self) -> str:
        """Ask the peer (faulthandler, on a signal) for every thread's stack."""
        try:
            before = os.fstat(self._stacks_fd).st_size
            with self._reap_lock:
                if not self._signal(signal.SIGUSR1):
                    return "(no stack dump: the peer process is gone)"
            deadline = time.monotonic() + STACKS_WAIT_S
            size = before
            while time.monotonic() < deadline:
                time.sleep(0.02)
                new = os.fstat(self._stacks_fd).st_size
                if new > before and new == size:
                    break  # written and no longer growing
                size = new
            data = os.pread(self._stacks_fd, MAX_STACKS, before)
        except OSError as exc:
            return f"(no stack dump: {exc})"
        if not data:
            return "(the peer wrote no stack dump)"
        return self._name_threads(data.decode("utf-8", "replace"))

    def bound_dump(self) -> str | None:
        """What the peer's memory bound wrote as it ended the peer (None: it did not).

        The stack file holds every dump the peer wrote (the tester's SIGUSR1 requests
        too): the bound's is the last, from its header on."""
        try:
            size = os.fstat(self._stacks_fd).st_size
            data = os.pread(self._stacks_fd, MAX_STACKS, max(0, size - MAX_STACKS))
        except OSError:
            return None
        return last_bound.memory_dump(data.decode("utf-8", "replace"))

    def _name_threads(self, dump: str) -> str:
        """Add thread names to faulthandler's ``Thread 0x...`` lines (if the peer still answers).

        The names come from a harness thread of the peer, which the Raft's locks
        do not block; a peer too broken to answer keeps the bare dump.
        """
        slot = self.request("thread_names", ())
        if not slot.event.wait(STACKS_WAIT_S) or slot.kind != "ok":
            return dump
        names = slot.value if isinstance(slot.value, tuple | list) else ()
        for pair in names:
            if isinstance(pair, tuple | list) and len(pair) == 2 \
                    and isinstance(pair[0], int) and isinstance(pair[1], str):
                for prefix in ("Thread", "Current thread"):
                    dump = dump.replace(f"{prefix} 0x{pair[0]:016x} ",
                                        f"{prefix} 0x{pair[0]:016x} {pair[1]!r} ")
        return dump

    def terminate(self) -> None:
        """SIGKILL the process and reap it (idempotent); wakes everything waiting on it."""
        with self._lock:
            if self._terminated:
                return
            self._terminated = True
        self._kill_and_reap()
        self._conn.close()
        if self._reader.ident is not None:
            self._reader.join(timeout=EXIT_WAIT_S)
        self._applies.put(None)
        self._wake_all()
        with self._reap_lock:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        os.close(self._stacks_fd)

    def _kill_and_reap(self) -> str:
        """SIGKILL the peer unless already reaped, and reap it; how it ended."""
        with self._reap_lock:
            if self._status is None:
                self._signal(signal.SIGKILL)
                self._status = procs.wait_exit(self.pid, EXIT_WAIT_S, self._pidfd)
            return "still running" if self._status is None else procs.describe_status(
                self._status)

    def _signal(self, sig: int) -> bool:
        """Signal the peer, but only while it is this process's unreaped child.

        The pid came from the template, which runs the implementation's import-time
        code and so is not trusted: a pid that is not our child is never signalled.
        An unreaped child's pid cannot be reused, so the check cannot go stale.
        """
        if self._status is not None or procs.parent_of(self.pid) != os.getpid():
            return False
        procs.kill(self.pid, sig)
        return True

    def _reap_if_exited(self) -> int | None:
        """Reap the peer if it exits within a short wait (it closed its connection)."""
        with self._reap_lock:
            if self._status is None:
                self._status = procs.wait_exit(self.pid, EXIT_WAIT_S, self._pidfd)
            return self._status

    def _wake_all(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for slot in waiting.values():
            slot.fill("dead", None)
        self._hello.fill("dead", None)

    def _death_message(self, during: str) -> str:
        return self._death or f"{self.label} is gone (during {during})"

    def _gone(self, why: str) -> None:
        """The connection ended or the peer broke the protocol: find out how it died."""
        with self._lock:
            expected = self._terminated
        # A peer whose make() failed said so, then exited: its failure is that message,
        # which start_peer() reports.  This thread read both, so under load it could
        # record the exit first and the verdict would lose the reason (CI saw "exited
        # with status 0" instead of "lacks required method(s): snapshot").
        make_failed = self._hello.kind == "error"
        if not expected:
            status = self._reap_if_exited()
            if status is None:  # alive but talking nonsense, or hung up: end it
                self._kill_and_reap()
                ended = f"{why}; the tester killed it"
            else:
                ended = procs.describe_status(status)
            dump = self.bound_dump() if status is not None else None
            if dump is not None:  # its memory bound ended it (labtests.memory_bound)
                self._death = f"{last_bound.describe(dump, self.label)}\n\n{dump}"
            else:
                self._death = f"{self.label} {ended} while the test was running"
            dlog("TEST", None, "%s", self._death)
            if not make_failed:
                self._failures.record(self._death)
        self._wake_all()

    # -- the peer's messages -----------------------------------------------------------

    def _read(self) -> None:
        why = "closed its connection"
        try:
            while True:
                message = self._conn.recv()
                self._dispatch(message)
        except wire.Closed:
            pass
        except wire.WireError as exc:
            why = f"sent a message the tester refuses ({exc})"
        except Exception as exc:  # noqa: BLE001 - a malformed field: same as a protocol error
            why = f"sent a malformed message ({exc!r})"
        self._gone(why)

    def _answer(self, key: Any, kind: str, value: Any) -> None:
        with self._lock:
            slot = self._waiting.pop(key, None) if isinstance(key, int) else None
        if slot is not None:
            slot.fill(kind, value)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        tag = message[0]
        if tag == "call":
            key, target, svc_meth, request = wire.expect(message, int, int, str, bytes)
            if not 0 <= target < len(self._ends):
                raise wire.WireError(f"call to peer {target} of {len(self._ends)}")
            with self._lock:
                if self._in_flight >= MAX_CALLS_IN_FLIGHT:
                    raise wire.WireError(
                        f"more than {MAX_CALLS_IN_FLIGHT} RPCs in flight at once")
                self._in_flight += 1
            if self._terminated or not self._calls.submit(
                    lambda: self._call_out(key, target, svc_meth, request)):
                with self._lock:
                    self._in_flight -= 1
        elif tag == "save":
            raftstate, snapshot = wire.expect(message, bytes, bytes)
            self._persister.save(raftstate, snapshot)
        elif tag == "apply":
            key, fields = wire.expect(message, int, tuple)
            if self._applies.qsize() >= MAX_QUEUED_APPLIES:
                raise wire.WireError(
                    f"more than {MAX_QUEUED_APPLIES} apply messages sent without waiting")
            self._applies.put((key, _apply_msg(fields)))
        elif tag in ("result", "handled"):
            key, value = message[1:3] if len(message) == 3 else (None, None)
            self._answer(key, "ok", value)
        elif tag == "error":
            key, text = wire.expect(message, int, str)
            self._answer(key, "error", text)
        elif tag == "handler_error":
            key, exc_repr, tb_text = wire.expect(message, int, str, str)
            self._answer(key, "error", PeerHandlerError(exc_repr, tb_text))
        elif tag == "hello":
            _pid, methods, skipped = wire.expect(message, int, list, dict)
            self.methods = [m for m in methods if isinstance(m, str)]
            self.skipped = {k: v for k, v in skipped.items()
                            if isinstance(k, str) and isinstance(v, str)}
            self._hello.fill("ok", None)
        elif tag == "make_failed":
            (text,) = wire.expect(message, str)
            self._hello.fill("error", text)
        elif tag == "uncaught":
            name, exc_repr, tb_text = wire.expect(message, str, str, str)
            self._failures.record(
                f"uncaught exception in thread {name!r} of {self.label}: {exc_repr}\n{tb_text}"
            )
        elif tag == "codec_error":
            target, svc_meth, text = wire.expect(message, int, str, str)
            if 0 <= target < len(self._ends):  # an RPC's args: as the network reports its own
                self._ends[target].report_codec_error(svc_meth, text)
            else:
                self._failures.record_cause(CODEC_ERROR, f"{self.label}: {svc_meth}: {text}")
        else:
            raise wire.WireError(f"unknown message {tag!r}")

    def _call_out(self, key: int, target: int, svc_meth: str, request: bytes) -> None:
        """One RPC of this peer through the tester's network."""
        unknown = ""
        reply: bytes | None = None
        try:
            reply = self._ends[target].call_raw(svc_meth, request)
        except UnknownMethodError as err:
            unknown = str(err)
            self._failures.record(f"{self.label}: {unknown}")
        finally:
            with self._lock:
                self._in_flight -= 1
        try:
            self._conn.send(("call_result", key, reply, unknown))
        except wire.Closed:
            pass

    def _handle(self, method: str, request: bytes) -> bytes | None:
        """Deliver one RPC to this peer (on a network pool thread); its reply bytes."""
        slot = _Slot()
        with self._lock:
            if self._terminated or self._death is not None:
                return None
            self._next += 1
            key = self._next
            self._waiting[key] = slot
        try:
            self._conn.send(("handle", key, method, request))
        except wire.Closed:
            return None
        slot.event.wait()
        if slot.kind == "error":
            raise slot.value
        if slot.kind != "ok" or not isinstance(slot.value, bytes):
            return None
        return slot.value

    def _forward_applies(self) -> None:
        """Put the peer's apply messages on the tester's channel, one at a time, in order."""
        while True:
            item = self._applies.get()
            if item is None:
                return
            key, msg = item
            ok = self._apply_ch.put(msg)
            try:
                self._conn.send(("applied", key, ok))
            except wire.Closed:
                pass


def _apply_msg(fields: tuple[Any, ...]) -> ApplyMsg:
    """An ApplyMsg from the peer's plain fields, each checked for its type."""
    if len(fields) != 7:
        raise wire.WireError(f"an ApplyMsg has 7 fields, got {len(fields)}")
    command_valid, command, command_index, snapshot_valid, snapshot, snapshot_term, \
        snapshot_index = fields
    checks: list[tuple[str, Any, Callable[[Any], bool]]] = [
        ("command_valid", command_valid, lambda v: v is None or isinstance(v, bool)),
        ("command_index", command_index, _is_int_or_none),
        ("snapshot_valid", snapshot_valid, lambda v: v is None or isinstance(v, bool)),
        ("snapshot", snapshot, lambda v: v is None or isinstance(v, bytes)),
        ("snapshot_term", snapshot_term, _is_int_or_none),
        ("snapshot_index", snapshot_index, _is_int_or_none),
    ]
    for name, value, ok in checks:
        if not ok(value):
            raise wire.WireError(f"ApplyMsg.{name} has type {type(value).__name__}")
    return ApplyMsg(
        command_valid=bool(command_valid), command=command,
        command_index=command_index if command_index is not None else 0,
        snapshot_valid=bool(snapshot_valid),
        snapshot=snapshot if snapshot is not None else b"",
        snapshot_term=snapshot_term if snapshot_term is not None else 0,
        snapshot_index=snapshot_index if snapshot_index is not None else 0,
    )


def _is_int_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))
