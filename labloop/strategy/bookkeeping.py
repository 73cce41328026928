"""What every strategy's ``ask`` must get right besides choosing points: the public base for built-in and plugin
strategies.

Why a base: a strategy is stateless (every ``ask`` rebuilds from the observations and pending points the store
holds), and every strategy needs the same bookkeeping to be correct: run the campaign file's seed points first,
never propose a point that was measured, failed or is in flight (nor twice in one batch), draw pool rows without
replacement, build a proposal that names its pool row, and condition on what is pending. :class:`RandomStrategy`,
:class:`BotorchStrategy` and plugin strategies share it here instead of reaching into each other's privates.

* :class:`StrategyBase`: the search space (or candidate pool; a small fully discrete space is enumerated as one),
  and an ``ask`` that runs the seed points, then the strategy's :meth:`StrategyBase.propose`.
* :class:`Bookkeeping`: everything one ``ask`` derives from the observations, discarded afterwards.

A plugin strategy subclasses :class:`StrategyBase` and implements ``propose(book, n)``: choose points, skip those
``book.is_taken``, record each with ``book.take(x, source, info)``. The worked example, run by
tests/test_bookkeeping.py, is in docs/research/optimizer.md ("Writing a strategy plugin").

**Fixed values** (``ask(..., fixed={name: value})``): a proposal constrained to values of some parameters (the
scheduler asks for one that shares a batch station's profile, labloop/run/batch_share.py). The bookkeeping holds
them as search-space columns (``book.fixed_cols``) and applies them everywhere a point is chosen without a model:
seed points that do not match are left for a later ask, space-filling and random points get the values written in
(``book.pin``), and a pool's free rows are only those that match (none: the ask says so). A model strategy
optimizes its acquisition over the other columns (botorch ``fixed_features``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from labloop.errors import LabloopError
from labloop.spec import CampaignSpec

from .base import Observation, Proposal
from .space import DTYPE, CandidatePool, SearchSpace


def related_tasks(observations: list[Any]) -> dict[str, list[Any]]:
    """Observations of related campaigns (``task`` set), grouped by task, in order of first appearance."""
    out: dict[str, list[Any]] = {}
    for o in observations:
        if getattr(o, "task", None):
            out.setdefault(o.task, []).append(o)
    return out


class Bookkeeping:
    """One ``ask``'s view of the campaign: this campaign's observations (``obs``, encoded as ``obs_X``), the pending
    points (``pend_X``), the points chosen so far in this ask (``chosen``) and the set of every point's key
    (``taken``) that nothing may propose again. Observations of earlier related campaigns (``Observation.task``)
    are kept apart in ``related``: they are not this campaign's trials (not taken, not counted)."""

    def __init__(
        self,
        strategy: StrategyBase,
        observations: list[Observation],
        pending: list[dict[str, Any]],
        fixed: dict[str, Any] | None = None,
    ):
        self.s = strategy
        self.spec: CampaignSpec = strategy.spec
        self.space: SearchSpace = strategy.space
        self.pool: CandidatePool | None = strategy.pool
        self.related = related_tasks(observations)
        observations = [o for o in observations if not o.task] if self.related else observations
        self.obs = observations
        self.obs_X = self.encode([o.params for o in observations], "observation")
        self.pend_X = self.encode(list(pending), "pending point")
        # one batched snap (obs_X and pend_X are snapped already: this is what key() would do row by row)
        self.taken: set[tuple] = {CandidatePool._key(x) for x in self.space.snap(torch.cat([self.obs_X, self.pend_X]))}
        self.chosen: list[Tensor] = []
        #: successful measurements with every objective measured (what a model can learn from)
        self.n_ok = sum(1 for o in observations if not o.failed and self.objective_values(o) is not None)
        #: the values this ask's proposals must take, as search-space column -> snapped encoded value
        self.fixed = dict(fixed or {})
        self.fixed_cols: dict[int, float] = fixed_columns(self.space, self.fixed)

    # ------------------------------------------------------------------------------------------ fixed values
    def pin(self, X: Tensor) -> Tensor:
        """``... x d`` points with the fixed columns set to their values (unchanged without fixed values)."""
        if not self.fixed_cols:
            return X
        X = X.clone()
        for i, v in self.fixed_cols.items():
            X[..., i] = v
        return X

    def matches(self, X: Tensor) -> Tensor:
        """``... x d`` -> ``...`` bool: the points have the fixed values (all True without fixed values)."""
        ok = torch.ones(X.shape[:-1], dtype=torch.bool)
        for i, v in self.fixed_cols.items():
            ok &= (X[..., i] - v).abs() <= 1e-7
        return ok

    def pinned_sample(self, seed: int, skip: int = 0) -> Tensor | None:
        """A space-filling point (Sobol, seeded) with the fixed values written in and still feasible (linear
        constraints), or None when 64 draws found none."""
        for attempt in range(64):
            x = self.space.snap(self.pin(self.space.sample(1, seed=seed, skip=skip + attempt)))
            if not self.fixed_cols or bool(self.space.feasible(x)[0]):
                return x[0]
        return None

    # ------------------------------------------------------------------------------------------ points
    def encode(self, rows: list[dict[str, Any]], what: str) -> Tensor:
        """Parameter dicts as snapped search-space rows (``r x d``); a row that does not fit names ``what``."""
        full = [{**self.space.fixed, **r} for r in rows]
        try:
            return (
                self.space.snap(self.space.encode_many(full)) if full else torch.empty(0, self.space.dim, dtype=DTYPE)
            )
        except LabloopError as exc:
            raise LabloopError(f"a {what} does not fit the search space: {exc.problem}", exc.fix) from None

    def objective_values(self, o: Observation) -> list[float] | None:
        """``o``'s value of every objective, or None when one is missing or not finite."""
        vals = [o.values.get(obj.name) for obj in self.spec.objectives]
        if any(v is None or not math.isfinite(float(v)) for v in vals):
            return None
        return [float(v) for v in vals]  # type: ignore[arg-type]

    def key(self, x: Tensor) -> tuple:
        """The identity of search-space point ``x`` (snapped): equal keys are the same experiment."""
        return self.s.key(x)

    def is_taken(self, x: Tensor) -> bool:
        """Whether ``x`` was observed, is pending, or was chosen earlier in this ask."""
        return self.key(x) in self.taken

    def mark(self, x: Tensor) -> None:
        """Record ``x`` as chosen in this ask (it is then taken, and counted)."""
        self.chosen.append(x)
        self.taken.add(self.key(x))

    def take(self, x: Tensor, source: str, info: dict[str, Any] | None = None) -> Proposal:
        """Mark ``x`` chosen and return it as a proposal from ``source``."""
        self.mark(x)
        return self.proposal(x, source, info)

    @property
    def count(self) -> int:
        """Trials so far: observed, pending and chosen in this ask (what seeds each draw, so a resumed campaign
        continues the same sequence)."""
        return len(self.obs) + len(self.pend_X) + len(self.chosen)

    def free_rows(self) -> Tensor:
        """Indices of pool rows neither observed, pending nor chosen in this ask (and with the fixed values, if any:
        when no free row has them, a ``LabloopError`` says so)."""
        assert self.pool is not None
        keys = self.pool.keys
        free = torch.tensor([i for i, k in enumerate(keys) if k not in self.taken], dtype=torch.long)
        if self.fixed_cols and len(free):
            free = free[self.matches(self.space.snap(self.pool.X[free]))]
            if not len(free):
                raise LabloopError(
                    f"no free row of the candidate pool has {self.fixed}",
                    "ask without fixed values, or add candidates with them",
                )
        return free

    def in_flight(self) -> Tensor:
        """Pending points and those chosen in this ask (``k x d``): what a model conditions on (``X_pending``)."""
        return torch.cat([self.pend_X, torch.stack(self.chosen)]) if self.chosen else self.pend_X

    def proposal(self, x: Tensor, source: str, info: dict[str, Any] | None = None) -> Proposal:
        """``x`` as a proposal: the pool row itself (and its index as ``info['row']``) in pool mode."""
        if self.pool is not None:
            i = self.pool._index.get(CandidatePool._key(self.space.snap(x[None])[0]))
            if i is not None:
                return Proposal(dict(self.pool.rows[i]), source, {**(info or {}), "row": i})
        params = self.space.decode(x)
        if self.fixed_cols and bool(self.matches(self.space.snap(x[None]))[0]):
            # the values as given, not decoded from [0, 1] (333.3 would come back 333.29999999999995): a batch
            # station compares its key exactly
            params.update({k: v for k, v in self.fixed.items() if k in params})
        return Proposal(params, source, info or {})

    # -------------------------------------------------------------------------------------- seed points
    def seed_points(self, n: int) -> list[Proposal]:
        """Up to ``n`` of the campaign file's ``strategy.seed_points`` that are not taken, as given."""
        out: list[Proposal] = []
        for i, sp in enumerate(self.spec.strategy.seed_points):
            if len(out) >= n:
                break
            try:
                x = self.space.snap(self.space.encode({**self.space.fixed, **sp})[None])[0]
            except LabloopError as exc:
                raise LabloopError(f"strategy.seed_points[{i}]: {exc.problem}", exc.fix) from None
            if self.pool is not None and self.pool.index_of({**self.space.fixed, **sp}) is None:
                raise LabloopError(
                    f"strategy.seed_points[{i}] is not a row of the candidate pool",
                    "give seed points that are rows of the candidates CSV",
                )
            if self.is_taken(x) or not bool(self.matches(x)):
                continue  # a seed point without the fixed values waits for an ask without them
            out.append(self.take(x, "seed"))
        return out

    # ----------------------------------------------------------------------------------- initial design
    def initial_design(self, n: int) -> list[Proposal]:
        """Scrambled Sobol points (seeded by the campaign's seed; pool: the nearest free row of each) while fewer
        than ``strategy.initial_design`` trials exist, and for as long as fewer than two trials succeeded (a GP
        needs two measured values; proposals of this same ask do not count)."""
        out: list[Proposal] = []
        skip = self.count
        while len(out) < n and (self.count < self.spec.strategy.initial_design or self.n_ok < 2):
            x = self.space_filling(skip)
            if x is None:
                break
            skip += 1
            out.append(self.take(x, "sobol"))
        return out

    def space_filling(self, skip: int) -> Tensor | None:
        """A not-yet-taken Sobol point (pool: the free row nearest, in kernel features, to the next Sobol point)."""
        if self.pool is not None:
            free = self.free_rows()
            if len(free) == 0:
                return None
            u = self.pin(self.shape_design(self.space.sample(1, seed=self.s.seed, skip=skip)))
            f_pool = self.space.features(self.pool.X[free])
            d = (f_pool - self.space.features(u)).pow(2).sum(-1)
            return self.pool.X[free[int(d.argmin())]]
        for attempt in range(1000):
            x = self.shape_design(self.space.sample(1, seed=self.s.seed, skip=skip + attempt))
            if self.fixed_cols:
                x = self.space.snap(self.pin(x))
                if not bool(self.space.feasible(x)[0]):
                    continue
            if not self.is_taken(x[0]):
                return x[0]
        return None

    def shape_design(self, U: Tensor) -> Tensor:
        """Hook: space-filling points as drawn (``BotorchStrategy`` draws them from an expert's belief)."""
        return U


class StrategyBase:
    """A strategy over a campaign's search space or candidate pool (``candidates``; a fully discrete space of at
    most ``grid_limit`` points is enumerated and searched as a pool). :meth:`ask` runs the seed points, then
    :meth:`propose`; a subclass overrides :meth:`propose` (or :meth:`ask`, and :meth:`bookkeeping` to extend
    :class:`Bookkeeping`)."""

    name = "base"
    #: a pydantic model of ``strategy.options`` (checked before the strategy is built), or None: as given
    options_model: Any = None

    def __init__(self, spec: CampaignSpec, candidates: CandidatePool | None = None, *, grid_limit: int = 5000):
        self.spec = spec
        self.seed = spec.seed
        self.space: SearchSpace = candidates.space if candidates is not None else SearchSpace.from_spec(spec)
        self.pool = candidates
        if self.pool is None:
            grid = self.space.grid(int(grid_limit))
            if grid is not None:
                if len(grid) == 0:
                    raise LabloopError(
                        "no point of the discrete search space satisfies the constraints", "loosen the constraints"
                    )
                self.pool = CandidatePool.from_grid(self.space, grid)

    def key(self, x: Tensor) -> tuple:
        """The identity of search-space point ``x`` once snapped (pool rows and observations compare by it)."""
        return CandidatePool._key(self.space.snap(x[None])[0])

    def bookkeeping(
        self, observations: list[Observation], pending: list[dict[str, Any]], fixed: dict[str, Any] | None = None
    ) -> Bookkeeping:
        """This ask's :class:`Bookkeeping` (override to return a subclass)."""
        return Bookkeeping(self, observations, pending, fixed)

    def ask(
        self,
        n: int,
        observations: list[Observation],
        pending: list[dict[str, Any]],
        fixed: dict[str, Any] | None = None,
    ) -> list[Proposal]:
        """``n`` proposals, none equal to an observed (measured or failed) or pending point: seed points first.
        ``fixed``: parameter values every proposal must have (module docstring)."""
        if n < 1:
            return []
        book = self.bookkeeping(observations, pending, fixed)
        out = book.seed_points(n)
        if len(out) < n:
            out += self.propose(book, n - len(out))
        return out

    def propose(self, book: Bookkeeping, n: int) -> list[Proposal]:
        """Up to ``n`` new proposals, each recorded with ``book.take`` (a subclass implements this)."""
        raise NotImplementedError


def fixed_columns(space: SearchSpace, fixed: dict[str, Any]) -> dict[int, float]:
    """``fixed`` (parameter name -> value) as search-space column -> encoded, snapped value. A fixed parameter of
    the campaign must be given its own value; a value that does not fit, an unknown name or a composition
    component (its fraction is tied to the others) is refused with the fix."""
    out: dict[int, float] = {}
    for name, value in fixed.items():
        if name in space.fixed:
            if space.fixed[name] != value:
                raise LabloopError(
                    f"'{name}' is fixed at {space.fixed[name]!r} in the campaign; asked for {value!r}",
                    f"ask for {name} = {space.fixed[name]!r} or leave it out",
                )
            continue
        if name not in space.index:
            raise LabloopError(f"cannot fix '{name}': not a parameter of the search space", "fix search parameters")
        i = space.index[name]
        col = space.columns[i]
        if col.kind == "component":
            raise LabloopError(
                f"cannot fix composition component '{name}' alone", "fix parameters other than composition components"
            )
        row = {c.name: (c.choices[0] if c.kind == "categorical" else c.lower) for c in space.columns}
        if space.groups:  # a valid composition for the row, which snap needs (only column i is read back)
            for g in space.groups:
                for j in g:
                    row[space.columns[j].name] = space.columns[j].total / len(g)
        x = space.snap(space.encode({**space.fixed, **row, name: value})[None])[0]
        out[i] = float(x[i])
    return out
