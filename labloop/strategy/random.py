"""Random search: the floor every strategy must beat, and a baseline for benchmarks.

Stateless like every strategy: the draw depends only on ``spec.seed`` and how many trials exist, so a resumed
campaign continues the same sequence. Seed points still run first; observed, failed and pending points are never
proposed again (in pool mode: rows are drawn without replacement).
"""

from __future__ import annotations

import random
from typing import Any

from .space import CandidatePool, SearchSpace
from labloop.spec import CampaignSpec, RandomOptions, checked_options
from .base import Observation, Proposal
from .bayes import BotorchStrategy, _State


class RandomStrategy:
    """Uniform random points (Sobol-free, independent draws) or random unused pool rows."""

    name = "random"
    #: the options this strategy accepts (``strategy.options`` and keyword options), checked on construction
    options_model = RandomOptions

    def __init__(self, spec: CampaignSpec, candidates: CandidatePool | None = None, **options: Any):
        opts = checked_options(self.options_model, {**spec.strategy.options, **options}, self.name)
        # reuse the botorch strategy's bookkeeping (encoding, seed points, taken set), not its model
        bare = spec.model_copy(update={"strategy": spec.strategy.model_copy(update={"options": {}})})
        self._inner = BotorchStrategy(bare, candidates, grid_limit=opts.grid_limit)
        self.spec = spec
        self.space: SearchSpace = self._inner.space
        self.pool = self._inner.pool

    def ask(self, n: int, observations: list[Observation], pending: list[dict[str, Any]]) -> list[Proposal]:
        state = _State(self._inner, observations, pending)
        out = state.seed_points(n)
        rng = random.Random(self.spec.seed * 1_000_003 + state.count)
        while len(out) < n:
            if self.pool is not None:
                free = state._free_rows().tolist()
                if not free:
                    break
                x = self.pool.X[rng.choice(free)]
            else:
                x = self.space.sample(1, seed=rng.randrange(2**31))[0]
                if self._inner._key(x) in state.taken:
                    continue
            state._take(x)
            out.append(state._proposal(x, "random"))
        return out
