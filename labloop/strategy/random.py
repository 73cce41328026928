"""Random search: the floor every strategy must beat, and a baseline for benchmarks.

Stateless like every strategy: the draw depends only on ``spec.seed`` and how many trials exist, so a resumed
campaign continues the same sequence. Seed points still run first; observed, failed and pending points are never
proposed again (in pool mode: rows are drawn without replacement). The bookkeeping is the shared
:class:`~labloop.strategy.bookkeeping.StrategyBase` (no GP model: it does not load the botorch strategy).
"""

from __future__ import annotations

import random
from typing import Any

from labloop.errors import LabloopError
from labloop.spec import CampaignSpec, RandomOptions, checked_options

from .base import Proposal
from .bookkeeping import Bookkeeping, StrategyBase
from .space import CandidatePool


class RandomStrategy(StrategyBase):
    """Uniform random points (Sobol-free, independent draws) or random unused pool rows."""

    name = "random"
    #: the options this strategy accepts (``strategy.options`` and keyword options), checked on construction
    options_model: type[RandomOptions] = RandomOptions

    def __init__(self, spec: CampaignSpec, candidates: CandidatePool | None = None, **options: Any):
        opts = checked_options(self.options_model, {**spec.strategy.options, **options}, self.name)
        super().__init__(spec, candidates, grid_limit=opts.grid_limit)

    def propose(self, book: Bookkeeping, n: int) -> list[Proposal]:
        out: list[Proposal] = []
        rng = random.Random(self.spec.seed * 1_000_003 + book.count)
        while len(out) < n:
            if self.pool is not None:
                free = book.free_rows().tolist()
                if not free:
                    break
                x = self.pool.X[rng.choice(free)]
            else:
                pinned = book.pinned_sample(seed=rng.randrange(2**31))  # with the fixed values, if asked for
                if pinned is None:
                    raise LabloopError(
                        f"no random point with {book.fixed} satisfies the constraints",
                        "ask without fixed values, or loosen the constraints",
                    )
                x = pinned
                if book.is_taken(x):
                    continue
            out.append(book.take(x, "random"))
        return out
