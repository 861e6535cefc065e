"""Draw a random fault schedule from a seed.

The generator is a small "nemesis" in the Jepsen sense: it alternates periods
of trouble and calm, choosing among faults the lab's tests use (symmetric
partitions, minority/majority splits, crashes, unreliable and reordering
networks) and faults they never use (one-way cuts, lost replies, crashes at the
moment a peer saved its state or handled an RPC, clients that offer commands to
stale leaders).  Weights favour the faults that break real Raft bugs; every
schedule is still a plain :class:`~labtests.explore.schedule.Schedule`, so what
was generated is exactly what a failure report prints.

Besides single faults, a few compound moves reproduce the situations the
classic bugs need (each is a short sequence of ordinary steps):

* leader churn -- rounds of cutting off a random minority, each followed by
  commands that only that side's leader may accept (the Figure-8 pattern);
* competing candidates around a bridge -- everyone apart for a while, then two
  halves that cannot talk joined by one peer that crashes right after it votes;
* a bare majority electing while its voters go deaf right after they vote
  (a vote that did not reset the timer shows as an early election);
* a stale leader heard again one way -- a peer cut off while the others move
  on, then its requests delivered but its replies lost, while one of the
  others restarts, followed by a quiet spell long enough for liveness checks.

One ``random.Random(seed)`` drives every choice, and the schedule's own run
seed is drawn from it: ``generate(seed)`` is a pure function.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from labtests.explore.schedule import EVENTS, Schedule, Step


@dataclass(frozen=True)
class GeneratorOptions:
    """Bounds of the generated schedules (the CLI exposes the useful ones)."""

    peers: tuple[int, ...] = (3, 3, 5)  # drawn uniformly: 3 peers twice as often
    min_horizon: float = 6.0
    max_horizon: float = 30.0
    mean_gap: float = 0.8  # mean virtual seconds between steps
    snapshot_choices: tuple[int, ...] = (0, 0, 10, 5)


def _r(x: float) -> float:
    return round(x, 3)


def _split(rng: random.Random, n: int) -> list[list[int]]:
    """A random partition of the peers: majority/minority, isolate one, or random groups."""
    peers = list(range(n))
    rng.shuffle(peers)
    kind = rng.random()
    if kind < 0.45:  # majority | minority
        k = n // 2 + 1
        return [sorted(peers[:k]), sorted(peers[k:])]
    if kind < 0.75:  # isolate one peer
        return [sorted(peers[1:]), [peers[0]]]
    groups: list[list[int]] = [[] for _ in range(rng.randint(2, min(3, n)))]
    for p in peers:
        groups[rng.randrange(len(groups))].append(p)
    return [sorted(g) for g in groups if g]


def generate(seed: int, options: GeneratorOptions | None = None) -> Schedule:
    """The schedule of ``seed``: same seed, same schedule."""
    o = options or GeneratorOptions()
    rng = random.Random(f"explore-schedule:{seed}")
    n = rng.choice(o.peers)
    horizon = _r(rng.uniform(o.min_horizon, o.max_horizon))
    steps: list[Step] = []
    down: dict[int, float] = {}  # crashed peer -> time it is restarted
    t = _r(rng.uniform(0.2, 1.5))
    while t < horizon:
        for p, back in list(down.items()):
            if back <= t:
                del down[p]
        roll = rng.random()
        if roll < 0.20:
            steps.append(Step(t, "clients", {"count": rng.randint(1, 4)}))
        elif roll < 0.26:
            # Leader churn (the Figure-8 pattern): a few rounds of cutting off a random
            # minority, each followed by commands that only its side's leader may take.
            for _round in range(rng.randint(3, 8)):
                if t + 0.1 >= horizon:
                    break
                peers = list(range(n))
                rng.shuffle(peers)
                k = rng.randint(1, (n - 1) // 2)
                steps.append(Step(t, "partition", {"groups": [sorted(peers[k:]),
                                                              sorted(peers[:k])]}))
                steps.append(Step(_r(t + 0.05), "clients", {"count": rng.randint(1, 3)}))
                t = _r(t + rng.uniform(0.3, 1.5))
            continue
        elif roll < 0.35:
            steps.append(Step(t, "partition", {"groups": _split(rng, n)}))
        elif roll < 0.40:
            # A bare majority elects while the rest are away, and each of its peers goes
            # deaf for a moment once its vote reply arrives: a voter whose timer the vote
            # did not reset times out before the new leader's heartbeats reach it.
            steps.append(Step(t, "partition", {"groups": [[p] for p in range(n)]}))
            t2 = _r(t + rng.uniform(0.5, 2.0))
            if t2 < horizon:
                peers = list(range(n))
                rng.shuffle(peers)
                k = n // 2 + 1
                rest = [[p] for p in sorted(peers[k:])]
                steps.append(Step(t2, "partition", {"groups": [sorted(peers[:k]), *rest]}))
                for p in sorted(peers[:k]):
                    for _vote in range(2):
                        delay = 0.0 if rng.random() < 0.8 else _r(rng.uniform(0.001, 0.01))
                        steps.append(Step(t2, "mute_after", {
                            "peer": p, "event": "vote", "delay": delay,
                            "down": _r(rng.uniform(0.05, 0.4))}))
                t = _r(t2 + rng.uniform(1.0, 3.0))
                continue
        elif roll < 0.47:
            steps.append(Step(t, "partition", {"groups": [list(range(n))]}))  # calm
            if rng.random() < 0.5:
                # A bridge (Jepsen's nemesis): two halves that cannot talk, and one peer
                # that talks to both -- the voter every candidate of both halves needs.
                bridge = rng.randrange(n)
                others = [p for p in range(n) if p != bridge]
                rng.shuffle(others)
                half = len(others) // 2
                for x in others[:half]:
                    for y in others[half:]:
                        steps.append(Step(t, "link", {"src": x, "dst": y, "state": "cut"}))
                        steps.append(Step(t, "link", {"src": y, "dst": x, "state": "cut"}))
        elif roll < 0.55:
            # One-way trouble around one peer: nobody reaches it, or its replies are lost.
            p = rng.randrange(n)
            state = rng.choice(("cut", "deaf"))
            inbound = rng.random() < 0.5
            for q in range(n):
                if q != p:
                    src, dst = (q, p) if inbound else (p, q)
                    steps.append(Step(t, "link", {"src": src, "dst": dst, "state": state}))
        elif roll < 0.60:
            # Competing candidates and one voter that crashes between its vote and the
            # end of the election: everyone apart for a while (terms move on), then a
            # bridge whose middle peer crashes right after it next votes.
            steps.append(Step(t, "partition", {"groups": [[p] for p in range(n)]}))
            t2 = _r(t + rng.uniform(0.5, 3.0))
            if t2 < horizon:
                bridge = rng.randrange(n)
                others = [p for p in range(n) if p != bridge]
                rng.shuffle(others)
                half = len(others) // 2
                steps.append(Step(t2, "partition", {"groups": [list(range(n))]}))
                for x in others[:half]:
                    for y in others[half:]:
                        steps.append(Step(t2, "link", {"src": x, "dst": y, "state": "cut"}))
                        steps.append(Step(t2, "link", {"src": y, "dst": x, "state": "cut"}))
                steps.append(Step(t2, "crash_after", {
                    "peer": bridge, "event": "vote", "delay": _r(rng.uniform(0.001, 0.01)),
                    "down": _r(rng.uniform(0.001, 0.05))}))
                t = t2
        elif roll < 0.62:
            src, dst = rng.sample(range(n), 2)
            if rng.random() < 0.5:  # two peers that cannot talk, both reaching the rest
                steps.append(Step(t, "link", {"src": src, "dst": dst, "state": "cut"}))
                steps.append(Step(t, "link", {"src": dst, "dst": src, "state": "cut"}))
            else:
                state = rng.choice(("cut", "deaf", "ok"))
                steps.append(Step(t, "link", {"src": src, "dst": dst, "state": state}))
        elif roll < 0.72:
            p = rng.randrange(n)
            if p not in down:
                back = _r(t + rng.expovariate(1 / 1.2))
                steps.append(Step(t, "crash", {"peer": p}))
                if back < horizon:
                    steps.append(Step(back, "restart", {"peer": p}))
                down[p] = back
        elif roll < 0.84:
            p = rng.randrange(n)
            if p not in down:
                kind = rng.random()
                delay = (0.0 if kind < 0.3 else _r(rng.uniform(0.001, 0.02)) if kind < 0.7
                         else _r(rng.uniform(0.02, 0.1)))
                # Short outages matter: a peer back before the next election has
                # forgotten nothing it persisted, and everything it did not.
                gap = _r(rng.uniform(0.0, 0.05) if rng.random() < 0.5
                         else rng.expovariate(1 / 0.3))
                steps.append(Step(t, "crash_after", {
                    "peer": p, "event": rng.choice(EVENTS), "delay": delay, "down": gap}))
                down[p] = _r(t + 2.0)  # roughly: leave it alone for a while
        elif roll < 0.90:
            # A leader cut off while the others move on, then heard again one way
            # only (its replies lost), while one of the others restarts.
            p = rng.randrange(n)
            others = [q for q in range(n) if q != p]
            steps.append(Step(t, "partition", {"groups": [others, [p]]}))
            t2 = _r(t + rng.uniform(0.8, 2.5))
            t3 = _r(t2 + rng.uniform(0.0, 0.5))
            if t3 + 0.3 < horizon:
                for q in others:
                    steps.append(Step(t2, "link", {"src": p, "dst": q, "state": "deaf"}))
                q = rng.choice(others)
                if q not in down:
                    steps.append(Step(t3, "crash", {"peer": q}))
                    steps.append(Step(_r(t3 + rng.uniform(0.0, 0.3)), "restart", {"peer": q}))
                    down[q] = _r(t3 + 0.3)
            # ... and then a quiet spell, long enough for the liveness checks to judge.
            t = _r(t3 + rng.uniform(2.0, 12.0))
            continue
        elif roll < 0.95:
            steps.append(Step(t, "unreliable", {"on": rng.random() < 0.6}))
        else:
            steps.append(Step(t, "reorder", {"on": rng.random() < 0.6}))
        t = _r(t + rng.expovariate(1 / o.mean_gap))
    return Schedule(n=n, seed=rng.randrange(2**31), steps=tuple(sorted(steps, key=lambda s: s.at)),
                    horizon=horizon, snapshot_every=rng.choice(o.snapshot_choices))
