"""The lookup-table benchmark protocol, defined once for every method that is compared on it.

Why a module of its own: a comparison is only paired if every method starts from the same rows and is scored by
the same rule. Before issue 13 labloop's replay started from Sobol points snapped to rows, its benchmark script
from ``random.Random(seed).sample`` and the peers' script from ``numpy.random.default_rng(seed).choice``, and the
top-1% target was ``max(1, N // 100)`` rows for one and ``ceil(0.01 N)`` for the other. ``labloop replay
--random-start``, ``benchmarks/replay_tables.py`` and ``benchmarks/peers.py`` (which runs in another virtualenv,
with BayBE and Ax) all import these functions; the module needs numpy only, so the peers' environment can load it
without the rest of labloop.

Counting with batches: the starting rows are measured first, one at a time, and a target found among them counts
its position; after that experiments are counted to the end of the *round* (batch of ``q`` proposals) in which
the first target row was measured, as a lab pays for the whole round before it sees the result. ``rounds`` is the
number of proposal rounds until then (0 when a starting row is already a target). With ``q = 1`` this is the
position of the first target row, as in earlier figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

N_START = 5


def start_rows(n_rows: int, seed: int, k: int = N_START) -> list[int]:
    """The ``k`` starting rows of seed ``seed`` on a table of ``n_rows`` rows (distinct, in draw order)."""
    import numpy as np

    if n_rows < 1 or k < 0:
        raise ValueError(f"need n_rows >= 1 and k >= 0, got {n_rows}, {k}")
    return [int(i) for i in np.random.default_rng(seed).choice(n_rows, min(k, n_rows), replace=False)]


def target_rows(values: Sequence[float], maximize: bool, fraction: float = 0.01) -> tuple[set[int], set[int]]:
    """(rows tied with the best value, top-``fraction`` rows): the top rows are those at least as good as the
    ``ceil(fraction * N)``-th best value, ties on that value included (so there may be more than ``ceil``)."""
    if not values:
        raise ValueError("no values")
    score = [v if maximize else -v for v in values]
    ranked = sorted(score, reverse=True)
    k = max(1, math.ceil(fraction * len(score)))
    threshold = ranked[k - 1]
    best = {i for i, s in enumerate(score) if s >= ranked[0]}
    top = {i for i, s in enumerate(score) if s >= threshold}
    return best, top


def experiments_to(start: Sequence[int], rounds: Iterable[Sequence[int]], targets: set[int]) -> tuple[int, int] | None:
    """(experiments, rounds) until the first row of ``targets`` is measured, or None if never (see the module
    docstring for how batches are counted)."""
    for pos, i in enumerate(start, start=1):
        if i in targets:
            return pos, 0
    n = len(start)
    for r, batch in enumerate(rounds, start=1):
        n += len(batch)
        if any(i in targets for i in batch):
            return n, r
    return None


def censored(experiments: int | None, budget: int) -> int:
    """A run that did not reach its target within ``budget`` counts as ``budget + 1`` (medians, differences)."""
    return budget + 1 if experiments is None or experiments > budget else int(experiments)


def paired_wilcoxon(x: Sequence[float], y: Sequence[float]) -> dict:
    """Paired comparison of two methods on the same seeds: median of ``x - y``, wins each way, and the two-sided
    Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``).

    Zero differences (both methods needed the same number of experiments, or neither reached the target) are
    dropped before ranking (``zero_method="wilcox"``, Wilcoxon's own rule) and counted in ``zeros``; if every
    pair is tied the p-value is 1. Ties among the non-zero ``|x - y|`` get average ranks; scipy then uses the
    normal approximation instead of the exact distribution (``method="auto"``). With 5 pairs the smallest
    two-sided p the exact test can give is 2/32 = 0.0625, so "p < 0.05" needs at least 6 seeds.
    """
    if len(x) != len(y):
        raise ValueError(f"paired samples of different lengths: {len(x)} and {len(y)}")
    d = [float(a) - float(b) for a, b in zip(x, y)]
    out = {
        "n": len(d),
        "zeros": sum(v == 0 for v in d),
        "x_better": sum(v < 0 for v in d),
        "y_better": sum(v > 0 for v in d),
        "median_diff": statistics.median(d) if d else None,
        "p": None,
    }
    if not d:
        return out
    if all(v == 0 for v in d):
        out["p"] = 1.0
        return out
    from scipy.stats import wilcoxon

    out["p"] = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided", method="auto").pvalue)
    return out


def geometric_mean(values: Iterable[float]) -> float:
    """Geometric mean of positive ratios (e.g. labloop / BayBE experiments per table)."""
    vals = [float(v) for v in values]
    if not vals or any(v <= 0 for v in vals):
        raise ValueError("geometric mean needs positive values")
    return math.exp(sum(math.log(v) for v in vals) / len(vals))
