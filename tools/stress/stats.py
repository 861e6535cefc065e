"""Small, pure statistics for the stress runner: per-test timing and failure-rate bounds.

Why an exact bound: a stress run's point is the claim "this test (almost) never
fails".  With 0 failures in n runs the usual "rule of three" (3/n) is an
approximation of the exact one-sided Clopper-Pearson bound 1 - alpha**(1/n); with a
few failures the normal approximation is poor, so we solve the binomial tail exactly
(bisection on the CDF; n is at most some thousands, so this is instant).

The bound assumes independent runs with one fixed failure probability.  Timing-based
tests run under varying load are not quite that, which is one more reason the
summary prints the machine's load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (stable for large n)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k + 1):
        log_term = (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                    + i * log_p + (n - i) * log_q)
        total += math.exp(log_term)
    return min(1.0, total)


def failure_rate_upper_bound(failures: int, runs: int, confidence: float = 0.95) -> float:
    """Exact one-sided (Clopper-Pearson) upper confidence bound on the failure probability.

    The smallest p at which seeing ``failures`` or fewer in ``runs`` has probability
    at most 1 - confidence.  For 0 failures this is 1 - (1-confidence)**(1/runs).
    """
    if runs <= 0:
        return 1.0
    if not 0 <= failures <= runs:
        raise ValueError("failures must be between 0 and runs")
    alpha = 1.0 - confidence
    if failures == runs:
        return 1.0
    if failures == 0:
        return 1.0 - alpha ** (1.0 / runs)
    lo, hi = failures / runs, 1.0
    for _ in range(100):  # bisection to ~1e-30: far beyond what we print
        mid = (lo + hi) / 2
        if binom_cdf(failures, runs, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def fmt_pct(x: float) -> str:
    pct = 100.0 * x
    return f"{pct:.1f} %" if pct >= 0.1 else f"{pct:.2g} %"


def bound_sentence(failures: int, runs: int, confidence: float = 0.95) -> str:
    """E.g. ``0 of 300 failed: failure rate < 1.0 % at 95 % confidence``."""
    if runs == 0:
        return "no runs finished: no bound on the failure rate"
    bound = failure_rate_upper_bound(failures, runs, confidence)
    observed = "" if failures == 0 else f" ({fmt_pct(failures / runs)})"
    return (f"{failures} of {runs} failed{observed}: failure rate < {fmt_pct(bound)} "
            f"at {confidence * 100:.0f} % confidence")


@dataclass
class TestStats:
    """Per-test tally of finished runs (durations kept: a stress run has at most thousands).

    ``runs`` counts conclusive runs (passed or failed): the failure-rate bound is
    over those.  An inconclusive run (failed on an overloaded machine) is counted
    apart until a rerun of it is conclusive; ``reruns`` counts those reruns.
    """

    name: str
    planned: int = 0
    durations: list[float] = field(default_factory=list)
    failures: int = 0
    inconclusive: int = 0
    reruns: int = 0
    artifacts: int = 0  # failures that match a known artifact of the lab's tests

    __test__ = False  # not a pytest test class, despite the name

    def add_artifact(self) -> None:
        """One of the failures matched a known artifact (labtests.artifacts): it stays a
        failure (the verdict is faithful) and is counted here too."""
        self.artifacts += 1

    @property
    def runs(self) -> int:
        return len(self.durations)

    def add(self, duration: float, failed: bool) -> None:
        self.durations.append(duration)
        if failed:
            self.failures += 1

    def add_inconclusive(self) -> None:
        self.inconclusive += 1

    def rerun_of_inconclusive(self) -> None:
        """A rerun's result replaces an inconclusive run (call before adding the result)."""
        self.inconclusive -= 1
        self.reruns += 1

    @property
    def mean(self) -> float:
        return sum(self.durations) / len(self.durations) if self.durations else 0.0

    @property
    def std(self) -> float:
        """Sample standard deviation (n-1): the spread we expect of the next run."""
        n = len(self.durations)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((d - m) ** 2 for d in self.durations) / (n - 1))

    @property
    def max(self) -> float:
        return max(self.durations, default=0.0)
