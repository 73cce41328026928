"""Proposals that the shelf can supply: a strategy wrapper that honours the store's stock levels at ask time.

Why two mechanisms, in this order:

1. **A linear constraint added to the search space for this ask** (``use(x) <= left / n``, ``left`` = level minus
   what proposed trials reserved, read from the store just before asking), for every stock whose use is affine in
   linear-scale numeric parameters. The optimizer then searches only recipes that fit, so its acquisition is not
   spent on points that would be thrown away, and the model's suggestions are not biased toward the edge of what
   is left. Splitting ``left`` by the ``n`` points of one ask keeps the sum of a batch within what is left.
2. **Rejecting and re-asking** for the rest: a use that is not affine (a product of parameters), a candidate pool
   (whose rows the space's constraints do not filter), a plugin strategy without a search space. Each proposal's
   use is evaluated; those that do not fit (with the ones already accepted in this ask) are dropped and asked again
   with the accepted and rejected points as pending (so neither comes back), at most :data:`REASKS` times.

When nothing fits, the ask fails with the stock and the fix: the scheduler pauses the campaign for the operator
(refill, then ``labloop resume``) instead of proposing what cannot be made. The store's compare-and-set
reservation (labloop/store/inventory.py) stays the last line: a proposal is never committed beyond the shelf.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from labloop.errors import LabloopError
from labloop.spec import CampaignSpec, ContinuousParameter, IntegerParameter, LinearConstraint, UseError
from labloop.spec.consumables import affine

#: how many times proposals that do not fit are asked again in one ask
REASKS = 3


class InventoryGuard:
    """``ask`` of the wrapped strategy, restricted to recipes the campaign's stocks can supply."""

    def __init__(self, inner: Any, spec: CampaignSpec, store: Any, campaign_id: int):
        self.inner, self.spec, self.store, self.campaign_id = inner, spec, store, campaign_id
        assert spec.lab is not None and spec.lab.consumables is not None
        self.cons = spec.lab.consumables
        self.affine = {name: affine(tree) for name, tree in self.cons.trees().items()}

    def __getattr__(self, name: str) -> Any:  # everything else is the wrapped strategy's
        return getattr(self.inner, name)

    @property
    def accepts_fixed(self) -> bool:
        """Whether ``ask`` takes ``fixed=``: as the wrapped strategy does (it is passed on)."""
        from labloop.strategy.base import accepts_fixed

        return accepts_fixed(self.inner)

    def left(self, pending: Sequence[dict[str, Any]] = ()) -> dict[str, float]:
        """What each stock has left for this ask, from the store now: level minus reservations, plus the
        reservations of proposed trials that are not ``pending`` (queued proposals being re-asked in place: the
        new proposal replaces theirs, labloop/store/inventory.py re-reserves it)."""
        out = {r["name"]: float(r["left"]) for r in self.store.stock_levels(self.campaign_id)}
        seen = {json.dumps(p, sort_keys=True, default=str) for p in pending}
        for t in self.store.trials(self.campaign_id):
            if t.state in ("proposed", "approved") and json.dumps(t.params, sort_keys=True, default=str) not in seen:
                for name, amount in (self._use(t.params) or {}).items():
                    out[name] = out.get(name, 0.0) + amount
        return out

    def ask(
        self, n: int, observations: list[Any], pending: list[dict[str, Any]], fixed: dict[str, Any] | None = None
    ) -> list[Any]:
        """The wrapped ask, restricted to what the stocks can supply (``fixed`` is passed on when given)."""
        if n < 1:
            return []
        left = self.left(pending)
        n = min(n, self._how_many_fit(left))  # a stock with room for 2 recipes: ask for 2, not n
        out: list[Any] = []
        rejected: list[dict[str, Any]] = []
        budget = dict(left)
        for _ in range(1 + REASKS):
            want = n - len(out)
            asked = self._ask_constrained(
                want, observations, list(pending) + [p.params for p in out] + rejected, budget, fixed
            )
            for p in asked:
                use = self._use(p.params)
                if use is not None and all(use.get(k, 0.0) <= budget.get(k, 0.0) + 1e-9 for k in use):
                    for k, v in use.items():
                        budget[k] = budget.get(k, 0.0) - v
                    out.append(p)
                else:
                    rejected.append(dict(p.params))
            if len(out) >= n or not asked:
                break
        if not out:
            short = ", ".join(f"{k} ({v:g} left)" for k, v in left.items())
            raise LabloopError(
                f"no recipe the optimizer found fits the stocks left: {short}",
                "refill (`labloop inventory refill CAMPAIGN NAME AMOUNT --by YOU`), then `labloop resume`",
            )
        return out

    def _use(self, params: dict[str, Any]) -> dict[str, float] | None:
        try:
            return self.cons.uses(params)
        except UseError:
            return None  # e.g. a negative use for this recipe: it is not proposed

    def _how_many_fit(self, left: dict[str, float]) -> int:
        """How many recipes could fit at most, by each affine use's smallest value over the parameters' bounds;
        refuses (with the stock and the fix) when not even one can: no ask helps then."""
        bounds = {
            p.name: (p.lower, p.upper)
            for p in self.spec.parameters
            if isinstance(p, (ContinuousParameter, IntegerParameter))
        }  # the bounded kinds
        most = 10**9
        for name, form in self.affine.items():
            if form is None or any(k not in bounds for k in form[1]):
                continue
            least = form[0] + sum(min(c * bounds[k][0], c * bounds[k][1]) for k, c in form[1].items())
            have = left.get(name, 0.0)
            if least > have + 1e-9:
                stock = self.cons.stocks[name]
                raise LabloopError(
                    f"stock {name} has {have:g} {stock.unit} left; every recipe needs at least {least:g}",
                    f"refill it (`labloop inventory refill CAMPAIGN {name} AMOUNT --by YOU`), then `labloop resume`",
                )
            if least > 0:
                most = min(most, int((have + 1e-9) // least))
        return max(1, most)

    def _ask_constrained(
        self,
        n: int,
        observations: list[Any],
        pending: list[dict[str, Any]],
        budget: dict[str, float],
        fixed: dict[str, Any] | None = None,
    ) -> list[Any]:
        """The wrapped ask with ``use <= budget / n`` as linear constraints of its search space, where it has one
        and the use is affine in its linear-scale columns; without them if the space refuses."""
        kw = {"fixed": fixed} if fixed else {}  # a plugin without ``fixed`` is never asked with it
        space = getattr(self.inner, "space", None)
        extra = []
        if space is not None and hasattr(space, "inequality_constraints"):
            for name, form in self.affine.items():
                if form is None or not form[1]:
                    continue
                c = LinearConstraint(coefficients=form[1], upper=budget.get(name, 0.0) / n - form[0])
                try:
                    extra += space._constraint(c, len(self.spec.constraints))
                except LabloopError:
                    continue  # categorical or log-scaled: left to the rejection
        if not extra or space is None:  # (extra implies a space: the second test narrows it for mypy)
            return list(self.inner.ask(n, observations, pending, **kw))
        saved = space.inequality_constraints
        space.inequality_constraints = [*saved, *extra]
        try:
            return list(self.inner.ask(n, observations, pending, **kw))
        except LabloopError:
            space.inequality_constraints = saved  # e.g. no random point fits: ask without, then reject
            return list(self.inner.ask(n, observations, pending, **kw))
        finally:
            space.inequality_constraints = saved


def guard(strategy: Any, spec: CampaignSpec, store: Any, campaign_id: int) -> Any:
    """``strategy`` restricted by the campaign's consumables (itself when the campaign has none)."""
    if spec.lab is None or spec.lab.consumables is None or not spec.lab.consumables.use:
        return strategy
    return InventoryGuard(strategy, spec, store, campaign_id)
