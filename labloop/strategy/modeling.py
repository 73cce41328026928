"""Turning observations into botorch training data and fitted GPs.

Every objective is modelled as *larger is better*: ``t(y) = s * g(y)`` with ``g = log`` for positive objectives
spanning decades (sheet resistance, instability indices) and ``s = -1`` when minimizing; a band objective
``[lo, hi]`` becomes ``-|y - mid|`` (zero at the band's centre). Outcome constraints and the failure indicator are
modelled as separate outputs in raw units. Models are ``SingleTaskGP`` (RBF-ARD with botorch's dimension-scaled
lengthscale prior) on the kernel features of :class:`labloop.space.FeatureMap`, with ``Standardize`` outcomes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from ..space import DTYPE, FeatureMap, SearchSpace
from ..spec import ObjectiveSpec


@dataclass(frozen=True)
class ObjectiveTransform:
    """``t(y)``: the monotone map to a *larger is better* modelling scale, and its inverse for reports."""

    spec: ObjectiveSpec
    log: bool

    @classmethod
    def infer(cls, spec: ObjectiveSpec, values: Sequence[float], option: Any = "auto") -> "ObjectiveTransform":
        """Log-transform when asked (``True``) or, with ``'auto'``, when minimizing a positive quantity whose
        largest value is at least 10 times the smallest (sheet resistance, instability indices: the good end is the
        small end, and log spreads it out). A maximized objective keeps its scale under ``'auto'``: log would
        compress exactly the top values that must be told apart."""
        if spec.direction == "band" or option is False or option == "false":
            return cls(spec, False)
        vals = [v for v in values if v is not None and math.isfinite(v)]
        positive = bool(vals) and min(vals) > 0
        if option is True or option == "true":
            return cls(spec, positive)
        return cls(spec, spec.direction == "minimize" and positive and len(vals) >= 2
                   and max(vals) / min(vals) >= 10.0)

    def __call__(self, y: Tensor) -> Tensor:
        if self.spec.direction == "band":
            lo, hi = self.spec.band  # type: ignore[misc]
            return -(y - 0.5 * (lo + hi)).abs()
        g = y.clamp(min=1e-300).log() if self.log else y
        return g if self.spec.direction == "maximize" else -g

    def inverse(self, t: Tensor) -> Tensor:
        """Back to the objective's units (for a band: the distance from its centre, as a positive number)."""
        if self.spec.direction == "band":
            return -t
        g = t if self.spec.direction == "maximize" else -t
        return g.exp() if self.log else g


def fit_gp(space: SearchSpace | None, X: Tensor, Y: Tensor, *, maxiter: int = 100, kernel: str = "rbf",
           max_noise: float | None = None, init: dict[str, Tensor] | None = None,
           fit_subset: int | None = 400) -> SingleTaskGP:
    """Fit a ``SingleTaskGP`` on ``n x d`` search-space inputs and ``n x 1`` outcomes by marginal likelihood
    (``space=None``: ``X`` already holds kernel features, as in pool mode; no input transform).

    ``kernel``: 'rbf' (botorch's default RBF-ARD with dimension-scaled lengthscale prior), 'matern' (Matern-5/2
    ARD, same prior: rougher functions) or 'edbo' (Matern-5/2 with short-lengthscale Gamma priors, see below).
    ``max_noise`` caps the noise variance (standardized units) for nearly noise-free data such as averaged tables,
    so that small differences near the optimum are not explained away as noise. ``init``: hyperparameters
    (:func:`hyperparameters`) of an earlier fit to start from; a warm start only speeds up the same optimization
    (L-BFGS converges in a few steps when one more point was added), it carries no information of its own.
    ``fit_subset``: above this many points the hyperparameters are fitted on a seeded random subset of that size
    and the GP then conditions on all points with them: each marginal-likelihood step costs ``O(n^3)``, so this
    keeps a fit at ``n = 2000`` at the cost of ``n = 400`` (hyperparameters barely move past a few hundred points,
    the posterior still uses every observation).
    Optimizer warnings (line search stalls) are expected on small data and are not errors here.
    """
    if fit_subset is not None and len(X) > fit_subset:
        idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(len(X)))[:fit_subset]
        sub = fit_gp(space, X[idx], Y[idx], maxiter=maxiter, kernel=kernel, max_noise=max_noise, init=init,
                     fit_subset=None)
        full = fit_gp(space, X, Y, maxiter=0, kernel=kernel, max_noise=max_noise, init=hyperparameters(sub),
                      fit_subset=None)
        return full
    covar = None
    f = space.features(X[:1]).shape[-1] if space is not None else X.shape[-1]
    if kernel == "matern":
        from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior

        covar = get_covar_module_with_dim_scaled_prior(ard_num_dims=f, use_rbf_kernel=False)
    elif kernel == "edbo":
        # Matern-5/2 ARD with a Gamma(3, 6) lengthscale prior (mean 0.5) and an outputscale, as in EDBO/BayBE:
        # more local than botorch's dimension-scaled prior, which suits "find the single best row" on a pool
        from gpytorch.kernels import MaternKernel, ScaleKernel
        from gpytorch.priors import GammaPrior

        covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=f, lengthscale_prior=GammaPrior(3.0, 6.0)),
                            outputscale_prior=GammaPrior(2.0, 0.15))
    likelihood = None
    if max_noise is not None:
        from botorch.models.utils.gpytorch_modules import get_gaussian_likelihood_with_lognormal_prior
        from gpytorch.constraints import Interval

        likelihood = get_gaussian_likelihood_with_lognormal_prior()
        likelihood.noise_covar.register_constraint("raw_noise", Interval(1e-6, float(max_noise)))
        likelihood.noise = min(1e-3, float(max_noise) / 2)
    model = SingleTaskGP(X, Y, input_transform=FeatureMap(space) if space is not None else None,
                         outcome_transform=Standardize(m=1),
                         covar_module=covar, likelihood=likelihood)
    if init:
        try:
            model.load_state_dict(init, strict=False)
            maxiter = min(maxiter, 30) if maxiter > 0 else maxiter  # from a nearby optimum a few steps suffice
        except (RuntimeError, KeyError):  # shapes changed (e.g. another kernel): start from the prior instead
            pass
    if maxiter <= 0:  # hyperparameters given (init): condition only
        model.eval()
        return model
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
        except Exception:  # noqa: BLE001 - a failed fit keeps the prior-mode hyperparameters; still a usable GP
            pass
    model.eval()
    return model


def hyperparameters(model: SingleTaskGP) -> dict[str, Tensor]:
    """The fitted kernel/likelihood/mean hyperparameters of ``model`` (no training data, no outcome transform)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.rsplit(".", 1)[-1].startswith("raw_") and "constraint" not in k}


def fit_models(space: SearchSpace | None, outputs: list[tuple[Tensor, Tensor]],
               inits: Sequence[dict[str, Tensor] | None] = (), **kw: Any) -> ModelListGP:
    """One independent GP per output ``(X_i: n_i x d, y_i: n_i x 1)`` as a ``ModelListGP`` (outputs may have been
    measured on different trials: the failure indicator sees failed trials, objectives do not)."""
    inits = list(inits) + [None] * (len(outputs) - len(inits))
    return ModelListGP(*[fit_gp(space, X, y, init=i, **kw) for (X, y), i in zip(outputs, inits)])


def lengthscale_importance(model: SingleTaskGP, space: SearchSpace) -> dict[str, float]:
    """Relative importance of each campaign parameter from ARD lengthscales: ``1 / l`` per feature, the largest
    within a parameter's feature block (one-hot, descriptors, composition components count as their own names),
    normalized to sum to 1. Short lengthscale = the objective changes quickly along it = it matters."""
    k = model.covar_module
    k = getattr(k, "base_kernel", k)
    ls = getattr(k, "lengthscale", None)
    if ls is None:
        return {}
    inv = (1.0 / ls.detach().reshape(-1)).tolist()
    owners = space.feature_owners()
    if len(owners) != len(inv):
        return {}
    agg: dict[str, float] = {}
    for o, v in zip(owners, inv):
        agg[o] = max(agg.get(o, 0.0), v)
    tot = sum(agg.values()) or 1.0
    return {k_: round(v / tot, 4) for k_, v in sorted(agg.items(), key=lambda kv: -kv[1])}


def as_tensor(rows: list[list[float]]) -> Tensor:
    return torch.tensor(rows, dtype=DTYPE).reshape(len(rows), -1)
