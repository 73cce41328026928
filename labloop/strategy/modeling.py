"""Turning observations into botorch training data and fitted GPs.

Every objective is modelled as *larger is better*: ``t(y) = s * g(y)`` with ``g = log`` for positive objectives
spanning decades (sheet resistance, instability indices) and ``s = -1`` when minimizing; a band objective
``[lo, hi]`` becomes ``-|y - mid|`` (zero at the band's centre). Outcome constraints and the failure indicator are
modelled as separate outputs in raw units. Models are ``SingleTaskGP`` (RBF- or Matern-5/2-ARD with botorch's
dimension-scaled lengthscale prior, see :func:`fit_gp`) on the kernel features of
:class:`labloop.strategy.space.FeatureMap`, with ``Standardize`` outcomes. Optionally (``warp: true``) each objective is
Yeo-Johnson warped first (:class:`WarpedTransform`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from botorch.exceptions.warnings import OptimizationWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from labloop.spec import ObjectiveSpec

from . import quiet
from .space import DTYPE, FeatureMap, SearchSpace


@dataclass(frozen=True)
class ObjectiveTransform:
    """``t(y)``: the monotone map to a *larger is better* modelling scale, and its inverse for reports."""

    spec: ObjectiveSpec
    log: bool

    @classmethod
    def infer(cls, spec: ObjectiveSpec, values: Sequence[float], option: Any = "auto") -> ObjectiveTransform:
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
        return cls(spec, spec.direction == "minimize" and positive and len(vals) >= 2 and max(vals) / min(vals) >= 10.0)

    def __call__(self, y: Tensor) -> Tensor:
        if self.spec.direction == "band":
            assert self.spec.band is not None, "ObjectiveSpec: direction 'band' needs its band"
            lo, hi = self.spec.band
            return -(y - 0.5 * (lo + hi)).abs()
        g = y.clamp(min=1e-300).log() if self.log else y
        return g if self.spec.direction == "maximize" else -g

    def inverse(self, t: Tensor) -> Tensor:
        """Back to the objective's units (for a band: the distance from its centre, as a positive number)."""
        if self.spec.direction == "band":
            return -t
        g = t if self.spec.direction == "maximize" else -t
        return g.exp() if self.log else g


@dataclass(frozen=True)
class WarpedTransform:
    """``w(t(y))``: an :class:`ObjectiveTransform` followed by a fitted Yeo-Johnson power warp of its standardized
    values, ``w(u) = YJ_lambda((u - mu) / sigma)``, so that the GP sees roughly Gaussian outcomes.

    Why: measured objectives are often skewed (a few tough structures, a few high yields, a long tail of failures
    to react); a stationary GP fitted to skewed values spends its lengthscale and noise on the outliers. A power
    warp chosen by maximum likelihood (as HEBO does) straightens that out; it is monotone increasing, so "larger is
    better" and every argmax are unchanged, and :meth:`inverse` maps predictions back to the objective's units.
    """

    base: Any  # ObjectiveTransform
    mu: float
    sigma: float
    lam: float

    @property
    def spec(self) -> ObjectiveSpec:
        return self.base.spec

    @classmethod
    def fit(cls, base: Any, values: Sequence[float], fallbacks: list[str] | None = None) -> WarpedTransform | Any:
        """The warp fitted to ``values`` (raw objective values), or ``base`` itself when there are too few values
        (fewer than 4), no spread to fit or the fit fails (each recorded in ``fallbacks``)."""
        vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        unwarped = f"output warp of '{base.spec.name}' not applied"
        if len(vals) < 4:
            _note(fallbacks, f"{unwarped}: {len(vals)} measured values, it needs 4")
            return base
        t = base(torch.tensor(vals, dtype=DTYPE))
        mu, sigma = float(t.mean()), float(t.std())
        if not sigma > 0:
            _note(fallbacks, f"{unwarped}: every measured value is the same")
            return base
        from scipy.stats import yeojohnson_normmax

        with quiet.captured():  # scipy's overflow warnings while searching lambda: not the operator's concern
            try:
                lam = float(yeojohnson_normmax(((t - mu) / sigma).numpy()))
            except (ValueError, FloatingPointError) as exc:
                _note(fallbacks, f"{unwarped}: the Yeo-Johnson fit failed ({short_error(exc)})")
                return base
        if not math.isfinite(lam):
            _note(fallbacks, f"{unwarped}: the Yeo-Johnson fit gave lambda = {lam}")
            return base
        return cls(base, mu, sigma, max(-2.0, min(4.0, lam)))  # extreme lambdas explode the inverse: clip

    def __call__(self, y: Tensor) -> Tensor:
        u = (self.base(y) - self.mu) / self.sigma
        lam, pos = self.lam, u >= 0
        up = ((u.clamp(min=0) + 1).pow(lam) - 1) / lam if abs(lam) > 1e-6 else (u.clamp(min=0) + 1).log()
        un = (
            -((1 - u.clamp(max=0)).pow(2 - lam) - 1) / (2 - lam) if abs(lam - 2) > 1e-6 else -(1 - u.clamp(max=0)).log()
        )
        return torch.where(pos, up, un)

    def inverse(self, w: Tensor) -> Tensor:
        lam, pos = self.lam, w >= 0
        if abs(lam) > 1e-6:  # clamp: a prediction far beyond the data can leave the warp's range
            up = (w.clamp(min=0) * lam + 1).clamp(min=1e-12).pow(1 / lam) - 1
        else:
            up = w.clamp(min=0, max=700).exp() - 1
        if abs(lam - 2) > 1e-6:
            un = 1 - (1 - (2 - lam) * w.clamp(max=0)).clamp(min=1e-12).pow(1 / (2 - lam))
        else:
            un = 1 - (-w.clamp(max=0)).clamp(max=700).exp()
        return self.base.inverse(torch.where(pos, up, un) * self.sigma + self.mu)


def fit_gp(
    space: SearchSpace | None,
    X: Tensor,
    Y: Tensor,
    *,
    maxiter: int = 100,
    kernel: str = "rbf",
    max_noise: float | None = None,
    init: dict[str, Tensor] | None = None,
    fit_subset: int | None = 400,
    groups: Sequence[Sequence[int]] | None = None,
    fallbacks: list[str] | None = None,
    label: str = "the model",
) -> SingleTaskGP:
    """Fit a ``SingleTaskGP`` on ``n x d`` search-space inputs and ``n x 1`` outcomes by marginal likelihood
    (``space=None``: ``X`` already holds kernel features, as in pool mode; no input transform).

    ``kernel``: 'matern' (Matern-5/2 ARD with botorch's dimension-scaled LogNormal lengthscale prior: labloop's
    choice for large candidate pools, where it was measured better, see BotorchStrategy), 'rbf' (botorch's own
    default, same prior; labloop's choice elsewhere), 'matern_gamma' (BayBE 0.15's default: Matern-5/2,
    dimension-scaled Gamma prior, no outputscale, Gamma noise prior) or 'edbo' (Matern-5/2 with short-lengthscale
    Gamma priors, see below).
    ``max_noise`` caps the noise variance (standardized units) for nearly noise-free data such as averaged tables,
    so that small differences near the optimum are not explained away as noise. ``init``: hyperparameters
    (:func:`hyperparameters`) of an earlier fit to start from; a warm start only speeds up the same optimization
    (L-BFGS converges in a few steps when one more point was added), it carries no information of its own.
    ``fit_subset``: above this many points the hyperparameters are fitted on a seeded random subset of that size
    and the GP then conditions on all points with them: each marginal-likelihood step costs ``O(n^3)``, so this
    keeps a fit at ``n = 2000`` at the cost of ``n = 400`` (hyperparameters barely move past a few hundred points,
    the posterior still uses every observation).
    ``fallbacks``: where every departure from a normal fit is recorded as one line for people (``label`` names
    the output): a warm start that does not fit the model, a fit attempt that botorch retried from hyperparameters
    drawn from the priors (its optimizer stopped abnormally), a fit that failed altogether (the GP then keeps its
    starting hyperparameters: still usable, but not fitted to the data).
    """
    if fit_subset is not None and len(X) > fit_subset:
        idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(len(X)))[:fit_subset]
        sub = fit_gp(
            space,
            X[idx],
            Y[idx],
            maxiter=maxiter,
            kernel=kernel,
            max_noise=max_noise,
            init=init,
            fit_subset=None,
            groups=groups,
            fallbacks=fallbacks,
            label=label,
        )
        full = fit_gp(
            space,
            X,
            Y,
            maxiter=0,
            kernel=kernel,
            max_noise=max_noise,
            init=hyperparameters(sub),
            fit_subset=None,
            groups=groups,
            fallbacks=fallbacks,
            label=label,
        )
        return full
    covar = None
    likelihood_factory = None
    f = space.features(X[:1]).shape[-1] if space is not None else X.shape[-1]
    if kernel == "matern":
        from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior

        covar = get_covar_module_with_dim_scaled_prior(ard_num_dims=f, use_rbf_kernel=False)
    elif kernel == "additive":
        covar = _additive_plus_product_kernel(f, groups)
    elif kernel == "matern_gamma":
        covar = _matern_gamma_kernel(f)
        if max_noise is None:
            likelihood_factory = _gamma_noise_likelihood
    elif kernel == "edbo":
        # Matern-5/2 ARD with a Gamma(3, 6) lengthscale prior (mean 0.5) and an outputscale, as in EDBO/BayBE:
        # more local than botorch's dimension-scaled prior, which suits "find the single best row" on a pool
        from gpytorch.kernels import MaternKernel, ScaleKernel
        from gpytorch.priors import GammaPrior

        covar = ScaleKernel(
            MaternKernel(nu=2.5, ard_num_dims=f, lengthscale_prior=GammaPrior(3.0, 6.0)),
            outputscale_prior=GammaPrior(2.0, 0.15),
        )
    likelihood = likelihood_factory() if likelihood_factory is not None else None
    if max_noise is not None:
        from botorch.models.utils.gpytorch_modules import get_gaussian_likelihood_with_lognormal_prior
        from gpytorch.constraints import Interval

        likelihood = get_gaussian_likelihood_with_lognormal_prior()
        likelihood.noise_covar.register_constraint("raw_noise", Interval(1e-6, float(max_noise)))
        likelihood.noise = min(1e-3, float(max_noise) / 2)
    model = SingleTaskGP(
        X,
        Y,
        input_transform=FeatureMap(space) if space is not None else None,
        outcome_transform=Standardize(m=1),
        covar_module=covar,
        likelihood=likelihood,
    )
    if init:
        try:
            model.load_state_dict(init, strict=False)
            maxiter = min(maxiter, 30) if maxiter > 0 else maxiter  # from a nearby optimum a few steps suffice
        except (RuntimeError, KeyError) as exc:  # shapes changed (e.g. another kernel): start from the prior
            _note(fallbacks, f"warm start of {label} skipped ({short_error(exc)}): fitted from the prior")
            init = None
    if maxiter <= 0:  # hyperparameters given (init): condition only
        model.eval()
        return model
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    with quiet.captured() as caught:
        # botorch re-emits an optimizer warning when it retries a fit from hyperparameters drawn from the priors
        try:
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
        except Exception as exc:  # noqa: BLE001 - the GP keeps its starting hyperparameters: usable, and recorded
            start = "the warm-start" if init else "the prior-mode"
            _note(
                fallbacks,
                f"gp fit of {label} failed ({short_error(exc)}): used {start} hyperparameters, not fitted to the data",
            )
        else:
            retried = sorted(
                {short_error(w.message, with_type=False) for w in caught if issubclass(w.category, OptimizationWarning)}
            )
            if retried:
                _note(
                    fallbacks,
                    f"gp fit of {label}: botorch retried from hyperparameters drawn from the priors "
                    f"after {'; '.join(retried)}",
                )
    model.eval()
    return model


def short_error(exc: Any, with_type: bool = True, limit: int = 200) -> str:
    """An exception or warning as one short line: ``Type: first line of the message``."""
    text = (str(exc).strip().splitlines() or [""])[0]
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if with_type else text


def _note(fallbacks: list[str] | None, line: str) -> None:
    if fallbacks is not None and line not in fallbacks:
        fallbacks.append(line)


def _additive_plus_product_kernel(f: int, groups: Sequence[Sequence[int]] | None):
    """``s1 * sum_g k_g(x_g) + s2 * k(x)``: one Matern-5/2 per parameter (its one-hot block, descriptors or
    column) added up, plus the full ARD Matern-5/2 over all features.

    Why: in chemistry and formulation screens much of the response is main effects (this ligand is good, that
    base is bad, whatever else is chosen). A product kernel alone learns a main effect only row by row; the
    additive part shares it across every row with that choice, from few data. The product part keeps the
    interactions. (Duvenaud et al. 2011's first- plus full-order additive kernel; the same split as botorch's
    mixed-space kernel.)"""
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
    from gpytorch.kernels import AdditiveKernel, ScaleKernel
    from gpytorch.priors import GammaPrior

    groups = [list(g) for g in (groups or [[i] for i in range(f)])]
    parts = [
        get_covar_module_with_dim_scaled_prior(ard_num_dims=len(g), active_dims=g, use_rbf_kernel=False) for g in groups
    ]
    full = get_covar_module_with_dim_scaled_prior(ard_num_dims=f, use_rbf_kernel=False)
    return ScaleKernel(AdditiveKernel(*parts), outputscale_prior=GammaPrior(2.0, 0.15)) + ScaleKernel(
        full, outputscale_prior=GammaPrior(2.0, 0.15)
    )


def feature_groups(space: SearchSpace) -> list[list[int]]:
    """Feature column indices grouped by the campaign parameter they encode (a one-hot block is one group)."""
    groups: list[list[int]] = []
    owners = space.feature_owners()
    for i, o in enumerate(owners):
        if i and owners[i - 1] == o:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _matern_gamma_kernel(f: int):
    """Matern-5/2 ARD on unit-scaled features, no outputscale (outcomes are standardized), with a Gamma(3, r)
    lengthscale prior whose mode grows as ``sqrt(f)`` (Hvarfner et al. 2024's dimension scaling, with Gamma's
    lighter tails; the same choice as BayBE 0.15's default). Lengthscales are kept >= 0.025: shorter than that
    on unit features the GP explains single rows as isolated spikes."""
    from gpytorch.constraints import GreaterThan
    from gpytorch.kernels import MaternKernel
    from gpytorch.priors import GammaPrior

    conc = 3.0
    prior = GammaPrior(conc, (conc - 1) / math.exp(math.sqrt(2) - 3) / math.sqrt(f))
    return MaternKernel(
        nu=2.5,
        ard_num_dims=f,
        lengthscale_prior=prior,
        lengthscale_constraint=GreaterThan(2.5e-2, transform=None, initial_value=prior.mode),
    )


def _gamma_noise_likelihood():
    """Gaussian noise with a Gamma(2, r) prior whose mode is ``exp(-5)`` (standardized units): small, as for
    averaged or well-controlled measurements, but learnable."""
    from botorch.models.utils.gpytorch_modules import MIN_INFERRED_NOISE_LEVEL
    from gpytorch.constraints import GreaterThan
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.priors import GammaPrior

    conc = 2.0
    prior = GammaPrior(conc, (conc - 1) / math.exp(-5.0))
    return GaussianLikelihood(
        noise_prior=prior,
        noise_constraint=GreaterThan(MIN_INFERRED_NOISE_LEVEL, transform=None, initial_value=prior.mode),
    )


def hyperparameters(model: SingleTaskGP) -> dict[str, Tensor]:
    """The fitted kernel/likelihood/mean hyperparameters of ``model`` (no training data, no outcome transform)."""
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.rsplit(".", 1)[-1].startswith("raw_") and "constraint" not in k
    }


def fit_models(
    space: SearchSpace | None,
    outputs: list[tuple[Tensor, Tensor]],
    inits: Sequence[dict[str, Tensor] | None] = (),
    labels: Sequence[str] = (),
    **kw: Any,
) -> ModelListGP:
    """One independent GP per output ``(X_i: n_i x d, y_i: n_i x 1)`` as a ``ModelListGP`` (outputs may have been
    measured on different trials: the failure indicator sees failed trials, objectives do not). ``labels`` name
    the outputs in ``fallbacks`` lines (see :func:`fit_gp`)."""
    inits = list(inits) + [None] * (len(outputs) - len(inits))
    labels = list(labels) + [f"output {i}" for i in range(len(labels), len(outputs))]
    return ModelListGP(
        *[fit_gp(space, X, y, init=i, label=lab, **kw) for (X, y), i, lab in zip(outputs, inits, labels)]
    )


def lengthscale_importance(model: SingleTaskGP, space: SearchSpace) -> dict[str, float]:
    """Relative importance of each campaign parameter from ARD lengthscales: ``1 / l`` per feature, the largest
    within a parameter's feature block (one-hot, descriptors, composition components count as their own names),
    normalized to sum to 1. Short lengthscale = the objective changes quickly along it = it matters."""
    owners = space.feature_owners()
    # the kernel over all features (for the additive kernel: its product part, which sees every feature at once)
    ls = next(
        (
            k.lengthscale
            for k in model.covar_module.modules()
            if getattr(k, "lengthscale", None) is not None and k.lengthscale.numel() == len(owners)
        ),
        None,
    )
    if ls is None:
        return {}
    inv = (1.0 / ls.detach().reshape(-1)).tolist()
    if len(owners) != len(inv):
        return {}
    agg: dict[str, float] = {}
    for o, v in zip(owners, inv):
        agg[o] = max(agg.get(o, 0.0), v)
    tot = sum(agg.values()) or 1.0
    return {k_: round(v / tot, 4) for k_, v in sorted(agg.items(), key=lambda kv: -kv[1])}


def as_tensor(rows: list[list[float]]) -> Tensor:
    return torch.tensor(rows, dtype=DTYPE).reshape(len(rows), -1)
