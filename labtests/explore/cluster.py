"""The cluster a schedule runs against: peers, links, crashes, and the tester's readers.

Like the graded tests' ``Config`` (same fake network with long delays, fresh
end names per restart, a crashed peer's persister copied so its old instance
cannot write into its successor's state, apply readers that feed what is
applied to the checks), but shaped for fault schedules:

* connectivity is a matrix of links, one per ordered pair (``src`` calling
  ``dst``), each ``ok``, ``cut`` (the network's end disabled: a one-way cut) or
  ``deaf`` (the request is delivered and handled, the reply lost).  ``deaf`` is
  done by the ends handed to the Raft: they call the real end and drop the
  reply; the network itself is unchanged;
* the Raft's RPC handlers are reached through a thin proxy and its persister
  is a subclass, so a crash (``crash_after``) or a spell of lost requests
  (``mute_after``) can be armed to happen right after a peer handled an RPC
  or saved its state;
* every observation goes to :class:`~labtests.explore.monitors.Monitors`.

Handler names are matched by substring to tell RPC kinds apart (``vote``,
``append``, ``install``/``snapshot``), since implementations choose them.
"""

from __future__ import annotations

import heapq
import itertools
import pickle
import random
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from labrpc import Network, Server, Service
from labrpc.network import handler_names
from labtests.explore.monitors import QUORUM_BOUND, Monitors
from raft.apply_channel import ApplyChannel, ChannelClosed
from raft.debuglog import dlog
from raft.persister import Persister

POLL = 0.010  # virtual s between get_state samples of every live peer
QUORUM_EVERY = 10  # sample rounds between two quorum-liveness checks (they cost more)


def encode_snapshot(index: int, commands: list[Any]) -> bytes:
    """The tester's snapshot bytes (opaque to Raft): the applied commands up to ``index``."""
    return pickle.dumps((index, commands))


def decode_snapshot(data: bytes) -> tuple[int, list[Any]]:
    index, commands = pickle.loads(data)
    return int(index), list(commands)


def rpc_event(method: str) -> str | None:
    """The ``crash_after`` event a handler name stands for (None: not a Raft RPC we know)."""
    m = method.lower()
    if "vote" in m:
        return "vote"
    if "append" in m:
        return "append"
    if "install" in m or "snapshot" in m:
        return "snapshot"
    return None


class HookedPersister(Persister):
    """A persister that reports each save (the ``persist`` crash trigger)."""

    def __init__(self, on_save: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.on_save = on_save

    def save(self, raftstate: bytes | None, snapshot: bytes | None) -> None:
        super().save(raftstate, snapshot)
        if self.on_save is not None:
            self.on_save()


def _handler_proxy(rf: Any, on_handled: Callable[[str], None]) -> Any:
    """An object with ``rf``'s RPC handlers (same names) that reports each handled call."""
    attrs = {name: _forward(getattr(rf, name), name, on_handled)
             for name in handler_names(type(rf))}  # what labrpc would serve, by its rule
    return type("Raft", (), attrs)()


def _forward(bound: Any, name: str, on_handled: Callable[[str], None]) -> Any:
    def handler(self: Any, args: Any) -> Any:
        reply = bound(args)
        on_handled(name)
        return reply

    return handler


class PeerEnd:
    """The end a Raft uses to call one peer: the network's end, plus ``deaf`` links."""

    def __init__(self, cluster: Cluster, src: int, inc: int, dst: int, end: Any) -> None:
        self._cluster = cluster
        self._src = src
        self._inc = inc
        self._dst = dst
        self._end = end

    def call(self, svc_meth: str, args: Any) -> Any:
        c = self._cluster
        sent = c.now()
        known = c.monitors.known_term(self._dst)
        vote = rpc_event(svc_meth) == "vote"
        dst_inc = c.inc[self._dst]
        if vote:
            c.monitors.vote_sent(self._src, self._inc, sent)
        reply = self._end.call(svc_meth, args)
        if reply is None:
            return None
        if c.link[self._src][self._dst] == "deaf":
            return None
        now = c.now()
        c.monitors.reply(self._src, self._inc, self._dst, known, c.inc[self._dst], svc_meth,
                         sent, now)
        if vote and c.inc[self._dst] == dst_inc:
            c.monitors.vote_reply(self._src, self._inc, self._dst, dst_inc, sent, now)
        c.answered(self._dst, dst_inc, rpc_event(svc_meth))
        return reply


class Cluster:
    """``n`` peers of one implementation on one network, driven by a schedule runner."""

    def __init__(self, n: int, impl: Any, seed: int, monitors: Monitors,
                 snapshot_every: int = 0) -> None:
        self.n = n
        self.impl = impl
        self.monitors = monitors
        self.snapshot_every = snapshot_every
        self.mu = threading.Lock()
        self.t0 = time.monotonic()
        self.rng = random.Random(f"{seed}:explore-cluster")
        self.net = Network(rng=random.Random(f"{seed}:explore-network"),
                           on_handler_error=self._handler_error)
        self.net.long_delays(True)
        self.link = [["ok"] * n for _ in range(n)]
        self.alive = [False] * n
        self.frozen = [False] * n
        self.muted = [0] * n  # > 0: requests to the peer are lost (mute_after), it runs on
        self.inc = [0] * n  # bumped at every crash and restart
        self.rafts: list[Any] = [None] * n
        self.persisters: list[HookedPersister] = [HookedPersister() for _ in range(n)]
        self.images: list[Persister | None] = [None] * n  # state frozen by a delay-0 trigger
        self.endnames: list[list[str] | None] = [None] * n
        self.channels: list[ApplyChannel | None] = [None] * n
        self.all_channels: list[ApplyChannel] = []
        # (peer, event, delay, down, crash|mute): armed by crash_after and mute_after
        self.triggers: list[tuple[int, str, float, float, str]] = []
        # (time, seq, crash|restart|mute|unmute, peer)
        self.actions: list[tuple[float, int, str, int]] = []
        self._seq = 0
        self.wake = threading.Condition(self.mu)
        self.finished = threading.Event()
        self._names = 0
        self.next_cmd = 100
        self.unreliable = False
        self.reorder = False
        self.quorum_since: dict[tuple[tuple[int, int], ...], float] = {}
        # (t, kind, peer, fields) for a timeline, when asked for; recorded with times the
        # cluster read anyway, so recording never changes the run
        self.observed: list[tuple[float, str, int, dict[str, Any]]] | None = None
        self.threads: list[threading.Thread] = []
        # Told each sample's time (read anyway): how far a run got if its process dies
        self.on_time: Callable[[float], None] | None = None

    # -- time and errors ---------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _handler_error(self, svc_meth: str, exc: BaseException, tb_text: str) -> None:
        self.monitors.fail("crash", self.now(), f"RPC handler {svc_meth} raised {exc!r}\n{tb_text}")

    def thread_error(self, name: str, exc: BaseException | None, tb_text: str) -> None:
        self.monitors.fail("crash", self.now(),
                           f"uncaught exception in thread {name!r}: {exc!r}\n{tb_text}")

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    # -- links --------------------------------------------------------------------

    def _apply_link(self, src: int, dst: int) -> None:
        """Enable or disable the network end ``src`` uses to call ``dst``.  Holds mu."""
        names = self.endnames[src]
        if names is None or not self.alive[src]:
            return
        on = (self.link[src][dst] != "cut" and not self.frozen[src] and not self.frozen[dst]
              and not self.muted[dst])
        self.net.enable(names[dst], on)

    def set_link(self, src: int, dst: int, state: str) -> None:
        with self.mu:
            self.link[src][dst] = state
            self._apply_link(src, dst)

    def partition(self, groups: list[list[int]]) -> None:
        where = {p: k for k, g in enumerate(groups) for p in g}
        with self.mu:
            for i in range(self.n):
                for j in range(self.n):
                    same = i == j or (i in where and where.get(i) == where.get(j))
                    self.link[i][j] = "ok" if same else "cut"
                    self._apply_link(i, j)

    # -- crash and restart ---------------------------------------------------------

    def start_peer(self, i: int) -> None:
        """Start (or restart) peer ``i`` from what it persisted."""
        with self.mu:
            if self.alive[i]:
                return
            image = self.images[i]
            self.images[i] = None
            old = image if image is not None else self.persisters[i]
            persister = HookedPersister()
            persister.save(old.read_raft_state(), old.read_snapshot())
            self.inc[i] += 1
            inc = self.inc[i]
            persister.on_save = lambda: self._event(i, inc, "persist")
            self.persisters[i] = persister
            names = []
            for _ in range(self.n):
                self._names += 1
                names.append(f"x{i}-{inc}-{self._names}-{self.rng.randrange(10**6)}")
            self.endnames[i] = names
            ends = []
            for j in range(self.n):
                end = self.net.make_end(names[j])
                self.net.connect(names[j], j)
                ends.append(PeerEnd(self, i, inc, j, end))
            self.frozen[i] = False
            self.alive[i] = True
            for j in range(self.n):
                self._apply_link(i, j)
                self._apply_link(j, i)
            snapshot = persister.read_snapshot()
            ch = ApplyChannel()
            self.channels[i] = ch
            self.all_channels.append(ch)
        snap_index, commands = (decode_snapshot(snapshot) if snapshot else (0, None))
        self.monitors.restarted(i, snap_index, commands, self.now())
        dlog("TEST", None, "explore: start S%d (run %d)", i, inc)
        try:
            rf = self.impl.make(ends, i, persister, ch)
        except Exception as exc:  # noqa: BLE001 - the Raft's error, reported as a violation
            with self.mu:
                self.alive[i] = False
            self.monitors.fail("crash", self.now(),
                               f"S{i}: make() raised {exc!r}\n{traceback.format_exc()}")
            return
        proxy = _handler_proxy(rf, lambda name: self._event(i, inc, rpc_event(name)))
        with self.mu:
            self.rafts[i] = rf
        srv = Server()
        srv.add_service(Service(proxy, name="Raft"))
        self.net.add_server(i, srv)
        xlog = {k: c for k, c in enumerate(commands)} if commands else {}
        self._spawn(f"explore-reader-{i}.{inc}", self._reader, i, inc, rf, ch, xlog)

    def crash(self, i: int) -> None:
        """Kill peer ``i``; keep what it persisted (or the state a trigger froze)."""
        with self.mu:
            if not self.alive[i]:
                return
            self.alive[i] = False
            self.inc[i] += 1
            rf = self.rafts[i]
            self.rafts[i] = None
            if self.images[i] is None:
                self.images[i] = self.persisters[i].copy()
            names = self.endnames[i] or []
            self.endnames[i] = None
            ch = self.channels[i]
            self.channels[i] = None
        dlog("TEST", None, "explore: crash S%d", i)
        self.net.delete_server(i)
        for name in names:
            self.net.delete_end(name)
        if rf is not None:
            try:
                rf.kill()
            except Exception as exc:  # noqa: BLE001 - reported as a violation
                self.monitors.fail("crash", self.now(),
                                   f"S{i}: kill() raised {exc!r}\n{traceback.format_exc()}")
        if ch is not None:
            ch.close()

    # -- triggers and timed actions --------------------------------------------------

    def arm(self, peer: int, event: str, delay: float, down: float, kind: str = "crash") -> None:
        """On ``peer``'s next ``event``: crash it (``kind`` crash) or mute it (mute)."""
        with self.mu:
            self.triggers.append((peer, event, delay, down, kind))

    def mute(self, i: int, on: bool) -> None:
        """Lose every request to peer ``i`` (or stop doing so); it keeps running."""
        with self.mu:
            self.muted[i] = max(0, self.muted[i] + (1 if on else -1))
            for j in range(self.n):
                self._apply_link(j, i)
        dlog("TEST", None, "explore: %s S%d", "mute" if on else "unmute", i)

    def unmute_all(self) -> None:
        with self.mu:
            self.muted = [0] * self.n
            for i in range(self.n):
                for j in range(self.n):
                    self._apply_link(j, i)

    def schedule_action(self, at: float, what: str, peer: int) -> None:
        """Lock held or not (re-entrant use goes through :meth:`_schedule`)."""
        with self.mu:
            self._schedule(at, what, peer)

    def _schedule(self, at: float, what: str, peer: int) -> None:
        heapq.heappush(self.actions, (at, self._seq, what, peer))
        self._seq += 1
        self.wake.notify_all()

    def _event(self, i: int, inc: int, event: str | None) -> None:
        """Peer ``i`` (run ``inc``) saved its state or handled an RPC: fire a trigger?"""
        if event is None:
            return
        with self.mu:
            if self.inc[i] != inc or not self.alive[i] or self.frozen[i]:
                return
            k = next((k for k, (peer, ev, _d, _w, kind) in enumerate(self.triggers)
                      if peer == i and ev == event and kind == "crash"), None)
            if k is None:
                return
            _, _, delay, down, kind = self.triggers.pop(k)
            now = self.now()
            if delay == 0:
                # Crash at this very moment: what is persisted now is what survives,
                # and nothing the peer does from here on reaches anyone.
                self.images[i] = self.persisters[i].copy()
                self.frozen[i] = True
                for j in range(self.n):
                    self._apply_link(i, j)
                    self._apply_link(j, i)
            self._schedule(now + delay, "crash", i)
            self._schedule(now + delay + down, "restart", i)
        dlog("TEST", None, "explore: S%d %s triggers its crash in %.3fs", i, event, delay)

    def answered(self, i: int, inc: int, event: str | None) -> None:
        """Run ``inc`` of peer ``i``'s reply to an RPC reached its caller: start a mute?

        Called in the caller's thread before the caller sees the reply, so a mute
        with ``delay`` 0 begins before the caller can act on the answer (a new
        leader's first heartbeat to its voter is lost)."""
        if event is None:
            return
        with self.mu:
            if self.inc[i] != inc or not self.alive[i]:
                return
            k = next((k for k, (peer, ev, _d, _w, kind) in enumerate(self.triggers)
                      if peer == i and ev == event and kind == "mute"), None)
            if k is None:
                return
            _, _, delay, down, _kind = self.triggers.pop(k)
            now = self.now()
            if delay == 0:
                self.muted[i] += 1
                for j in range(self.n):
                    self._apply_link(j, i)
            else:
                self._schedule(now + delay, "mute", i)
            self._schedule(now + delay + down, "unmute", i)
        dlog("TEST", None, "explore: S%d answered a %s: muted %s for %.3fs", i, event,
             "now" if delay == 0 else f"in {delay:.3f}s", down)

    def due_actions(self, now: float) -> list[tuple[str, int]]:
        with self.mu:
            out = []
            while self.actions and self.actions[0][0] <= now + 1e-9:
                _, _, what, peer = heapq.heappop(self.actions)
                out.append((what, peer))
            return out

    # -- observers: poller, readers, clients ---------------------------------------------

    def live(self) -> list[tuple[int, int, Any]]:
        with self.mu:
            return [(i, self.inc[i], self.rafts[i]) for i in range(self.n)
                    if self.alive[i] and self.rafts[i] is not None]

    def sample(self, i: int, inc: int, rf: Any) -> tuple[int, bool] | None:
        """``get_state()`` of run ``inc`` of peer ``i``, reported if that run is still current."""
        term, leader = rf.get_state()
        with self.mu:
            current = self.inc[i] == inc and self.alive[i]
        if not current:
            return None
        now = self.now()
        if self.on_time is not None:
            self.on_time(now)
        self.monitors.state(i, inc, term, bool(leader), now)
        if self.observed is not None:
            self.observed.append((now, "state", i, {"term": term, "leader": bool(leader)}))
        return term, bool(leader)

    def set_network(self, *, unreliable: bool | None = None, reorder: bool | None = None) -> None:
        with self.mu:
            if unreliable is not None:
                self.unreliable = unreliable
                self.net.reliable(not unreliable)
            if reorder is not None:
                self.reorder = reorder
                self.net.long_reordering(reorder)

    def poller(self) -> None:
        rounds = 0
        while not self.finished.is_set():
            states: dict[int, tuple[int, int, bool]] = {}
            for i, inc, rf in self.live():
                got = self.sample(i, inc, rf)
                if got is not None:
                    states[i] = (inc, got[0], got[1])
            rounds += 1
            if rounds % QUORUM_EVERY == 0:
                self.check_quorum(states, self.now())
            self.finished.wait(POLL)

    def check_quorum(self, states: dict[int, tuple[int, int, bool]], now: float) -> None:
        """The ``quorum-liveness`` check (see :mod:`labtests.explore.monitors`).

        For every majority ``S`` of live peers that are pairwise connected both ways
        on a reliable network without long reordering, where every other peer is
        down, cannot send to ``S`` at all, or is a leader of a term below all of
        ``S``'s (a stale leader): some leader of a term at least ``S``'s highest must
        show up within :data:`QUORUM_BOUND`.  Any change restarts the clock of ``S``.
        """
        with self.mu:
            healthy_net = not self.unreliable and not self.reorder
            link = [row[:] for row in self.link]
            alive = self.alive[:]
            for dst in range(self.n):
                if self.muted[dst]:
                    for src in range(self.n):
                        link[src][dst] = "cut"
        quorum = self.n // 2 + 1
        keep: dict[tuple[tuple[int, int], ...], float] = {}
        top_all = max((t for _, t, _ in states.values()), default=-1)
        if any(leader and t >= top_all for _, t, leader in states.values()):
            healthy_net = False  # a leader of the highest term: nothing to wait for
        if healthy_net:
            up = [i for i in states if alive[i]]
            for size in range(quorum, len(up) + 1):
                for group in itertools.combinations(up, size):
                    if not self._quorum_ok(group, states, link, alive):
                        continue
                    top = max(states[i][1] for i in group)
                    if any(leader and term >= top for _, term, leader in states.values()):
                        continue
                    key = tuple((i, states[i][0]) for i in group)
                    since = self.quorum_since.get(key, now)
                    keep[key] = since
                    if now - since >= QUORUM_BOUND:
                        names = ", ".join(f"S{i}" for i in group)
                        terms = ", ".join(f"S{i}: term {t}" for i, (_, t, _) in
                                          sorted(states.items()))
                        self.monitors.fail(
                            "quorum-liveness", now,
                            f"{names} (a majority, up and connected both ways on a reliable "
                            f"network since {since:.3f}s; every other peer down, cut off "
                            f"from them, or a stale leader of a lower term) elected no leader "
                            f"in {QUORUM_BOUND:.0f}s ({terms})")
                        return
        self.quorum_since = keep

    def _quorum_ok(self, group: tuple[int, ...], states: dict[int, tuple[int, int, bool]],
                   link: list[list[str]], alive: list[bool]) -> bool:
        for a in group:
            for b in group:
                if a != b and link[a][b] != "ok":
                    return False
        low = min(states[i][1] for i in group)
        for m in range(self.n):
            if m in group or not alive[m]:
                continue
            if all(link[m][q] == "cut" for q in group):
                continue
            st = states.get(m)
            if st is None or not st[2] or st[1] >= low:
                return False
        return True

    def _reader(self, i: int, inc: int, rf: Any, ch: ApplyChannel, xlog: dict[int, Any]) -> None:
        k = self.snapshot_every
        while True:
            try:
                m = ch.get()
            except ChannelClosed:
                return
            now = self.now()
            if getattr(m, "snapshot_valid", False):
                try:
                    index, commands = decode_snapshot(m.snapshot)
                except Exception:  # noqa: BLE001 - reported
                    self.monitors.fail("state-machine-safety", now,
                                       f"S{i} delivered a snapshot that is not the tester's")
                    return
                self.monitors.snapshot(i, index, commands, now)
                if self.observed is not None:
                    self.observed.append((now, "snapshot", i, {"i": index, "src": "installed"}))
                xlog.clear()
                xlog.update(enumerate(commands))
            elif getattr(m, "command_valid", False):
                index = m.command_index
                self.monitors.applied(i, index, m.command, now)
                if self.observed is not None:
                    self.observed.append((now, "apply", i, {"i": index, "c": m.command}))
                xlog[index] = m.command
                if k and (index + 1) % k == 0:
                    data = encode_snapshot(index, [xlog.get(j) for j in range(index + 1)])
                    rf.snapshot(index, data)

    def new_command(self) -> int:
        with self.mu:
            self.next_cmd += 1
            return self.next_cmd

    def submit(self, cmd: Any, order: list[int]) -> tuple[int, int, int] | None:
        """Offer ``cmd`` to the peers in ``order`` until one accepts: (peer, index, term)."""
        self.monitors.submitted_cmd(cmd)
        for i in order:
            with self.mu:
                rf = self.rafts[i] if self.alive[i] else None
                inc = self.inc[i]
            if rf is None:
                continue
            index, term, ok = rf.start(cmd)
            with self.mu:
                current = self.inc[i] == inc and self.alive[i]
            if not current:
                if ok:  # accepted by a run that is gone: its index is unknown
                    self.monitors.unrecorded(cmd)
                continue
            self.monitors.started(i, inc, cmd, index, term, bool(ok), self.now())
            if ok:
                dlog("TEST", None, "explore: S%d accepted %r at index %d term %d", i, cmd,
                     index, term)
                return i, index, term
        return None

    def client(self, count: int, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(count):
            if self.finished.is_set():
                return
            cmd = self.new_command()
            for _attempt in range(3):
                order = list(range(self.n))
                rng.shuffle(order)
                if self.submit(cmd, order) is not None:
                    break
                self.finished.wait(0.05)

    def start_client(self, count: int) -> None:
        self._spawn(f"explore-client-{self._seq}", self.client, count,
                    self.rng.randrange(2**31))

    # -- the end ---------------------------------------------------------------------

    def cleanup(self) -> None:
        self.finished.set()
        with self.mu:
            rafts = [(i, rf) for i, rf in enumerate(self.rafts) if rf is not None]
            self.rafts = [None] * self.n
            self.alive = [False] * self.n
        for i, rf in rafts:
            try:
                rf.kill()
            except Exception as exc:  # noqa: BLE001 - reported
                self.monitors.fail("crash", self.now(), f"S{i}: kill() raised {exc!r}")
        self.net.cleanup()
        for ch in self.all_channels:
            ch.close()
