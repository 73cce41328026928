"""Thousands of observations: a local GP in a trust region around the incumbent instead of one exact GP on all.

Why this method. An exact GP costs ``O(n^3)`` to condition and ``O(n^2)`` per prediction, and an acquisition
over ``n`` baseline points (qLogNEI) more: measured 7 s per ask at ``n = 2000`` and far beyond 5 s at 10,000
(docs/benchmarks/archive.md §14). The literature offers three ways out:

* **sparse variational GPs** (inducing points: Hensman et al. 2013; botorch's ``ApproximateGPyTorchModel``):
  ``O(n m^2)`` per optimizer step, but a fit is hundreds of stochastic steps over all ``n`` points (tens of
  seconds on one core at ``n = 10^4``), and ``m`` inducing points spread over the whole space blur exactly the
  region that matters late in a campaign, around the best point, where BO needs fine detail;
* **subset-of-data** GPs: cheap, but a random subset throws away the dense data near the optimum as readily as
  the sparse data far from it;
* **local models in a trust region** (TuRBO: Eriksson et al. 2019, "Scalable global optimization via local
  Bayesian optimization", NeurIPS): fit an exact GP on the data near the incumbent only and optimize the
  acquisition inside a box around it. With thousands of observations the campaign has long since found its
  basin; what the next proposal needs is an accurate model *there*, which the nearest few hundred points give
  (a stationary kernel's weight on far points decays like ``exp(-r^2 / 2l^2)``: they hardly change the local
  posterior). The cost depends on the local size ``k``, not on ``n``.

labloop takes the third, stateless (every ask rebuilds it from the observations, as the rest of the strategy):

1. the **centre**: among the 50 best measured points, the one whose 10 nearest neighbours have the best median
   value (with noisy measurements the single best value is an optimistic draw; its neighbourhood is not);
2. the **local data**: the ``k`` points nearest to the centre (``local_points``, default 500; for every output:
   objective, outcome constraints and the failure model each keep their own ``k`` nearest);
3. the **trust region**: the bounding box of the local objective data, widened by a tenth of its span on each
   side and clipped to the search space: the model is trusted where it has data (TuRBO grows and shrinks its box
   from a success counter, which a stateless strategy does not keep; the data's own hull is the stateless
   equivalent, and it shrinks as the data concentrate);
   Hyperparameters are fitted on ``LOCAL_FIT_SUBSET`` of the local points, and the GP conditions on all ``k``;
4. the acquisition (auto: analytic LogEI against the local posterior mean's best, qLogEI with pending points) is
   optimized inside that box (in a candidate pool: over the free rows inside it, or all free rows if none is).

It switches on automatically (``model_scope: auto``) once the campaign has more than ``local_above`` (default
1500) successful measurements, and can be forced (``local``) or refused (``exact``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: the local model's hyperparameters are fitted on this many of its points (then it conditions on all of them): a
#: marginal-likelihood step costs O(k^3), and the fit was most of a 10,000-point ask's time at 400
#: (docs/benchmarks/archive.md §14)
LOCAL_FIT_SUBSET = 250


@dataclass(frozen=True)
class LocalRegion:
    """Where the local model lives: its centre and trust-region box (model-input space) and its size."""

    center: Tensor  # f
    box: Tensor  # 2 x f
    k: int
    n: int

    def describe(self) -> dict:
        return {
            "n": self.n,
            "local_points": self.k,
            "box_volume": float((self.box[1] - self.box[0]).clamp(min=0).prod()),
        }

    def inside(self, X: Tensor, tol: float = 1e-9) -> Tensor:
        """``... x f`` -> ``...`` bool: inside the trust region."""
        return ((X >= self.box[0] - tol) & (X <= self.box[1] + tol)).all(-1)


def robust_center(
    X: Tensor, y: Tensor, top: int = 50, neighbours: int = 10, metric: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """The measured point (row of ``X``) among the ``top`` best whose ``neighbours`` nearest points (itself
    included) have the largest median ``y`` (larger is better): one lucky value moves a median not at all."""
    y = y.reshape(-1)
    F = metric(X) if metric is not None else X
    best = torch.topk(y, min(top, len(y))).indices
    d = torch.cdist(F[best], F)  # top x n
    nn = torch.topk(d, min(neighbours, len(y)), largest=False).indices
    return X[best[int(y[nn].median(-1).values.argmax())]]


def nearest(X: Tensor, center: Tensor, k: int, metric: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Indices of the ``k`` rows of ``X`` nearest to ``center`` (all rows when there are at most ``k``)."""
    if len(X) <= k:
        return torch.arange(len(X))
    F = metric(X) if metric is not None else X
    c = metric(center[None]) if metric is not None else center[None]
    return torch.topk(torch.cdist(c, F)[0], k, largest=False).indices


def local_outputs(
    outputs: list[tuple[Tensor, Tensor]],
    bounds: Tensor,
    k: int,
    metric: Callable[[Tensor], Tensor] | None = None,
    fixed_dims: tuple[int, ...] = (),
) -> tuple[list[tuple[Tensor, Tensor]], LocalRegion]:
    """Each output ``(X_i, y_i)`` cut down to its ``k`` points nearest the centre (outputs[0] is the objective,
    larger is better), and the trust region. ``bounds`` (``2 x f``) clip the box; ``fixed_dims`` keep their full
    bounds (categorical codes: a box over codes 1..2 would mean nothing)."""
    X0, y0 = outputs[0]
    center = robust_center(X0, y0, metric=metric)
    out = []
    for X, y in outputs:
        idx = nearest(X, center, k, metric)
        out.append((X[idx], y[idx]))
    Xl = out[0][0]
    lo, hi = Xl.min(0).values, Xl.max(0).values
    pad = 0.1 * (hi - lo)
    box = torch.stack([torch.maximum(lo - pad, bounds[0]), torch.minimum(hi + pad, bounds[1])])
    for i in fixed_dims:
        box[:, i] = bounds[:, i]
    return out, LocalRegion(center, box, min(k, len(X0)), len(X0))
